"""`bertforge export`: every head's ONNX graph equals PyTorch on dynamic shapes (batch 1 and 7, lengths 3 and
200), the ONNX Runtime backend predicts what the torch backend predicts (labels, entities, answers), the
report says so, int8 is smaller, and bad input is one line that writes nothing. (The NumPy Viterbi that
decodes exported CRF emissions is checked against torch CRFs in tests/modeling/test_crf.py and
tests/tasks/test_ner.py.)"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bertforge.cli import main as cli
from bertforge.errors import BertforgeError
from bertforge.export.onnx import export_folder
from bertforge.export.verify import REPORT_FILE, sample_inputs
from bertforge.extras import need
from bertforge.inference import Predictor
from bertforge.inference.backends import ONNX_FILE, OPTIMIZED_FILE, QUANTIZED_FILE, OnnxBackend, TorchBackend
from bertforge.model_folder import SETTINGS_FILE, save_model_folder
from bertforge.modeling import BertConfig
from bertforge.tasks import get_task
from bertforge.tasks.classification import ClassificationConfig
from bertforge.tasks.ner import NerConfig
from bertforge.tasks.qa import QaConfig

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}:{ROOT}", OMP_NUM_THREADS="1")
HEADS = {  # name -> (task kind, task config)
    "classification": ("classification", ClassificationConfig(format="csv")),
    "regression": ("classification", ClassificationConfig(format="csv", regression=True)),
    "ner": ("ner", NerConfig()),
    "ner-crf": ("ner", NerConfig(crf=True)),
    "ner-crf-bilstm": ("ner", NerConfig(crf=True, lstm_hidden_size=8)),
    "qa": ("qa", QaConfig(version_2_with_negative=True, null_threshold=0.5)),
}


def model_folder(root, name, vocab):
    """A tiny randomly initialised fine-tuned model folder of one head (224 positions: length 200 fits)."""
    kind, tc = HEADS[name]
    task = get_task(kind)
    tc.max_seq_length = 224
    if kind == "classification" and not tc.regression:
        tc.labels = str(root / "labels.txt")
        (root / "labels.txt").write_text("neg\npos\nneutral\n")
    if kind == "ner":
        tc.labels = str(root / "types.txt")
        (root / "types.txt").write_text("LOC\nPER\n")
    settings = task.prepare(tc, [], None)
    torch.manual_seed(0)
    config = BertConfig.from_preset("tiny", vocab_size=30522, hidden_size=32, num_attention_heads=2,
                                    intermediate_size=64, max_position_embeddings=224,
                                    **task.model_overrides(settings))  # fmt: skip
    model = task.head(config).eval()
    for p in model.parameters():  # larger than the initialisation's, so predictions are not all alike
        torch.nn.init.normal_(p, std=0.5 if p.dim() < 2 else 0.2)
    return save_model_folder(root / name, model, task.sync(model, settings), vocab)


@pytest.fixture(scope="module", params=list(HEADS))
def exported(request, sample, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    source = model_folder(root, request.param, sample("vocab-en"))
    return source, root / "onnx", export_folder(source, root / "onnx")


def random_batch(batch, length, seed):
    """Random ids with ragged rows (each at least one real token, one row full)."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, length + 1, (batch,), generator=gen)
    lengths[0] = length
    mask = (torch.arange(length) < lengths[:, None]).long()
    ids = torch.randint(1000, 30522, (batch, length), generator=gen) * mask
    types = (torch.arange(length) >= lengths[:, None] // 2).long() * mask
    return {"input_ids": ids.numpy(), "token_type_ids": types.numpy(), "attention_mask": mask.numpy()}


@pytest.mark.parametrize("graph", [OPTIMIZED_FILE, ONNX_FILE], ids=["optimized", "portable"])
def test_onnx_equals_pytorch_on_dynamic_shapes(exported, graph):
    source, onnx, report = exported
    head = get_task(json.loads((source / SETTINGS_FILE).read_text())["kind"]).head
    ours, theirs = TorchBackend(head.from_pretrained(source).eval()), OnnxBackend(onnx / graph)
    for batch, length in ((1, 3), (7, 3), (1, 200), (7, 200)):
        data = random_batch(batch, length, seed=batch * length)
        expected, got = ours(data), theirs(data)
        assert got.keys() == expected.keys()
        real = data["attention_mask"].astype(bool)
        for name, value in expected.items():
            assert got[name].shape == value.shape, (name, batch, length)
            diff = np.abs(got[name] - value)
            if value.ndim > 1 and value.shape[1] == length:  # per-token: padding is cut off by prediction
                diff = diff[real]
            assert diff.max() <= 1e-4, (name, batch, length, diff.max())

    for name in ("fp32", "portable"):
        assert max(report[name]["max_abs_diff"].values()) <= 1e-4 and report[name]["agreement"] == 1.0
    assert json.loads((onnx / REPORT_FILE).read_text()) == report
    layers = json.loads((source / "config.json").read_text())["num_hidden_layers"]
    assert report["fusions"]["Attention"] == layers and report["fusions"]["SkipLayerNormalization"] > 0
    tokenizer = {"tokenizer_config.json", "special_tokens_map.json"}
    assert {p.name for p in onnx.iterdir()} == {ONNX_FILE, OPTIMIZED_FILE, "config.json", "vocab.txt", SETTINGS_FILE,
                                                REPORT_FILE, *tokenizer}  # fmt: skip


def test_portable_graph_runs_without_onnx_runtime(exported):
    """model.onnx holds standard operators only: ONNX's own reference evaluator (NumPy, no ONNX Runtime) runs it
    and matches PyTorch; the optimized graph beside it is ONNX Runtime's (fused com.microsoft operators)."""
    onnx = need("onnx")
    from onnx.reference import ReferenceEvaluator

    source, folder, _ = exported
    portable, optimized = onnx.load(str(folder / ONNX_FILE)), onnx.load(str(folder / OPTIMIZED_FILE))
    onnx.checker.check_model(portable, full_check=True)
    assert {node.domain for node in portable.graph.node} <= {"", "ai.onnx"}
    assert "com.microsoft" in {node.domain for node in optimized.graph.node}
    head = get_task(json.loads((source / SETTINGS_FILE).read_text())["kind"]).head
    ours = TorchBackend(head.from_pretrained(source).eval())
    evaluator = ReferenceEvaluator(portable)
    names = [o.name for o in portable.graph.output]
    for batch, length in ((1, 3), (3, 17)):
        data = random_batch(batch, length, seed=batch + length)
        expected = ours(data)
        got = dict(zip(names, evaluator.run(None, data)))
        assert got.keys() == expected.keys()
        real = data["attention_mask"].astype(bool)
        for name, value in expected.items():
            diff = np.abs(got[name] - value)
            if value.ndim > 1 and value.shape[1] == length:
                diff = diff[real]
            assert diff.max() <= 1e-4, (name, batch, length, diff.max())


def test_onnx_backend_predicts_what_torch_predicts(exported):
    source, onnx, _ = exported
    torch_predictor = Predictor.from_pretrained(source, batch_size=3)
    onnx_predictor = Predictor.from_pretrained(onnx, backend="onnx", batch_size=3, threads=1)
    assert onnx_predictor.settings.task == torch_predictor.settings.task  # CRF transitions, QA threshold
    inputs = sample_inputs(torch_predictor.task)
    expected, got = torch_predictor.predict(inputs), onnx_predictor.predict(inputs)

    def strip(x):  # the decision without its confidence
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k != "score"}
        return [strip(v) for v in x] if isinstance(x, list) else x

    def scores(x):
        if isinstance(x, dict):
            return [x["score"]] if "score" in x else []
        return [s for v in x for s in scores(v)] if isinstance(x, list) else []

    assert strip(got) == strip(expected)
    assert scores(got) == pytest.approx(scores(expected), abs=1e-4)
    if torch_predictor.task.kind == "ner":
        assert any(expected), "no entities at all: the comparison would be empty"


