"""QA scores against the official scripts, fetched with pip and run unchanged: SQuAD's evaluate-v1.1.py (run as a
program on the 1,027 real training questions), evaluate-v2.0.py and cmrc2018_evaluate.py as PaddleHub ships
them (the latter with NLTK's own word tokenizer), on real questions with random and perturbed predictions; and
cases worked by hand from the scripts' rules."""

import importlib.util
import json
import random
import subprocess
import sys
import types
import zipfile

import pytest

from bertforge.errors import BertforgeError
from bertforge.tasks.qa_metrics import (
    cmrc2018_scores,
    cmrc_tokens,
    normalize_answer,
    qa_scores,
    squad_v2_scores,
    word_tokenize,
)
from bertforge.tasks.qa_readers import QaExample, read_qa

SQUAD_V1 = "dummy_data/xglue_full_dataset.tar.gz/xglue_full_dataset/MLQA/squad1.1/train-v1.1.json"


def load_module(path, name, stand_ins=()):
    """Import a script from its file, with `stand_ins` (name -> module) in sys.modules only while it loads."""
    stand_ins = dict(stand_ins)
    saved = {key: sys.modules.get(key) for key in stand_ins}
    sys.modules.update(stand_ins)
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for key, value in saved.items():
            if value is None:
                sys.modules.pop(key)
            else:
                sys.modules[key] = value
    return module


def stand_in(name, **attributes):
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


@pytest.fixture(scope="module")
def nltk_tokenize(sample):
    """NLTK's own NLTKWordTokenizer().tokenize, from its module alone (the rest of NLTK is not needed)."""
    stand_ins = {
        "nltk": stand_in("nltk"),
        "nltk.tokenize": stand_in("nltk.tokenize"),
        "nltk.tokenize.api": stand_in("nltk.tokenize.api", TokenizerI=object),
        "nltk.tokenize.util": stand_in("nltk.tokenize.util", align_tokens=None),
    }
    module = load_module(sample("nltk-word-tokenizer"), "official_nltk_destructive", stand_ins)
    return module.NLTKWordTokenizer().tokenize


@pytest.fixture(scope="module")
def official_v1(sample):
    return sample("squad-eval-v1.1")


@pytest.fixture(scope="module")
def official_v2(sample):
    return load_module(sample("paddlehub-qa-eval") / "squad2_evaluate.py", "official_squad2_evaluate")


@pytest.fixture(scope="module")
def official_cmrc(sample, nltk_tokenize, tmp_path_factory):
    """cmrc2018_evaluate.py with NLTK's tokenizer on each run as one sentence (Punkt's model is not available
    offline, see `word_tokenize`) and PaddleHub's Punkt download stubbed out."""
    home = tmp_path_factory.mktemp("paddlehub")
    (home / "nltk_data" / "tokenizers" / "punkt").mkdir(parents=True)

    def no_download(**kwargs):
        raise AssertionError("the script tried to download Punkt")

    stand_ins = {
        "nltk": stand_in("nltk", word_tokenize=nltk_tokenize, data=types.SimpleNamespace(path=[])),
        "paddlehub": stand_in("paddlehub"),
        "paddlehub.common": stand_in("paddlehub.common"),
        "paddlehub.common.dir": stand_in("paddlehub.common.dir", THIRD_PARTY_HOME=str(home)),
        "paddlehub.common.downloader": stand_in(
            "paddlehub.common.downloader",
            default_downloader=types.SimpleNamespace(download_file_and_uncompress=no_download),
        ),
    }
    path = sample("paddlehub-qa-eval") / "cmrc2018_evaluate.py"
    return load_module(path, "official_cmrc2018_evaluate", stand_ins)


@pytest.fixture(scope="module")
def squad_file(sample, tmp_path_factory):
    """The real SQuAD v1.1 file with the "version": "1.1" key the official script insists on."""
    with zipfile.ZipFile(sample("xglue-mlqa-dummy")) as zf:
        document = json.loads(zf.read(SQUAD_V1))
    path = tmp_path_factory.mktemp("squad") / "train-v1.1.json"
    path.write_text(json.dumps({"version": "1.1", **document}), encoding="utf-8")
    return path


