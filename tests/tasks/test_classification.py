"""Classification data: every public format on small fixtures and on real CLUE/GLUE lines, the label map
staying the same from training to prediction, model inputs, prediction files, and bad input."""

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bertforge.errors import BertforgeError
from bertforge.model_folder import ModelSettings
from bertforge.tasks.classification import (
    TASK,
    TASK_LABELS,
    ClassificationConfig,
    Example,
    fixed_labels,
    is_regression,
    read_examples,
    write_clue_submission,
    write_glue_predictions,
)
from bertforge.tasks.labels import LabelMap
from bertforge.tokenization import FullTokenizer

FIXTURES = Path(__file__).parent.parent / "fixtures" / "classification"


def settings(labels: LabelMap | None) -> ModelSettings:
    task = ClassificationConfig()
    return ModelSettings("classification", labels=None if labels is None else labels.labels, task=task)


def featurize(examples, tokenizer, max_seq_length, labels):
    return TASK.featurize(examples, tokenizer, settings(labels), max_seq_length)


def read(name, task="auto", **kw):
    return read_examples(FIXTURES / name, task, **kw)


# --- CLUE ---------------------------------------------------------------------------------------------------


def test_tnews_train_test_and_labels_file():
    train, report = read("tnews_train.json", "tnews")
    assert [e.label for e in train] == ["108", "102", "100", "102"]
    assert train[0].text_a == "今年高考报名人数再创新高，考生如何选择志愿？" and train[0].text_b is None
    assert [e.guid for e in train] == ["0", "1", "2", "3"]  # no id field: the record index
    assert train[3].source == f"{FIXTURES / 'tnews_train.json'} line 4"
    assert (report.records, report.unlabelled, sum(report.skipped.values())) == (4, 0, 0)

    test, report = read("tnews_test.json", "tnews")
    assert [(e.guid, e.label) for e in test] == [("0", None), ("1", None), ("2", None)]
    assert report.unlabelled == 3

    labels = LabelMap.load(FIXTURES / "tnews_labels.json")
    assert labels.labels == ["100", "101", "102", "108", "110"]
    assert labels.descriptions["108"] == "news_edu"
    assert [labels.encode(e.label, e.source) for e in train] == [3, 2, 0, 2]


def test_afqmc_pairs():
    train, _ = read("afqmc_train.json", "afqmc")
    assert (train[0].text_a, train[0].text_b, train[0].label) == ("花呗怎么提前还款", "花呗可以提前还吗", "1")
    test, report = read("afqmc_test.json", "AFQMC")
    assert [e.guid for e in test] == ["0", "1"] and report.unlabelled == 2
    assert test[1].text_b == "借呗晚还一天会怎样"


def test_ocnli_no_gold_label_is_skipped_and_counted():
    dev, report = read("ocnli_dev.json", "ocnli")  # skipped even without skip_bad_lines, as CLUE does
    assert [e.label for e in dev] == ["entailment", "contradiction", "neutral"]
    assert [e.guid for e in dev] == ["0", "1", "3"]  # the id field
    assert report.records == 4 and report.skipped == {"no gold label": 1}
    assert "ocnli_dev.json line 3" in report.skip_examples["no gold label"][0]
    assert "skipped 1 (no gold label)" in report.summary()


# --- GLUE ---------------------------------------------------------------------------------------------------


def test_cola_headerless_train_and_test_with_header():
    train, _ = read("cola_train.tsv", "cola")
    assert [e.label for e in train] == ["1", "0", "1", "0"]
    assert train[2].text_a == 'She said "hello" to everyone in the room.'
    assert train[0].source.endswith("cola_train.tsv line 1")
    test, report = read("cola_test.tsv", "CoLA")
    assert [(e.guid, e.text_a, e.label) for e in test] == [
        ("0", "Birds sing in the morning.", None),
        ("1", "Sing morning the birds in.", None),
    ]
    assert test[0].source.endswith("line 2")


def test_mnli_columns_by_header_name():
    dev, _ = read("mnli_dev_matched.tsv", "mnli")
    assert [e.label for e in dev] == ["neutral", "entailment", "contradiction"]
    assert dev[1].text_a == 'He called it "a mistake" in his letter.' and dev[1].text_b == "He wrote a letter."
    assert fixed_labels("mnli").labels == ["contradiction", "entailment", "neutral"]


