"""Extractive QA as a task: windows over real SQuAD contexts, answers back as exact substrings in any script,
post-processing against a direct loop over every span, fine-tuning v1.1 and v2.0 end to end (with the tuned
no-answer threshold kept for `predict`), and bad input as one-line errors."""

import dataclasses
import json
import random
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bertforge.cli import main as cli
from bertforge.errors import BertforgeError
from bertforge.fileio import holds_files
from bertforge.inference import Predictor
from bertforge.tasks import qa
from bertforge.tasks.qa_readers import QaExample, read_qa
from bertforge.tokenization import FullTokenizer

SQUAD_V1 = "dummy_data/xglue_full_dataset.tar.gz/xglue_full_dataset/MLQA/squad1.1/train-v1.1.json"


@pytest.fixture(scope="module")
def en(sample):
    return FullTokenizer(sample("vocab-en"), do_lower_case=True)


@pytest.fixture(scope="module")
def zh(sample):
    return FullTokenizer(sample("vocab-zh"), do_lower_case=True)


@pytest.fixture(scope="module")
def squad_examples(sample, tmp_path_factory):
    with zipfile.ZipFile(sample("xglue-mlqa-dummy")) as zf:
        path = zf.extract(SQUAD_V1, tmp_path_factory.mktemp("squad"))
    return read_qa(path)[0]


def model_settings(max_seq_length=384, doc_stride=128, max_query_length=64, **task):
    config = qa.QaConfig(max_seq_length=max_seq_length, doc_stride=doc_stride, max_query_length=max_query_length)
    settings_ = qa.prepare(config, [], None)
    return dataclasses.replace(settings_, task=dataclasses.replace(settings_.task, **task))


def gold_outputs(features, value=8.0):
    """Logits that put the start/end mass on each feature's training target."""
    outputs = []
    for ids, s, e in zip(*(features.inputs[k] for k in ("input_ids", "start_positions", "end_positions"))):
        start, end = np.zeros(len(ids), np.float32), np.zeros(len(ids), np.float32)
        start[s], end[e] = value, value
        outputs.append({"start_logits": start, "end_logits": end})
    return outputs