def perturbed(rng: random.Random, example: QaExample) -> str:
    """A prediction near the gold answers: exact, re-cased, with articles or punctuation, cut, widened, another
    span of the context, or empty — so that EM and F1 see every kind of partial match."""
    text, start = rng.choice(example.answers) if example.answers else ("", 0)
    words = example.context.split()
    kind = rng.randrange(9)
    if kind == 0:
        return text
    if kind == 1:
        return "The " + text.upper() + rng.choice([".", "!", " ,", "“", ""])
    if kind == 2:
        return " ".join(text.split()[rng.randrange(2) :][: rng.randint(1, 4)])
    if kind == 3:
        return example.context[max(0, start - rng.randint(0, 20)) : start + len(text) + rng.randint(0, 20)]
    if kind == 4:
        i = rng.randrange(len(words))
        return " ".join(words[i : i + rng.randint(1, 8)])
    if kind == 5:
        return ""
    if kind == 6:
        return f"  a {text}  an  the "
    if kind == 7:
        return rng.choice(["the", "a", "...", "-"])
    return text.replace(" ", rng.choice(["  ", "\t", "-", ""]))


# --- SQuAD v1.1 -------------------------------------------------------------------------------------------------


def test_normalization_and_f1_by_hand():
    assert normalize_answer("  The Cat's  hat, (a) Anchor!  ") == "cats hat anchor"
    assert normalize_answer("“Théâtre”") == "“théâtre”"  # only ASCII punctuation goes
    examples = [QaExample("q", "?", "ctx", [("a cat sat", 0), ("dog", 0)], False, "f: question q")]
    assert qa_scores(examples, {"q": "the big cat"}) == {"exact": 0.0, "f1": 50.0, "total": 1}
    assert qa_scores(examples, {"q": "Dog."})["exact"] == 100.0
    # v1.1: a gold answer that normalises to nothing is matched exactly by "", with F1 0
    only_article = [QaExample("q", "?", "ctx", [("The", 0)], False, "f: question q")]
    assert qa_scores(only_article, {"q": ""}) == {"exact": 100.0, "f1": 0.0, "total": 1}


def test_squad_v1_equals_the_official_script_run_on_the_real_file(squad_file, official_v1, tmp_path):
    examples, _ = read_qa(squad_file)
    rng = random.Random(0)
    predictions = {e.qid: perturbed(rng, e) for e in examples if rng.random() > 0.02}  # a few unanswered
    (predictions_file := tmp_path / "predictions.json").write_text(json.dumps(predictions), encoding="utf-8")
    command = [sys.executable, str(official_v1), str(squad_file), str(predictions_file)]
    run = subprocess.run(command, capture_output=True, text=True, check=True, env={"PYTHONUTF8": "1"})
    official = json.loads(run.stdout)
    ours = qa_scores(examples, predictions, kind="squad")
    assert (ours["exact"], ours["f1"], ours["total"]) == (official["exact_match"], official["f1"], 1027)
    assert 20 < ours["exact"] < 80 and ours["exact"] < ours["f1"] < 90
    perfect = qa_scores(examples, {e.qid: e.answers[0][0] for e in examples})
    assert perfect == {"exact": 100.0, "f1": 100.0, "total": 1027}


@pytest.mark.parametrize("seed", range(1, 6))
def test_squad_v1_equals_the_official_evaluate_on_random_predictions(squad_file, official_v1, seed):
    module = load_module(official_v1, "official_squad_eval")
    dataset = json.loads(squad_file.read_text(encoding="utf-8"))["data"]
    examples, _ = read_qa(squad_file)
    rng = random.Random(seed)
    predictions = {e.qid: perturbed(rng, e) for e in examples if rng.random() > 0.05}
    official = module.evaluate(dataset, predictions)
    ours = qa_scores(examples, predictions, kind="squad")
    assert (ours["exact"], ours["f1"]) == (official["exact_match"], official["f1"])


def test_squad_v1_needs_gold_answers_and_no_probabilities():
    unlabelled = [QaExample("q", "?", "ctx", [], False, "test.json: question q")]
    with pytest.raises(BertforgeError, match="test.json: question q: no gold answer"):
        qa_scores(unlabelled, {"q": "x"})
    labelled = [QaExample("q", "?", "ctx", [("x", 0)], False, "f: question q")]
    with pytest.raises(BertforgeError, match="no-answer probabilities are scored by squad_v2"):
        qa_scores(labelled, {"q": "x"}, {"q": 0.5})
    with pytest.raises(BertforgeError, match="unknown QA score 'drcd'"):
        qa_scores(labelled, {"q": "x"}, kind="drcd")
    with pytest.raises(BertforgeError, match="no questions"):
        qa_scores([], {})


