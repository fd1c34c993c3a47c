"""NER scores against the real references: conlleval.pl (its whole report, character for character) on the
CoNLL-2000 file it scores FB1 74.35 and on random predictions; seqeval's default and strict modes; CLUENER's
score.py rule; the model zoo's BF1/MF1 computed literally on padded [CLS] ... [SEP] label-id rows."""

import random
import shutil
import subprocess
import warnings

import numpy as np
import pytest
from seqeval.metrics import classification_report, f1_score
from seqeval.scheme import IOB2, IOBES

from bertforge.errors import BertforgeError
from bertforge.tasks.ner_metrics import (
    CLUENER_TYPES,
    EntityCounts,
    bf1,
    cluener_scores,
    entity_counts,
    format_report,
    mf1,
    ner_scores,
)
from bertforge.tasks.tagging import spans

TYPES = ("PER", "LOC", "ORG-GOV")


@pytest.fixture(scope="module")
def seqeval_tests(sample):
    return sample("seqeval-sdist")


@pytest.fixture(scope="module")
def conlleval(seqeval_tests):
    """`conlleval(text)` -> conlleval.pl's report of a file's text."""
    if shutil.which("perl") is None:
        pytest.skip("perl is not installed")

    def run(text: str) -> str:
        script = seqeval_tests / "conlleval.pl"
        return subprocess.run(["perl", str(script)], input=text, capture_output=True, text=True, check=True).stdout

    return run


def read_columns(text: str) -> tuple[list[list[str]], list[list[str]]]:
    """Gold and predicted tags (the last two columns) of a CoNLL file, sentences split at blank lines."""
    gold, predicted = [], []
    for block in text.strip("\n").split("\n\n"):
        rows = [line.split() for line in block.split("\n")]
        gold.append([row[-2] for row in rows])
        predicted.append([row[-1] for row in rows])
    return gold, predicted


def write_columns(gold, predicted) -> str:
    return "\n\n".join(
        "\n".join(f"w{i} {g} {p}" for i, (g, p) in enumerate(zip(gs, ps))) for gs, ps in zip(gold, predicted)
    )


def random_sentences(rng, prefixes, count, max_length=14):
    vocabulary = ["O", "O", "O"] + [f"{p}-{t}" for p in prefixes for t in TYPES]
    gold, predicted = [], []
    for _ in range(count):
        n = rng.randint(1, max_length)
        gold.append([rng.choice(vocabulary) for _ in range(n)])
        # predictions: mostly the gold tag, else anything, so matches and near misses are both common
        predicted.append([g if rng.random() < 0.6 else rng.choice(vocabulary) for g in gold[-1]])
    return gold, predicted


def seqeval_quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # UndefinedMetricWarning for types never predicted
        return fn(*args, **kwargs)


def test_ground_truth_report_equals_conlleval(seqeval_tests, conlleval):
    text = (seqeval_tests / "data" / "ground_truth.txt").read_text()
    gold, predicted = read_columns(text)
    report = format_report(entity_counts(gold, predicted, "BIO"))
    assert report == conlleval(text)
    assert "precision:  68.83%; recall:  80.83%; FB1:  74.35" in report


def test_ground_truth_scores_equal_seqeval_default_and_strict(seqeval_tests):
    gold, predicted = read_columns((seqeval_tests / "data" / "ground_truth.txt").read_text())
    scores = ner_scores(gold, predicted, "BIO")
    assert scores["f1"] == seqeval_quiet(f1_score, gold, predicted)
    assert round(scores["f1"] * 100, 2) == 74.35
    report = seqeval_quiet(classification_report, gold, predicted, output_dict=True)
    assert_matches_seqeval(scores, report)
    strict = seqeval_quiet(classification_report, gold, predicted, output_dict=True, mode="strict", scheme=IOB2)
    assert_matches_seqeval(scores, strict, "strict_")
    assert scores["strict_f1"] < scores["f1"]  # its predictions start chunks with I-, which strict mode drops
    assert (scores["gold_entities"], scores["predicted_entities"], scores["correct_entities"]) == (459, 539, 371)


def assert_matches_seqeval(scores, report, prefix=""):
    micro = report.pop("micro avg")
    assert [scores[f"{prefix}{k}"] for k in ("precision", "recall", "f1")] == [
        micro["precision"],
        micro["recall"],
        micro["f1-score"],
    ]
    if prefix:
        return
    types = {k: v for k, v in report.items() if not k.endswith(" avg")}
    assert {k.split("_", 1)[1] for k in scores if k.startswith("f1_")} == set(types)
    for type_, row in types.items():
        assert [scores[f"{k}_{type_}"] for k in ("precision", "recall", "f1")] == [
            row["precision"],
            row["recall"],
            row["f1-score"],
        ]