@settings(max_examples=25, deadline=None)
@given(st.integers(40, 200), st.integers(1, 150), st.integers(4, 64), st.integers(0, 10**6))
def test_windows_cover_every_context_piece_and_every_answer_is_in_some_window(
    squad_examples, en, max_seq_length, doc_stride, max_query_length, seed
):
    window = max_seq_length - max_query_length - 3
    if window < 2:
        return
    doc_stride = 1 + doc_stride % (window - 1)
    examples = random.Random(seed).sample(squad_examples, 30)
    settings_ = model_settings(max_seq_length, doc_stride, max_query_length)
    features = qa.featurize(examples, en, settings_, max_seq_length)
    assert max(map(len, features.inputs["input_ids"])) <= max_seq_length
    contexts = en.ids_and_offsets_batch([e.context for e in examples])
    owned = [[] for _ in examples]
    for f, n in enumerate(features.example_index):
        (first, s), (lo, hi) = features.meta["window"][f], features.meta["owned"][f]
        assert first == features.inputs["token_type_ids"][f].index(1)  # context starts with segment B
        owned[n] += range(s + lo - first, s + hi - first)
        pieces = features.inputs["input_ids"][f][first:-1]
        assert pieces == contexts[n][0][s : s + len(pieces)]
    for n, (pieces, _) in enumerate(contexts):
        assert owned[n] == list(range(len(pieces)))  # every piece predicted in exactly one window, in order
    results = qa.postprocess(examples, features, gold_outputs(features), settings_)
    questions = en.ids_batch([e.question for e in examples])
    for example, result, question, (_, offsets) in zip(examples, results, questions, contexts):
        text, start = example.answers[0]
        first, last = qa._answer_pieces(example, offsets)
        width = max_seq_length - min(len(question), max_query_length) - 3
        if last - first >= min((width - doc_stride) // 2, 30):
            # Longer than max_answer_length, or than the right-hand context its start is sure to have in the
            # start's best window (at least (window - stride) / 2 pieces): Google's rule may miss it.
            continue
        # the answer's pieces may reach beyond it inside a word ("1980s" for "1980"), never cut it
        assert result.start <= start and start + len(text) <= result.end
        assert result.answer == example.context[result.start : result.end]
        if example.context[result.start : result.end].strip() == text.strip():
            continue
        assert not (example.context[result.start - 1 : result.start] + text).isspace()


@pytest.mark.parametrize(
    "vocab, context, answer",
    [
        ("en", "Le  café   « Naïve » se trouve à   Zürich,\u00a0près du lac.", "Zürich"),
        ("en", "CAFÉ society met in ÅLESUND  \t and   Málaga in 1925.", "ÅLESUND  \t and   Málaga"),
        ("en", "Full-width: ＡＢＣ company, founded in １９９９.", "１９９９"),
        ("zh", "北京大学 （Peking University）位于中国北京市海淀区，创建于1898年。", "海淀区"),
        ("zh", "北京大学位于中国北京市海淀区，创建于1898年。", "1898年"),
        ("zh", "ＣＭＲＣ２０１８是中文机器阅读理解评测。", "中文机器阅读理解"),
    ],
)
def test_answers_come_back_as_exact_substrings_of_the_raw_context(request, vocab, context, answer):
    tokenizer = request.getfixturevalue(vocab)
    example = QaExample("q", "where?", context, [(answer, context.index(answer))], False, "t: question q")
    for max_len in (384, 24):  # one window, and several
        settings_ = model_settings(max_len, 4, 8)
        features = qa.featurize([example], tokenizer, settings_, max_len)
        (result,) = qa.postprocess([example], features, gold_outputs(features), settings_)
        assert (result.answer, result.start, result.end) == (
            answer,
            context.index(answer),
            context.index(answer) + len(answer),
        )


def reference_postprocess(examples, features, outputs, settings_):
    """A direct loop: every (start, end) of every window, filtered as the task says, sorted, cut to n-best."""
    task = settings_.task
    k, max_len, v2 = task.n_best_size, task.max_answer_length, task.version_2_with_negative
    found = {n: [] for n in range(len(examples))}
    null = {n: float("inf") for n in range(len(examples))}
    for f, out in enumerate(outputs):
        n, s, e = features.example_index[f], out["start_logits"], out["end_logits"]
        (first, _), (lo, hi) = features.meta["window"][f], features.meta["owned"][f]
        offsets = features.meta["offsets"][f]
        null[n] = min(null[n], float(s[0]) + float(e[0]))
        for i in range(len(s)):
            for j in range(len(e)):
                if lo <= i < hi and i <= j < len(s) - 1 and j - i < max_len:
                    a, b = offsets[2 * (i - first)], offsets[2 * (j - first) + 1]
                    found[n].append((float(s[i]) + float(e[j]), f, i, j, a, b))
    results = []
    for n, example in enumerate(examples):
        nbest = sorted(found[n], key=lambda c: (-c[0], c[1], c[2], c[3]))[:k]
        best = nbest[0]
        odds = null[n] - best[0] if v2 else None
        no_answer = v2 and odds > task.null_threshold
        results.append(
            ("" if no_answer else example.context[best[4] : best[5]], [(c[0], c[4], c[5]) for c in nbest], odds)
        )
    return results


@pytest.mark.parametrize("v2, threshold", [(False, 0.0), (True, 0.0), (True, 1.5), (True, -2.0)])
def test_postprocessing_equals_a_loop_over_every_span(squad_examples, en, v2, threshold):
    rng = np.random.default_rng(int(v2) * 10 + int(threshold * 2))
    examples = squad_examples[::40]
    settings_ = model_settings(96, 32, 24, version_2_with_negative=v2, null_threshold=threshold,
                               n_best_size=7, max_answer_length=5)  # fmt: skip
    features = qa.featurize(examples, en, settings_, 96)
    assert len(features) > 2 * len(examples)  # several windows per example
    outputs = [{name: rng.normal(size=len(ids)).astype(np.float32) * 3 for name in ("start_logits", "end_logits")}
               for ids in features.inputs["input_ids"]]  # fmt: skip
    results = qa.postprocess(examples, features, outputs, settings_)
    for result, (answer, nbest, odds) in zip(results, reference_postprocess(examples, features, outputs, settings_)):
        assert result.answer == answer
        assert [(c["start"], c["end"]) for c in result.nbest] == [(a, b) for _, a, b in nbest]
        assert [c["score"] for c in result.nbest] == pytest.approx([score for score, _, _ in nbest])
        assert (result.null_odds is None) == (odds is None) and (
            odds is None or result.null_odds == pytest.approx(odds)
        )
        probabilities = [c["probability"] for c in result.nbest]
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-9) if not v2 else sum(probabilities) < 1
        assert probabilities == sorted(probabilities, reverse=True)