# --- SQuAD v2.0 -------------------------------------------------------------------------------------------------


def v2_examples():
    def example(qid, answers):
        return QaExample(qid, "?", "ctx", [(a, 0) for a in answers], not answers, f"dev.json: question {qid}")

    return [example("A", ["Paris"]), example("B", []), example("C", ["blue whale"]), example("D", [])]


def test_squad_v2_by_hand():
    examples = v2_examples()
    predictions = {"A": "Paris", "B": "London", "C": "the whale", "D": ""}
    # A exact; B answers an unanswerable question; C: F1 2/3 (whale of blue whale); D rightly ""
    scores = squad_v2_scores(examples, predictions)
    assert scores == pytest.approx(
        {
            "exact": 50.0,
            "f1": 100 * (1 + 0 + 2 / 3 + 1) / 4,
            "total": 4,
            "HasAns_exact": 50.0,
            "HasAns_f1": 100 * (1 + 2 / 3) / 2,
            "HasAns_total": 2,
            "NoAns_exact": 50.0,
            "NoAns_f1": 50.0,
            "NoAns_total": 2,
        }
    )
    # Answering in increasing no-answer probability A(.1) D(.3) C(.4) B(.9), from 2 (the two no-answers right):
    # exact 3 after A, then 3, 3, 2 → best 3/4 at 0.1; F1 3 after A, 3 + 2/3 after C, then -1 → best at 0.4.
    probs = {"B": 0.9, "C": 0.4, "A": 0.1, "D": 0.3}
    scores = qa_scores(examples, predictions, probs, kind="squad_v2")
    assert scores["best_exact"] == 75.0 and scores["best_exact_thresh"] == 0.1
    assert scores["best_f1"] == pytest.approx(100 * (3 + 2 / 3) / 4) and scores["best_f1_thresh"] == 0.4
    # a probability above 1.0 (log-odds) means "no answer" in exact/f1, as the script's --na-prob-thresh 1.0
    scores = qa_scores(examples, predictions, probs | {"B": 1.5}, kind="squad_v2")
    assert scores["exact"] == 75.0 and scores["NoAns_exact"] == 100.0 and scores["HasAns_exact"] == 50.0


def test_squad_v2_quirks_kept_from_the_script():
    examples = v2_examples()
    wrong = {"A": "Lyon", "B": "London", "C": "cat", "D": "x"}
    # answering nothing is best: the threshold stays 0.0 although every probability is negative
    scores = qa_scores(examples, wrong, {"A": -3.0, "B": -2.0, "C": -1.0, "D": -0.5}, kind="squad_v2")
    assert (scores["best_exact"], scores["best_exact_thresh"]) == (50.0, 0.0)
    # a gold answer that normalises to nothing ("The") is dropped, so "" is the right answer to it
    article = [QaExample("q", "?", "ctx", [("The", 0)], False, "f: question q")]
    assert qa_scores(article, {"q": ""}, kind="squad_v2")["HasAns_exact"] == 100.0
    assert qa_scores(article, {"q": "the"}, kind="squad_v2")["f1"] == 100.0  # both empty: F1 1 in v2.0


def test_squad_v2_best_threshold_judges_no_answer_by_the_raw_string():
    """A no-answer question predicted "the" is right in exact/f1 (it normalises to ""), but the script's
    find_best_thresh counts any non-empty string as an answer: best_exact can fall below exact."""
    examples = v2_examples()[:2]
    scores = qa_scores(examples, {"A": "Paris", "B": "the"}, {"A": 0.6, "B": 0.5}, kind="squad_v2")
    assert scores["exact"] == 100.0 and scores["NoAns_exact"] == 100.0
    assert (scores["best_exact"], scores["best_exact_thresh"]) == (50.0, 0.0)


def test_squad_v2_needs_every_prediction_and_probability():
    examples = v2_examples()
    with pytest.raises(BertforgeError, match=r"1 of 4 questions have no prediction \(e\.g\. D\)"):
        qa_scores(examples, {"A": "", "B": "", "C": ""}, kind="squad_v2")
    with pytest.raises(BertforgeError, match="no no-answer probability"):
        qa_scores(examples, dict.fromkeys("ABCD", ""), {"A": 0.5}, kind="squad_v2")