def test_int8_is_smaller_predicts_and_logs_each_line_once(sample, tmp_path):
    source = model_folder(tmp_path, "classification", sample("vocab-en"))
    # A process of its own: under pytest the root logger has handlers, which hid a handler the quantizer added.
    done = subprocess.run(
        [sys.executable, "-m", "bertforge", "export", "--model", str(source), "--output", str(tmp_path / "q"),
         "--quantize", "int8"], capture_output=True, text=True, env=ENV, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0 and "exported" in done.stdout, done.stderr
    logged = done.stderr.splitlines()
    assert any(line.startswith("ONNX Runtime optimizer fused:") for line in logged), done.stderr
    assert not any(line.startswith("INFO:") for line in logged), done.stderr  # only bertforge's own handler
    assert len({line.removeprefix("INFO:bertforge:") for line in logged}) == len(logged), done.stderr
    report = json.loads((tmp_path / "q" / REPORT_FILE).read_text())
    assert report["sizes"]["int8"] < report["sizes"]["fp32"] / 2
    assert (tmp_path / "q" / QUANTIZED_FILE).stat().st_size == report["sizes"]["int8"]
    # --backend onnx takes the fastest graph there is: int8, else the optimized one, else the portable one
    for name in (QUANTIZED_FILE, OPTIMIZED_FILE, ONNX_FILE):
        backend = Predictor.from_pretrained(tmp_path / "q", backend="onnx", threads=1).backend
        assert backend.path.name == name and backend.dtype == ("int8" if name == QUANTIZED_FILE else "float32")
        if name != ONNX_FILE:
            (tmp_path / "q" / name).unlink()
    assert report["fp32"]["agreement"] == 1.0 and "max_abs_diff" in report["int8"]
    out = tmp_path / "p.jsonl"
    assert cli(["predict", "--model", str(tmp_path / "q"), "--backend", "onnx", "--threads", "1", "a fine film",
                "--output", str(out)]) == 0  # fmt: skip
    assert json.loads(out.read_text())["label"] in ("neg", "pos", "neutral")


def test_dev_metric_of_both_is_reported(sample, tmp_path):
    source = model_folder(tmp_path, "classification", sample("vocab-en"))
    dev = tmp_path / "dev.csv"
    rows = [("a good film", "pos"), ("a bad film", "neg"), ("an average film", "neutral"), ("great", "pos")]
    dev.write_text("text,label\n" + "".join(f"{t},{label}\n" for t, label in rows))
    report = export_folder(source, tmp_path / "o", dev=dev)
    dev_report = report["fp32"]["dev"]
    assert report["metric"] == "accuracy" and dev_report["delta_points"] == 0.0
    assert dev_report["onnx"]["accuracy"] == dev_report["torch"]["accuracy"]


def test_bad_input_is_one_line_and_writes_nothing(sample, tmp_path, capsys, monkeypatch):
    source = model_folder(tmp_path, "classification", sample("vocab-en"))

    def fails(*args, expect):
        assert cli(["export", *map(str, args)]) == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]  # progress may come before; the error is one line
        assert last.startswith("bertforge export: error: ") and expect in last, last

    no_weights = tmp_path / "no-weights"
    shutil.copytree(source, no_weights)
    (no_weights / "model.safetensors").unlink()
    fails("--model", no_weights, "--output", tmp_path / "out", expect="no weights found")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("mine")
    fails("--model", source, "--output", tmp_path / "out", expect="already exists; pass --overwrite")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["mine.txt"]
    fails("--model", tmp_path / "nowhere", "--output", tmp_path / "o2", expect="no such model folder")
    fails("--model", source, "--output", source, "--overwrite", expect="must not be the model folder")
    fails("--model", source / ".." / "nowhere", "--output", tmp_path / "o2", expect="no such model folder")
    assert not (tmp_path / "o2").exists()
    fails_predict = cli(["predict", "--model", str(source), "--backend", "onnx", "text"])
    assert fails_predict == 2 and "no model.onnx; export the model first" in capsys.readouterr().err

    monkeypatch.setattr("bertforge.export.verify.FP32_TOLERANCE", -1.0)  # any difference is too much
    fails("--model", source, "--output", tmp_path / "o2", expect="the fp32 ONNX model differs from PyTorch by")
    assert not (tmp_path / "o2").exists() and not list(tmp_path.glob(".o2.*"))

    with pytest.raises(BertforgeError, match=r"^no_such_package is not installed; pip install 'bertforge\[export\]'$"):
        need("no_such_package")