def test_stsb_is_regression():
    train, _ = read("stsb_train.tsv", "STS-B")
    assert [e.label for e in train] == [5.0, 0.25, 3.8]
    assert train[2].text_b == "Markets dropped Monday."
    assert is_regression("stsb") and not is_regression("mrpc") and fixed_labels("stsb") is None


def test_mrpc_bom_and_quotes_inside_text():
    train, _ = read("mrpc_train.tsv", "mrpc")
    assert [e.label for e in train] == ["1", "0"]
    assert train[0].text_a == 'The mayor called the plan " a bold step " on Tuesday .'
    assert train[1].text_b == 'Analysts said the 12" screen model sold " well .'  # unbalanced quotes are text


def test_qqp_id_column():
    train, _ = read("qqp_train.tsv", "qqp")
    assert [(e.guid, e.label) for e in train] == [("501", "1"), ("502", "0")]


# --- generic files ------------------------------------------------------------------------------------------


def test_generic_csv_bom_crlf_and_multiline_field():
    examples, report = read("generic.csv")
    assert [e.text_a for e in examples] == [
        "Plain first review",
        "A review that spans\ntwo lines, with a comma",
        'She said "great" twice',
    ]
    assert [e.label for e in examples] == ["pos", "neg", "pos"]
    assert [e.source.rsplit(" ", 1)[1] for e in examples] == ["2", "3", "5"]  # a record's first line
    assert examples[0].text_b is None and report.records == 3


def test_generic_tsv_pairs_and_jsonl_ids():
    pairs, _ = read("generic.tsv")
    assert (pairs[0].text_a, pairs[0].text_b, pairs[0].label) == (
        "Is it raining?",
        'The weatherman said "sunny".',
        "no",
    )
    lines, _ = read("generic.jsonl")
    assert [(e.guid, e.text_a, e.label) for e in lines] == [
        ("a1", "great phone, long battery", "pos"),
        ("a2", "screen broke in a week", "neg"),
    ]


def test_column_names_and_regression_are_configurable(tmp_path):
    (tmp_path / "r.csv").write_text("review,answer,stars\ngood,yes,4.5\nbad,no,1\n")
    examples, _ = read_examples(tmp_path / "r.csv", text_a="review", text_b="answer", label="stars", regression=True)
    assert [(e.text_a, e.text_b, e.label) for e in examples] == [("good", "yes", 4.5), ("bad", "no", 1.0)]
    (tmp_path / "q.jsonl").write_text('{"q": "a?", "lab": 1}\n')
    examples, _ = read_examples(tmp_path / "q.jsonl", "jsonl", text_a="q", label="lab")
    assert examples[0].label == "1"  # class names are strings, whatever the JSON type


# --- bad input ----------------------------------------------------------------------------------------------


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(BertforgeError, match=r"nope\.json: no such file"):
        read_examples(tmp_path / "nope.json", "tnews")
    with pytest.raises(BertforgeError, match="no such file \\(it is a directory\\)"):
        read_examples(tmp_path, "tsv")
    (tmp_path / "empty.tsv").write_text("")
    with pytest.raises(
        BertforgeError,
        match=r"empty\.tsv: file is empty; expected tab-separated columns "
        r"sentence1, sentence2, gold_label",
    ):
        read_examples(tmp_path / "empty.tsv", "mnli")
    (tmp_path / "header.csv").write_text("text,label\n\n")
    with pytest.raises(BertforgeError, match=r"header\.csv: no records"):
        read_examples(tmp_path / "header.csv")


def test_unknown_task_and_extension(tmp_path):
    (tmp_path / "data.txt").write_text("x\n")
    with pytest.raises(BertforgeError, match="cannot tell the format from the extension '.txt'"):
        read_examples(tmp_path / "data.txt")
    with pytest.raises(BertforgeError, match="unknown task 'squad'"):
        read_examples(tmp_path / "data.txt", "squad")


def test_missing_column_is_named_with_the_columns_found(tmp_path):
    (tmp_path / "dev.tsv").write_text("index\tpremise\thypothesis\tgold_label\n0\ta\tb\tneutral\n")
    with pytest.raises(
        BertforgeError,
        match=r"dev\.tsv line 1: no column 'sentence1' in the header "
        r"\(columns: 'index', 'premise', 'hypothesis', 'gold_label'\)",
    ):
        read_examples(tmp_path / "dev.tsv", "mnli")
    (tmp_path / "x.csv").write_text("sentence,label\nhi,1\n")
    with pytest.raises(BertforgeError, match="no column 'text_a' or 'text' in the header"):
        read_examples(tmp_path / "x.csv")
    (tmp_path / "x.json").write_text('{"sentence1": "a", "label": "0"}\n')
    with pytest.raises(BertforgeError, match=r"x\.json line 1: no field 'sentence2' \(fields: 'sentence1', 'label'\)"):
        read_examples(tmp_path / "x.json", "afqmc")