def official_v2_main(module, dataset, predictions, na_probs=None):
    """What evaluate-v2.0.py's main() computes and prints, with its functions (--na-prob-thresh 1.0)."""
    has_answer = module.make_qid_to_has_ans(dataset)
    probs = na_probs if na_probs is not None else {k: 0.0 for k in predictions}
    exact_raw, f1_raw = module.get_raw_scores(dataset, predictions)
    exact = module.apply_no_ans_threshold(exact_raw, probs, has_answer, 1.0)
    f1 = module.apply_no_ans_threshold(f1_raw, probs, has_answer, 1.0)
    out = module.make_eval_dict(exact, f1)
    for prefix, wanted in (("HasAns", True), ("NoAns", False)):
        qids = [k for k, v in has_answer.items() if v == wanted]
        if qids:
            module.merge_eval(out, module.make_eval_dict(exact, f1, qid_list=qids), prefix)
    if na_probs is not None:
        module.find_all_best_thresh(out, predictions, exact_raw, f1_raw, na_probs, has_answer)
    return json.loads(json.dumps(out))  # as printed


@pytest.mark.parametrize("seed", range(4))
def test_squad_v2_equals_the_official_script_on_real_questions(squad_file, official_v2, tmp_path, seed):
    """The real file made v2.0: a third of the questions unanswerable (answers moved to plausible_answers);
    predictions perturbed or empty; no-answer probabilities with ties, negative and above 1 (log-odds)."""
    rng = random.Random(seed)
    document = json.loads(squad_file.read_text(encoding="utf-8"))
    for article in document["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                qa["is_impossible"] = rng.random() < 0.33
                if qa["is_impossible"]:
                    qa["plausible_answers"], qa["answers"] = qa["answers"], []
    (path := tmp_path / "dev-v2.0.json").write_text(json.dumps(document | {"version": "v2.0"}), encoding="utf-8")
    examples, _ = read_qa(path)
    predictions = {e.qid: perturbed(rng, e) if rng.random() < 0.7 else "" for e in examples}
    qids = [e.qid for e in examples]
    rng.shuffle(qids)  # the script's sort keeps ties in the probabilities' order
    probs = {qid: rng.choice([round(rng.uniform(-2, 3), 1), rng.random()]) for qid in qids}
    for na_probs in (None, probs):
        official = official_v2_main(official_v2, document["data"], predictions, na_probs)
        ours = qa_scores(examples, predictions, na_probs, kind="squad_v2")
        assert list(ours.items()) == list(official.items())
    assert len(ours) == 13


# --- CMRC2018 ---------------------------------------------------------------------------------------------------


def test_word_tokenize_equals_nltk(nltk_tokenize):
    sentence = "Good muffins cost $3.88 (roughly 3,36 euros)\nin New York.  Please buy me\ntwo of them.\nThanks."
    assert word_tokenize(sentence) == nltk_tokenize(sentence)
    assert word_tokenize(sentence)[-3:] == ["them.", "Thanks", "."]  # one sentence: only the last period splits
    rng = random.Random(0)
    pieces = list("ab c.,:;'\"`()[]{}<>?!-*$%&@#…«»“”‘’„12\t\n") + ["cannot", "gonna ", "'t", "''", "--", "...", "n't"]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 25)))
        assert word_tokenize(text) == nltk_tokenize(text), text


@pytest.mark.parametrize(
    "gold, prediction, em, f1",
    [
        ("《战国无双3》", "战国无双3", 1, 1.0),  # 《》 are the script's punctuation
        ("（注：前方）", "注前方", 1, 1.0),
        ("罗亚尔港号", "罗亚尔港", 0, 2 * 0.8 / 1.8),  # 4 of 5 characters: P 1, R 0.8
        ("iPhone 6S", " iphone 6s ", 1, 1.0),  # lower-cased and stripped
        ("iphone6", "iphone 6", 0, 0.0),  # inner spaces count for EM; one token against two
        # "-" is dropped *inside* the run, joining "cg" and "73": gold tokens uss port royal cg73
        ("USS Port Royal CG-73", "Port Royal", 0, 2 * 0.5 / 1.5),
        # full-width digits are not CJK: runs "１９９２" vs "1992"; only one shared token in a row
        ("１９９２年１１月２０日", "1992年11月20日", 0, 1 / 6),
        ("等等", "等等…", 0, 2 * (2 / 3) / (2 / 3 + 1)),  # "……" in the list never matches "…", which stays
        ("abc", '"abc"', 0, 0.5),  # NLTK turns the quotes into `` and '' tokens: 1 of 3
        ("‘好’", "好", 0, 2 * 0.5 / 1.5),  # ’ is in the list, ‘ is not
        ("㐀㐁", "㐀", 0, 0.0),  # CJK extension A is outside \u4e00-\u9fa5: one run, one token
        ("天气很好", "", 0, 0.0),
    ],
)
def test_cmrc2018_by_hand(gold, prediction, em, f1, official_cmrc):
    example = [QaExample("q", "?", "ctx", [(gold, 0)], False, "dev.json: question q")]
    scores = cmrc2018_scores(example, {"q": prediction})
    assert scores["em"] == 100.0 * em and scores["f1"] == pytest.approx(100.0 * f1)
    assert (official_cmrc.calc_em_score([gold], prediction), official_cmrc.calc_f1_score([gold], prediction)) == (
        em,
        pytest.approx(f1),
    )