@pytest.mark.parametrize("seed", range(6))
def test_random_predictions_report_equals_conlleval(conlleval, seed):
    rng = random.Random(seed)
    gold, predicted = random_sentences(rng, "BI", 200)
    scheme = "IOB1" if seed % 2 else "BIO"  # conlleval's reading does not depend on the B/I scheme
    assert format_report(entity_counts(gold, predicted, scheme)) == conlleval(write_columns(gold, predicted))


def test_tags_without_types_report_equals_conlleval_but_for_its_repeated_line(conlleval):
    gold, predicted = random_sentences(random.Random(0), "BI", 200)
    gold, predicted = ([[tag[0] for tag in s] for s in seqs] for seqs in (gold, predicted))
    expected = conlleval(write_columns(gold, predicted)).splitlines(keepends=True)
    # conlleval.pl lists the empty type once per table it is in (its duplicate check tests the type's truth)
    assert expected[2] == expected[3] and expected[2].startswith(" " * 17 + ":")
    assert format_report(entity_counts(gold, predicted, "BIO")) == "".join(expected[:3])


@pytest.mark.parametrize(("scheme", "reference", "prefixes"), [("BIO", IOB2, "BI"), ("BIOES", IOBES, "BIES")])
@pytest.mark.parametrize("seed", range(4))
def test_random_predictions_equal_seqeval_default_and_strict(scheme, reference, prefixes, seed):
    rng = random.Random(seed)
    gold, predicted = random_sentences(rng, prefixes, 300)
    scores = ner_scores(gold, predicted, scheme)
    assert_matches_seqeval(scores, seqeval_quiet(classification_report, gold, predicted, output_dict=True))
    strict = seqeval_quiet(classification_report, gold, predicted, output_dict=True, mode="strict", scheme=reference)
    assert_matches_seqeval(scores, strict, "strict_")
    assert scores["strict_f1"] != scores["f1"]  # invalid sequences were scored differently


def test_conlleval_reading_is_not_seqeval_strict_on_invalid_predictions():
    gold = [["B-PER", "I-PER", "O"]]
    predicted = [["I-PER", "I-PER", "O"]]
    scores = ner_scores(gold, predicted, "BIO")
    assert scores["f1"] == 1.0 and scores["strict_f1"] == 0.0


def test_report_of_nothing_found():
    counts = entity_counts([["O", "B-PER"]], [["O", "O"]], "BIO")
    assert counts == EntityCounts(("PER",), (1,), (0,), (0,), tokens=2, correct_tags=1)
    assert format_report(counts) == (
        "processed 2 tokens with 1 phrases; found: 0 phrases; correct: 0.\n"
        "accuracy:  50.00%; precision:   0.00%; recall:   0.00%; FB1:   0.00\n"
        "              PER: precision:   0.00%; recall:   0.00%; FB1:   0.00  0\n"
    )


def official_cluener(gold_json, predicted_json, labels):
    """CLUENER2020 score.py's rule, on its submission format: per label, the entity strings (dict keys)
    of each sentence are compared; F1 per label from summed TP/FP/FN, then the mean over the labels."""
    total = 0
    for label in labels:
        tp = fp = fn = 0
        for pre, gold in zip(predicted_json, gold_json):
            pre, gold = pre["label"].get(label, {}).keys(), gold["label"].get(label, {}).keys()
            tp += sum(1 for x in pre if x in gold)
            fp += sum(1 for x in pre if x not in gold)
            fn += sum(1 for x in gold if x not in pre)
        p, r = tp / (tp + fp), tp / (tp + fn)
        total += 2 * p * r / (p + r)
    return total / len(labels)


def cluener_json(text, tags):
    """A sentence in CLUENER's format: {"text", "label": {type: {entity: [[start, end_inclusive]]}}}."""
    label = {}
    for span in spans(tags, "BIOES", "conlleval"):
        label.setdefault(span.type, {}).setdefault(text[span.start : span.end], []).append([span.start, span.end - 1])
    return {"text": text, "label": label}


def test_cluener_score_matches_entities_by_text_per_sentence():
    text = "张三在北京见张三"
    gold = ["B-name E-name O O B-address E-address O O".split()]
    # the second 张三 is predicted, not the first: CLUENER counts it, conlleval does not
    predicted = ["O O O O B-address E-address B-name E-name".split()]
    scores = cluener_scores(gold, predicted, [text], "BIOES")
    assert scores == {"cluener_f1": 1.0, "cluener_f1_address": 1.0, "cluener_f1_name": 1.0}
    assert ner_scores(gold, predicted, "BIOES")["f1_name"] == 0.0
    official = cluener_scores(gold, predicted, [text], "BIOES", types=CLUENER_TYPES)
    assert official["cluener_f1"] == pytest.approx(0.2) and official["cluener_f1_book"] == 0.0