def test_a_damaged_model_onnx_is_one_line(sample, tmp_path, capsys):
    onnx = need("onnx")
    helper = onnx.helper
    value = helper.make_tensor_value_info("input_ids", onnx.TensorProto.INT64, ["batch", "length"])
    logits = helper.make_tensor_value_info("logits", onnx.TensorProto.INT64, ["batch", "length"])
    graph = helper.make_graph([helper.make_node("Identity", ["input_ids"], ["logits"])], "g", [value], [logits])
    whole = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()
    path = tmp_path / ONNX_FILE
    for cut in range(len(whole)):  # every truncation: read, or one error naming the file
        path.write_bytes(whole[:cut])
        try:
            OnnxBackend(path, threads=1)
        except BertforgeError as exc:
            assert str(exc).startswith(f"{path}: not a readable ONNX model (") and "\n" not in str(exc), exc
    path.write_bytes(whole)
    assert OnnxBackend(path, threads=1)({"input_ids": np.ones((1, 2), np.int64)})["logits"].tolist() == [[1, 1]]

    source = model_folder(tmp_path, "classification", sample("vocab-en"))
    (source / ONNX_FILE).write_bytes(whole[: len(whole) // 2])
    assert cli(["predict", "--model", str(source), "--backend", "onnx", "a fine film"]) == 2
    expect = f"bertforge predict: error: {source / ONNX_FILE}: not a readable ONNX model (Protobuf parsing failed.)"
    assert capsys.readouterr().err.splitlines()[-1].startswith(expect)


def test_dev_is_read_in_the_models_own_columns_and_checked_before_exporting(sample, tmp_path, capsys):
    """A model trained on columns named `sentence`/`polarity` keeps them, so `export --dev` reads its dev file;
    a dev file that cannot be scored is refused before the (slow) export starts."""
    source = model_folder(tmp_path, "classification", sample("vocab-en"))
    settings = json.loads((source / SETTINGS_FILE).read_text())
    settings["task"] |= {"text_a": "sentence", "label": "polarity"}
    (source / SETTINGS_FILE).write_text(json.dumps(settings))
    dev = tmp_path / "dev.csv"
    dev.write_text("sentence,polarity\na good film,pos\na bad film,neg\n")
    report = export_folder(source, tmp_path / "o", dev=dev)
    assert report["fp32"]["dev"]["onnx"]["accuracy"] == report["fp32"]["dev"]["torch"]["accuracy"]

    unlabelled = tmp_path / "new.csv"
    unlabelled.write_text("sentence\na good film\n")
    capsys.readouterr()
    assert cli(["export", "--model", str(source), "--output", str(tmp_path / "o2"), "--dev", str(unlabelled)]) == 2
    err = capsys.readouterr().err
    assert "new.csv: no labels" in err and "exporting" not in err, err  # refused before the export began
    assert not (tmp_path / "o2").exists()


def test_the_opset_flag_reaches_the_graph(sample, tmp_path):
    """`export --opset 17` writes a graph of opset 17 (the default is 18), and the report says so."""
    onnx = need("onnx")
    source = model_folder(tmp_path, "classification", sample("vocab-en"))
    assert cli(["export", "--model", str(source), "--output", str(tmp_path / "o"), "--opset", "17"]) == 0
    graph = onnx.load(str(tmp_path / "o" / ONNX_FILE))
    assert {o.domain: o.version for o in graph.opset_import}[""] == 17
    assert json.loads((tmp_path / "o" / REPORT_FILE).read_text())["opset"] == 17