def test_cmrc2018_tokens_and_totals(official_cmrc):
    text = "2018年NBA总决赛：Warriors vs. Cavaliers. U.S.总统"
    # "：" is dropped without ending the run; NLTK splits off only the run's last period
    expected = [*"2018 年 nba 总 决 赛 warriors vs. cavaliers. u.s . 总 统".split()]
    assert cmrc_tokens(text) == expected == official_cmrc.mixed_segmentation(text, rm_punc=True)
    examples = [
        QaExample("a", "?", "ctx", [("北京", 0), ("北京市", 0)], False, "f: question a"),
        QaExample("b", "?", "ctx", [("1992年", 0)], False, "f: question b"),
        QaExample("c", "?", "ctx", [("上海", 0)], False, "f: question c"),
    ]
    scores = qa_scores(examples, {"a": "北京市", "b": "1992"}, kind="cmrc2018")
    # a: EM 1, F1 1 (second gold); b: EM 0, F1 2·(1·½)/(1½) = ⅔; c: unanswered, 0, counted in total and skip
    assert scores == pytest.approx(
        {
            "em": 100 / 3,
            "f1": 100 * (1 + 2 / 3) / 3,
            "average": (100 / 3 + 100 * (5 / 3) / 3) / 2,
            "total": 3,
            "skip": 1,
        }
    )


def random_mixed_text(rng: random.Random, length: int) -> str:
    pieces = [
        *"北京天气很好我们去公园散步了吗战国无双龙鳳㐀",
        *"，。：？！“”；’《》、「」（）－～『』…·‘",
        *["iPhone", "NBA", "3.5", "2018", "１９９２", " ", " ", "-", ":", "'s", '"', "U.S.", "(", ")", "vs.", "can't"],
    ]
    return "".join(rng.choice(pieces) for _ in range(length))


def test_cmrc2018_equals_the_official_script(sample, official_cmrc, tmp_path):
    """On the real CMRC2018 snippets (12 questions, several gold answers each) with predictions cut from the
    context around the answer, and on random mixed Chinese/English/digit/full-width texts."""
    zip_path = sample("clue-dummy") / "cmrc2018" / "1.0.0" / "dummy_data.zip"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(tmp_path, members=[n for n in zf.namelist() if n.startswith("dummy_data/")])
    rng = random.Random(0)
    for name in ("train.json", "dev.json", "trial.json"):
        path = tmp_path / "dummy_data" / name
        examples, _ = read_qa(path)
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
        for _ in range(20):
            predictions = {}
            for e in examples:
                text, start = rng.choice(e.answers)
                left, right = rng.randint(-3, 3), rng.randint(-3, 3)
                predictions[e.qid] = e.context[max(0, start + left) : start + len(text) + right]
            predictions.pop(rng.choice(examples).qid)
            official = official_cmrc.get_eval(data, predictions)
            ours = qa_scores(examples, predictions, kind="cmrc2018")
            assert ours == {k.lower(): v for k, v in official.items()}
    for _ in range(400):
        gold = [random_mixed_text(rng, rng.randint(1, 12)) for _ in range(rng.randint(1, 3))]
        prediction = rng.choice([gold[0][rng.randrange(3) :], random_mixed_text(rng, rng.randint(0, 12))])
        example = [QaExample("q", "?", "ctx", [(g, 0) for g in gold], False, "f: question q")]
        scores = cmrc2018_scores(example, {"q": prediction})
        official = official_cmrc.get_eval(
            [{"paragraphs": [{"qas": [{"id": "q", "question": "?", "answers": [{"text": g} for g in gold]}]}]}],
            {"q": prediction},
        )
        assert (scores["em"], scores["f1"]) == (official["EM"], official["F1"]), (gold, prediction)