CITIES = ["paris", "london", "berlin", "madrid", "new york", "los angeles", "tokyo", "cairo", "sydney", "rome"]
FILLER = "the a man woman went to see his her friend in after work yesterday today and then walked home quickly".split()
NAMES = ["alice", "bob", "carol", "dave", "erin", "frank"]


def synthetic(n, seed, v2=False):
    """Contexts of filler words with one city somewhere (none for a third of v2's questions)."""
    rng = random.Random(seed)
    paragraphs = []
    for i in range(n):
        words = [rng.choice(FILLER) for _ in range(rng.randint(10, 60))]
        impossible = v2 and i % 3 == 0
        answers = []
        if not impossible:
            city, at = rng.choice(CITIES), rng.randint(0, len(words))
            words.insert(at, city)
            context = " ".join(words)
            start = len(" ".join(words[:at])) + (at > 0)
            answers = [{"text": city, "answer_start": start}]
        else:
            context = " ".join(words)
        qa_ = {"id": f"{seed}-{i}", "question": f"where did {rng.choice(NAMES)} go?", "answers": answers}
        paragraphs.append({"context": context, "qas": [qa_ | ({"is_impossible": impossible} if v2 else {})]})
    return {"version": "v2.0" if v2 else "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}


def write_json(path, document):
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def brute_force_answer_probability(folder, question: str, context: str) -> float:
    """The best answer's probability from transformers' BertForQuestionAnswering on the same folder, one window:
    every span of the context (start <= end, at most max_answer_length pieces) scored start + end logit, the
    n_best_size best softmaxed together (with the [CLS] null score for v2.0 models), the best one's share."""
    import transformers

    task = json.loads((folder / "bertforge.json").read_text())["task"]
    model = transformers.BertForQuestionAnswering.from_pretrained(folder).eval()
    tokenizer = transformers.BertTokenizer(str(folder / "vocab.txt"), do_lower_case=True)
    inputs = tokenizer(question, context, return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
    start, end = out.start_logits[0].double().tolist(), out.end_logits[0].double().tolist()
    types = inputs["token_type_ids"][0].tolist()
    first, last = types.index(1), len(types) - 2  # the context's pieces: after the first [SEP], before the last
    spans = sorted((start[i] + end[j] for i in range(first, last + 1) for j in range(i, last + 1)
                    if j - i < task["max_answer_length"]), reverse=True)[: task["n_best_size"]]  # fmt: skip
    scores = spans + ([start[0] + end[0]] if task["version_2_with_negative"] else [])
    return float(np.exp(spans[0]) / np.sum(np.exp(scores)))


@pytest.mark.parametrize("v2", [False, True])
def test_fine_tuned_qa_answers_with_offsets_and_keeps_its_threshold(tiny_checkpoint, tmp_path, v2, capsys):
    train = write_json(tmp_path / "train.json", synthetic(400, 1, v2))
    dev = write_json(tmp_path / "dev.json", synthetic(80, 2, v2))
    out = tmp_path / "out"
    args = ["finetune", "qa", "--quiet", "--device", "cpu", "--train", str(train), "--dev", str(dev),
            "--init", str(tiny_checkpoint), "--output", str(out), "--epochs", "3", "--batch-size", "16",
            "--learning-rate", "2e-3", "--max-seq-length", "40", "--task.doc_stride", "12",
            "--task.max_query_length", "12", "--do-predict"]  # fmt: skip
    assert cli(args) == 0
    results = json.loads((out / "eval_results.json").read_text())
    saved = json.loads((out / "best" / "bertforge.json").read_text())
    assert saved["kind"] == "qa" and saved["task"]["version_2_with_negative"] == v2
    assert results["f1"] > 85, results
    predictions = json.loads((out / "predictions.json").read_text())
    nbest = json.loads((out / "nbest_predictions.json").read_text())
    gold = read_qa(dev)[0]
    assert list(predictions) == [e.qid for e in gold] and set(nbest) == set(predictions)
    if v2:
        assert saved["task"]["metric"] == "squad_v2" and "best_f1" in results and "HasAns_f1" in results
        assert saved["task"]["null_threshold"] == results["best_f1_thresh"]  # tuned on dev, kept for predict
        odds = json.loads((out / "null_odds.json").read_text())
        for e in gold:  # the kept threshold decides: "" exactly when the null odds exceed it
            assert (predictions[e.qid] == "") == (odds[e.qid] > saved["task"]["null_threshold"])
    else:
        assert saved["task"]["metric"] == "squad" and "best_f1" not in results

    predictor = Predictor.from_pretrained(out / "best")
    context = "after work bob walked to see his friend in los angeles and then walked home"
    answer = predictor.predict({"question": "where did bob go?", "context": context})
    assert answer | {"score": 0} == {"answer": "los angeles", "score": 0, "start": 43, "end": 54}
    assert answer["score"] == pytest.approx(brute_force_answer_probability(out / "best", "where did bob go?", context))
    long = " ".join(["the man went to see his friend"] * 60) + " in tokyo"  # many windows
    assert predictor.predict(("where?", long))["answer"] == "tokyo"
    if v2:
        empty = predictor.predict(("where did bob go?", "the man went to see his friend after work"))
        assert empty["answer"] == "" and (empty["start"], empty["end"]) == (0, 0)
        # the kept threshold can be overridden for a run; an unknown setting is named
        never = Predictor.from_pretrained(out / "best", task_options={"null_threshold": 1e9})
        always = Predictor.from_pretrained(out / "best", task_options={"null_threshold": -1e9})
        assert never.predict(("where?", context))["answer"] == "los angeles"
        assert always.predict(("where?", context))["answer"] == ""
        with pytest.raises(BertforgeError, match="unknown config key 'task.nul_threshold'; did you mean 'task.null_"):
            Predictor.from_pretrained(out / "best", task_options={"nul_threshold": 1})
    # the CLI: --question/--context, and JSON lines with question/context fields
    capsys.readouterr()
    assert cli(["predict", "--model", str(out / "best"), "--question", "where?", "--context", context]) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == "los angeles"
    lines = tmp_path / "in.jsonl"
    lines.write_text(json.dumps({"id": "x", "question": "where?", "context": context}) + "\n")
    assert cli(["predict", "--model", str(out / "best"), "--input", str(lines), "--task.n_best_size", "1"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["id"] == "x" and row["answer"] == "los angeles"
    assert row["score"] == pytest.approx(1.0) if not v2 else row["score"] < 1  # v2: "no answer" takes a share


def test_bad_input_is_one_line_and_writes_nothing(tiny_checkpoint, tmp_path, capsys, en):
    def fails(args, *words):
        out = tmp_path / "out"
        base = ["finetune", "qa", "--quiet", "--init", str(tiny_checkpoint), "--output", str(out), "--max-seq-length"]
        assert cli([*base, "100", "--task.max_query_length", "16", "--task.doc_stride", "32", *args]) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
        assert len(errors) == 1 and all(w in errors[0] for w in words), errors
        assert not holds_files(out)  # at most the (released) run lock

    train = write_json(tmp_path / "train.json", synthetic(5, 1))
    empty = synthetic(1, 2)
    empty["data"][0]["paragraphs"][0]["context"] = "   "
    fails(
        ["--train", str(write_json(tmp_path / "empty.json", empty)), "--no-do-eval"], "empty.json", "context is empty"
    )
    fails(["--train", str(train), "--no-do-eval", "--task.doc_stride", "81"], "task.doc_stride", "window, 81", "got 81")
    fails(["--train", str(train), "--no-do-eval", "--task.max_query_length", "98"], "max_query_length 98", "no room")
    half = synthetic(40, 4)  # a v1.1 file where 20 of 40 questions carry no answer: a count, not "no labels"
    for paragraph in half["data"][0]["paragraphs"][::2]:
        paragraph["qas"][0]["answers"] = []
    fails(["--train", str(write_json(tmp_path / "half.json", half)), "--no-do-eval"], "half.json: question 4-0",
          "20 of 40 unanswered")  # fmt: skip
    long_question = synthetic(1, 3)
    long_question["data"][0]["paragraphs"][0]["qas"][0]["question"] = "why " * 400
    fails(["--train", str(write_json(tmp_path / "q.json", long_question)), "--no-do-eval"], "q.json", "question 3-0",
          "more than max_seq_length")  # fmt: skip
    with pytest.raises(BertforgeError, match="empty or missing 'context'"):
        qa.example({"question": "where?", "context": " "}, "0")