BAD = {  # file name, content, error, skip reason
    "json": (
        "t.json",
        '{"sentence": "ok", "label": "100"}\n{"sentence": "cut", "lab\n{"sentence": "fine", "label": "101"}\n',
        r"t\.json line 2: malformed JSON",
        "malformed JSON",
    ),
    "fields": (
        "t.tsv",
        "sentence\tlabel\nok\t1\ntoo\tmany\t1\nfine\t0\n",
        r"t\.tsv line 3: 3 fields, expected 2 \(sentence, label\)",
        "wrong field count",
    ),
    "empty text": (
        "t.jsonl",
        '{"text": "ok", "label": "a"}\n{"text": "  ", "label": "b"}\n{"text": "x", "label": "a"}\n',
        r"t\.jsonl line 2: empty text in 'text'",
        "empty text",
    ),
    "empty label": (
        "t.csv",
        "text,label\nok,a\nno label,\nfine,b\n",
        r"t\.csv line 3: empty label 'label'",
        "empty label",
    ),
    "not a number": (
        "s.tsv",
        "sentence1\tsentence2\tscore\na\tb\t1.5\nc\td\thigh\ne\tf\t2\n",
        r"s\.tsv line 3: label 'high' in 'score' is not a number",
        "bad label",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_record_is_an_error_or_a_counted_skip(tmp_path, case):
    name, content, error, reason = BAD[case]
    (tmp_path / name).write_text(content)
    task = {"t.json": "tnews", "t.tsv": "sst2", "s.tsv": "stsb"}.get(name, "auto")
    with pytest.raises(BertforgeError, match=error):
        read_examples(tmp_path / name, task)
    examples, report = read_examples(tmp_path / name, task, skip_bad_lines=True)
    assert len(examples) == 2 and report.records == 3 and report.skipped == {reason: 1}
    assert report.skip_examples[reason][0].startswith(f"{tmp_path / name} line")


def test_csv_errors_name_the_first_line_of_a_record(tmp_path):
    (tmp_path / "a.csv").write_text('text,label\nok,1\n"spans\ntwo lines",1,extra\nfine,0\n')
    with pytest.raises(BertforgeError, match=r"a\.csv line 3: 3 fields, expected 2"):
        read_examples(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text('text,label\nok,1\n"never closed,1\nmore,0\n')
    with pytest.raises(BertforgeError, match=r"b\.csv line 3: bad CSV record"):
        read_examples(tmp_path / "b.csv")


def test_not_utf8(tmp_path):
    (tmp_path / "gbk.json").write_bytes(
        '{"sentence": "ok", "label": "1"}\n'.encode() + '{"sentence": "中文", "label": "1"}\n'.encode("gbk")
    )
    with pytest.raises(BertforgeError, match=r"gbk\.json line 2: not valid UTF-8"):
        read_examples(tmp_path / "gbk.json", "tnews")


# --- label map ----------------------------------------------------------------------------------------------


def test_label_map_from_training_labels_survives_save_and_load(tmp_path):
    train, _ = read("tnews_train.json", "tnews")
    labels = LabelMap.from_examples(train, "tnews_train.json")
    assert labels.labels == ["100", "102", "108"] and labels.num_labels == 3
    labels.save(tmp_path / "labels.json")
    again = LabelMap.load(tmp_path / "labels.json")
    assert again.labels == labels.labels
    assert [again.encode(e.label, e.source) for e in train] == [labels.encode(e.label) for e in train] == [2, 1, 0, 1]
    assert [again.decode(i) for i in (2, 1, 0)] == ["108", "102", "100"]
    assert [p.name for p in tmp_path.iterdir()] == ["labels.json"]  # written atomically, no leftovers


def test_unknown_label_at_eval_time_names_file_and_line(tmp_path):
    train, _ = read("tnews_train.json", "tnews")
    LabelMap.from_examples(train).save(tmp_path / "labels.json")
    labels = LabelMap.load(tmp_path / "labels.json")
    dev, _ = read("tnews_dev.json", "tnews")
    with pytest.raises(
        BertforgeError,
        match=r"tnews_dev\.json line 2: label '110' is not in the model's labels \(3 labels\)",
    ):
        featurize(dev, None, 32, labels)  # labels are checked before any tokenizing
    with pytest.raises(BertforgeError, match="label id 3 is out of range"):
        labels.decode(3)


def test_label_order_is_numeric_for_integer_labels():
    examples = [Example("x", None, label, str(i), f"t line {i}") for i, label in enumerate(["10", "2", "1", "2"])]
    assert LabelMap.from_examples(examples).labels == ["1", "2", "10"]
    words = [Example("x", None, label, "0", "t line 1") for label in ["neutral", "entailment", "contradiction"]]
    assert LabelMap.from_examples(words).labels == ["contradiction", "entailment", "neutral"]
    with pytest.raises(BertforgeError, match="no labelled examples"):
        LabelMap.from_examples([Example("x", None, None, "0", "test.json line 1")])


def test_label_files(tmp_path):
    (tmp_path / "labels.txt").write_text("pos\r\nneg\r\n\r\n")
    assert LabelMap.load(tmp_path / "labels.txt").labels == ["pos", "neg"]
    (tmp_path / "dup.txt").write_text("pos\nneg\npos\n")
    with pytest.raises(BertforgeError, match=r"dup\.txt line 3: label 'pos' is listed twice"):
        LabelMap.load(tmp_path / "dup.txt")
    (tmp_path / "bad.json").write_text('{"label": "1"}\n{"name": "2"}\n')
    with pytest.raises(BertforgeError, match=r"bad\.json line 2: expected a JSON object with a \"label\""):
        LabelMap.load(tmp_path / "bad.json")
    with pytest.raises(BertforgeError, match="no such labels file"):
        LabelMap.load(tmp_path / "none.txt")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(BertforgeError, match="labels file is empty"):
        LabelMap.load(tmp_path / "empty.txt")


def test_fixed_task_labels():
    assert fixed_labels("SST-2").labels == ["0", "1"]
    assert fixed_labels("qnli").labels == ["entailment", "not_entailment"]
    assert fixed_labels("tnews").num_labels == 15 and fixed_labels("iflytek").num_labels == 119
    assert fixed_labels("csv") is None


# --- model inputs -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(sample):
    return FullTokenizer(sample("vocab-en"))


def test_featurize_single_and_pairs_with_truncation(tokenizer):
    examples, _ = read("mnli_dev_matched.tsv", "mnli")
    labels = fixed_labels("mnli")
    features = featurize(examples, tokenizer, 12, labels)
    reference = tokenizer.encode_batch([e.text_a for e in examples], [e.text_b for e in examples], 12)
    assert features.inputs["input_ids"] == [e.input_ids for e in reference.encodings]
    assert features.inputs["token_type_ids"] == [e.token_type_ids for e in reference.encodings]
    assert list(features.lengths) == [len(ids) for ids in features.inputs["input_ids"]] and max(features.lengths) == 12
    assert features.inputs["labels"] == [2, 1, 0] and features.example_index == [0, 1, 2]
    full = featurize(examples, tokenizer, 128, labels)
    assert full.num_truncated == 0
    assert features.num_truncated == reference.num_truncated == sum(n > 12 for n in full.lengths) > 0

    mixed = [Example("one sentence", None, "a", "0", "m line 1"), Example("a pair", "of texts", "b", "1", "m line 2")]
    features = featurize(mixed, tokenizer, 16, LabelMap(["a", "b"]))
    assert features.inputs["token_type_ids"][0] == [0] * 4 and features.inputs["token_type_ids"][1][-3:] == [1, 1, 1]
    assert features.inputs["labels"] == [0, 1]


def test_featurize_regression_and_unlabelled(tokenizer):
    train, _ = read("stsb_train.tsv", "stsb")
    assert featurize(train, tokenizer, 64, None).inputs["labels"] == [5.0, 0.25, 3.8]
    test, _ = read("cola_test.tsv", "cola")
    assert "labels" not in featurize(test, tokenizer, 64, fixed_labels("cola")).inputs
    with pytest.raises(BertforgeError, match=r"cola_test\.tsv line 2: no label, but other examples have one"):
        featurize(test + [Example("x", None, "1", "9", "extra")], tokenizer, 64, fixed_labels("cola"))
    classes, _ = read("qqp_train.tsv", "qqp")
    with pytest.raises(BertforgeError, match=r"qqp_train\.tsv line 2: label '1' is a class name, but no label map"):
        featurize(classes, tokenizer, 64, None)


# --- prediction files ---------------------------------------------------------------------------------------


def test_postprocess_record_and_score(tmp_path):
    examples, _ = read("mnli_dev_matched.tsv", "mnli")  # gold: neutral, entailment, contradiction
    mnli = settings(fixed_labels("mnli"))
    logits = np.array([[0.1, 0.2, 2.7], [0.05, 3.0, 0.05], [0.6, 0.3, 0.1]], dtype=np.float32)
    results = TASK.postprocess(examples, None, [{"logits": row} for row in logits], mnli)
    softmax = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    for result, row in zip(results, softmax):
        assert [r["score"] for r in result] == sorted((r["score"] for r in result), reverse=True)
        assert {r["label"]: r["score"] for r in result} == pytest.approx(dict(zip(mnli.labels, row)), abs=1e-6)
    assert [r[0]["label"] for r in results] == ["neutral", "entailment", "contradiction"]
    assert TASK.record(results[1]) == {
        "label": "entailment",
        "score": results[1][0]["score"],
        "probabilities": {r["label"]: r["score"] for r in results[1]},
    }
    metrics = TASK.score(results, examples, mnli, "accuracy")
    assert metrics["accuracy"] == 1.0 and metrics["total_num"] == 3
    wrong = [results[1], results[0], results[2]]
    assert TASK.score(wrong, examples, mnli, "accuracy")["accuracy"] == pytest.approx(1 / 3)

    train, _ = read("stsb_train.tsv", "stsb")  # regression: the raw score
    scores = TASK.postprocess(train, None, [{"logits": np.array([v])} for v in (4.5, 0.5, 3.0)], settings(None))
    assert scores == [{"score": 4.5}, {"score": 0.5}, {"score": 3.0}] and TASK.record(scores[1]) == {"score": 0.5}
    assert TASK.score(scores, train, settings(None), "spearman_correlation")["spearman"] == pytest.approx(1.0)


def test_raw_inputs_become_examples():
    assert TASK.example("a text", "3") == Example("a text", None, None, "3", "input 3")
    assert TASK.example(("a", "b"), "0").text_b == "b"
    assert TASK.example({"text": "a", "text_b": "b", "id": 7}, "0").guid == "7"
    with pytest.raises(BertforgeError, match="expected a text"):
        TASK.example(42, "0")


def test_clue_submission(tmp_path):
    test, _ = read("tnews_test.json", "tnews")
    labels = LabelMap.load(FIXTURES / "tnews_labels.json")
    write_clue_submission(tmp_path / "tnews_predict.json", test, ["108", "102", "999"], "tnews", labels)
    lines = [json.loads(x) for x in (tmp_path / "tnews_predict.json").read_text().splitlines()]
    assert lines == [
        {"id": 0, "label": "108", "label_desc": "news_edu"},
        {"id": 1, "label": "102", "label_desc": "news_entertainment"},
        {"id": 2, "label": "999"},
    ]
    pairs, _ = read("afqmc_test.json", "afqmc")
    write_clue_submission(tmp_path / "afqmc_predict.json", pairs, ["1", "0"], "afqmc")
    assert (tmp_path / "afqmc_predict.json").read_text() == '{"id": 0, "label": "1"}\n{"id": 1, "label": "0"}\n'
    with pytest.raises(BertforgeError, match="'mnli' is not a CLUE classification task"):
        write_clue_submission(tmp_path / "x.json", pairs, ["1", "0"], "mnli")


def test_glue_submission(tmp_path):
    test, _ = read("cola_test.tsv", "cola")
    write_glue_predictions(tmp_path / "CoLA.tsv", test, ["1", "0"])
    assert (tmp_path / "CoLA.tsv").read_text() == "index\tprediction\n0\t1\n1\t0\n"
    write_glue_predictions(tmp_path / "STS-B.tsv", test, np.array([3.25, 0.1234567]))
    assert (tmp_path / "STS-B.tsv").read_text() == "index\tprediction\n0\t3.25\n1\t0.123457\n"


# --- real CLUE and GLUE lines (Hugging Face datasets' test data) ----------------------------------------------


def unzip_task(sample, benchmark: str, task: str, dest: Path) -> Path:
    with zipfile.ZipFile(sample(f"{benchmark}-dummy") / task / "1.0.0" / "dummy_data.zip") as zf:
        zf.extractall(dest)
    return dest / "dummy_data"


def test_real_clue_files(sample, tmp_path):
    tnews = unzip_task(sample, "clue", "tnews", tmp_path / "tnews")
    labels = LabelMap.load(tnews / "labels.json")
    assert labels.labels == list(TASK_LABELS["tnews"]) and labels.descriptions["102"] == "news_entertainment"
    train, _ = read_examples(tnews / "train.json", "tnews")
    assert train[0].label == "108" and train[0].text_a.startswith("上课时学生手机响个不停")
    assert labels.encode(train[0].label, train[0].source) == 7
    test, report = read_examples(tnews / "test.json", "tnews")
    assert test[0].guid == "0" and report.unlabelled == len(test) == 1

    expected = {
        "afqmc": ("0", True),
        "cmnli": ("neutral", True),
        "ocnli": ("entailment", True),
        "iflytek": ("11", False),
        "csl": ("0", True),
    }
    for task, (label, pair) in expected.items():
        root = unzip_task(sample, "clue", task, tmp_path / task)
        files = {p.name: p for p in root.rglob("*.json") if "MACOSX" not in str(p)}
        train, _ = read_examples(files["train.json"], task)
        assert train[0].label == label and (train[0].text_b is not None) == pair, task
        test, report = read_examples(files["test.json"], task)
        assert report.unlabelled == len(test) > 0, task
        assert train[0].label in TASK_LABELS[task]


GLUE_FILES = {  # task: folder, first train label, pair task
    "cola": ("CoLA", "1", False),
    "sst2": ("SST-2", "0", False),
    "stsb": ("SST-B", 5.0, True),
    "qqp": ("QQP", "0", True),
    "mnli": ("MNLI", "neutral", True),
    "qnli": ("QNLI", "not_entailment", True),
    "rte": ("RTE", "not_entailment", True),
    "wnli": ("WNLI", "1", True),
}


def test_real_glue_files(sample, tmp_path):
    for task, (folder, label, pair) in GLUE_FILES.items():
        root = unzip_task(sample, "glue", task, tmp_path / task) / folder
        for split in root.glob("*.tsv"):
            examples, report = read_examples(split, task)
            assert examples and not report.skipped, split
            assert (report.unlabelled == len(examples)) == split.name.startswith("test"), split
            assert all((e.text_b is not None) == pair for e in examples), split
        train, _ = read_examples(root / "train.tsv", task)
        assert train[0].label == label, task
    mrpc = unzip_task(sample, "glue", "mrpc", tmp_path / "mrpc") / "MRPC"
    # The real file starts with a UTF-8 BOM; this test data spells it as the three letters "BOM".
    train, _ = read_examples(mrpc / "train", "mrpc", label="BOMQuality")
    assert train[0].label == "1" and train[0].text_a.startswith('Amrozi accused his brother , whom he called "')
    assert fixed_labels("mrpc").encode(train[1].label, train[1].source) == 0


def test_the_folder_records_whether_the_model_takes_pairs_and_the_form_follows():
    """prepare records whether the training data had a text_b (a learned setting, kept in bertforge.json); the
    served form has a second box only for a model trained on pairs, or one whose folder does not say."""
    from bertforge.model_folder import settings_from_json
    from bertforge.tasks.classification_serving import SERVING

    def kept(train):
        prepared = TASK.prepare(ClassificationConfig(format="csv"), train, None)
        return settings_from_json(json.loads(prepared.to_json()), "bertforge.json")

    singles = [Example("good", None, "pos", "0", "t line 1"), Example("bad", None, "neg", "1", "t line 2")]
    pairs = [*singles[:1], Example("good", "fine", "pos", "2", "t line 3")]
    boxes = {name: [f["name"] for f in SERVING.form(kept(train))["inputs"]]
             for name, train in (("singles", singles), ("pairs", pairs))}  # fmt: skip
    assert (kept(singles).task.pairs, kept(pairs).task.pairs) == (False, True)
    assert boxes == {"singles": ["text"], "pairs": ["text", "text_b"]}
    unknown = ModelSettings("classification", ["neg", "pos"], task=ClassificationConfig(format="csv"))
    assert [f["name"] for f in SERVING.form(unknown)["inputs"]] == ["text", "text_b"]  # an older folder