@pytest.mark.parametrize("seed", range(3))
def test_cluener_score_equals_the_official_rule(seed):
    rng = random.Random(seed)
    types = ("name", "address", "company")
    vocabulary = ["O"] * 6 + [f"{p}-{t}" for p in "BIES" for t in types]
    texts, gold, predicted = [], [], []
    for _ in range(300):
        n = rng.randint(1, 12)
        texts.append("".join(rng.choice("张三李四北京") for _ in range(n)))  # few characters: texts repeat
        gold.append([rng.choice(vocabulary) for _ in range(n)])
        predicted.append([g if rng.random() < 0.7 else rng.choice(vocabulary) for g in gold[-1]])
    ours = cluener_scores(gold, predicted, texts, "BIOES", types=types)
    expected = official_cluener(
        [cluener_json(t, g) for t, g in zip(texts, gold)], [cluener_json(t, p) for t, p in zip(texts, predicted)], types
    )
    assert ours["cluener_f1"] == pytest.approx(expected, abs=1e-15)


def model_zoo_rows(tag_seqs, label_ids, seq_length=16):
    """What the model zoo scores: [CLS] tags [SEP], padded with label 0, as label-id rows."""
    rows = np.zeros((len(tag_seqs), seq_length), dtype=np.int64)
    for row, tags in zip(rows, tag_seqs):
        ids = [label_ids["[CLS]"], *(label_ids[t] for t in tags), label_ids["[SEP]"]]
        row[: len(ids)] = ids
    return rows.reshape(-1)


@pytest.mark.parametrize("seed", range(3))
def test_bf1_and_mf1_equal_the_model_zoo_on_its_padded_rows(seed):
    rng = random.Random(seed)
    gold, predicted = random_sentences(rng, "BI", 100, max_length=12)
    labels = ["O"] + sorted({t for s in gold + predicted for t in s} - {"O"}) + ["[CLS]", "[SEP]"]
    label_ids = {t: i for i, t in enumerate(labels)}
    y, y_hat = model_zoo_rows(gold, label_ids), model_zoo_rows(predicted, label_ids)
    # BF1 (assessment_method.F1, mode Binary): positives are label ids 1..num_labels-1
    pos_eva, pos_label = np.isin(y_hat, range(1, len(labels))), np.isin(y, range(1, len(labels)))
    tp, fp, fn = np.sum(pos_eva & pos_label), np.sum(pos_eva & ~pos_label), np.sum(~pos_eva & pos_label)
    assert bf1(gold, predicted) == 2 * tp / (2 * tp + fp + fn)
    # MF1 (mode MultiLabel): one-hot rows, the O column dropped, confusion counts summed, f1 = 2tp/(2tp+fn+fp)
    target, pred = np.eye(len(labels))[y][:, 1:], np.eye(len(labels))[y_hat][:, 1:]
    tp = np.sum((pred + target) == 2)
    fp = np.sum((1 - target) - ((pred + target) == 0))
    fn = np.sum(target) - tp
    assert mf1(gold, predicted) == tp * 2.0 / (tp * 2.0 + fn + fp)


def test_bf1_is_blind_to_types_and_boundaries():
    gold = [["B-PER", "I-PER", "O", "O"]]
    predicted = [["I-LOC", "B-ORG", "O", "O"]]
    assert bf1(gold, predicted, cls_sep=False) == 1.0
    assert mf1(gold, predicted, cls_sep=False) == 0.0
    assert ner_scores(gold, predicted, "BIO")["f1"] == 0.0
    assert bf1(gold, [["O", "O", "O", "O"]]) == 2 * 2 / (2 * 2 + 2)  # [CLS] and [SEP] are hits


def test_bad_input_is_an_error():
    with pytest.raises(BertforgeError, match="sentence 1 \\(from 0\\): 2 gold tags but 1 predicted"):
        ner_scores([["O"], ["O", "O"]], [["O"], ["O"]], "BIO")
    with pytest.raises(BertforgeError, match="2 gold sentences but 1 predicted"):
        ner_scores([["O"], ["O"]], [["O"]], "BIO")
    with pytest.raises(BertforgeError, match="tag E-PER is not a BIO tag"):
        ner_scores([["B-PER"]], [["E-PER"]], "BIO")
    with pytest.raises(BertforgeError, match="no sentences to score"):
        ner_scores([], [], "BIO")


def test_scores_of_a_hundred_thousand_tokens_in_one_pass():
    rng = random.Random(0)
    gold, predicted = random_sentences(rng, "BIES", 5000, max_length=38)
    scores = ner_scores(gold, predicted, "BIOES", texts=[["字"] * len(s) for s in gold])
    assert sum(map(len, gold)) > 90_000
    assert 0 < scores["strict_f1"] < scores["f1"] < 1 and "cluener_f1_PER" in scores
