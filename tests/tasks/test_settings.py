"""Task settings are declared once and checked at every entry: the fine-tuning YAML and `--task.KEY` of
`finetune`, `--task.KEY` of `predict`/`serve`/`export`, and a model folder's bertforge.json. Each bad value is
one line naming where it came from, the key, what was expected and what was given."""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from bertforge.cli import main as cli
from bertforge.errors import BertforgeError
from bertforge.fileio import holds_files
from bertforge.inference import Predictor
from bertforge.model_folder import ModelSettings, save_model_folder
from bertforge.modeling import BertConfig, BertForQuestionAnswering, BertForTokenClassification
from bertforge.tasks import TASKS, ner, qa
from bertforge.training.config import load_config
from bertforge.training.finetune import config_class, config_yaml

ROOT = Path(__file__).resolve().parents[2]
TAGS = ["O"] + [f"{p}-{k}" for k in ("LOC", "PER") for p in "BIES"]
TINY = {"vocab_size": 21128, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}


@pytest.fixture(scope="module")
def ner_folder(sample, tmp_path_factory):
    """A (random) character-level CRF NER model with windows of 16 tokens (14 characters)."""
    torch.manual_seed(0)
    settings = ModelSettings("ner", TAGS, max_seq_length=16, task=ner.NerConfig(unit="char", scheme="BIO", crf=True))
    model = BertForTokenClassification(BertConfig.from_preset("tiny", **TINY, **ner.model_overrides(settings)))
    folder = tmp_path_factory.mktemp("ner") / "model"
    return save_model_folder(folder, model, ner.sync(model, settings), sample("vocab-zh"))


@pytest.fixture(scope="module")
def qa_folder(sample, tmp_path_factory):
    torch.manual_seed(0)
    settings = qa.prepare(qa.QaConfig(max_seq_length=64, doc_stride=16, max_query_length=16), [], None)
    model = BertForQuestionAnswering(BertConfig.from_preset("tiny", **TINY))
    return save_model_folder(tmp_path_factory.mktemp("qa") / "model", model, settings, sample("vocab-zh"))


def one_error(capsys) -> str:
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1, errors
    return errors[0]


TEXT = "王芳在深圳学习，李鹏在北京工作，张三去了上海和广州。"  # 26 characters: several windows of 14


@pytest.mark.parametrize("stride", [0, 1, 5, 13])
def test_every_valid_ner_stride_tags_every_character(ner_folder, stride):
    predictor = Predictor.from_pretrained(ner_folder, task_options={"doc_stride": stride})
    example = predictor.example(TEXT, "0")
    ((_, result),) = predictor.predict_examples([example])
    assert len(result.tags) == len(TEXT)  # one tag per character, each decoded from some window


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1000", "task.doc_stride must be 0 (half a window) or less than the window of 14 word-pieces"),
        ("14", "got 14"),  # a window's width: no overlap is still a skipped word at its edge
        ("-3", "task.doc_stride must be an integer >= 0, got -3"),
        ("abc", "task.doc_stride must be an integer >= 0, got 'abc' (a string)"),
        ("null", "task.doc_stride must be an integer >= 0, got None (null)"),
        ("[1]", "task.doc_stride must be an integer >= 0, got [1] (a list)"),
    ],
)
def test_predict_refuses_a_bad_ner_stride_naming_the_key(ner_folder, capsys, value, expected):
    assert cli(["predict", "--model", str(ner_folder), "--task.doc_stride", value, TEXT]) == 2
    error = one_error(capsys)
    assert "command line" in error and expected in error, error


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("constrained", '"false"', "task.constrained must be true or false, got 'false' (a string)"),
        ("constrained", "1", "task.constrained must be true or false, got 1"),
        ("crf", "false", "task.crf is fixed when the model is trained"),
        ("unit", "word", "task.unit is learned in training"),
        ("crf_lr_multiplier", "2", "task.crf_lr_multiplier is a training setting"),
        ("doc_strid", "3", "unknown config key 'task.doc_strid'; did you mean 'task.doc_stride'?"),
    ],
)
def test_predict_takes_only_valid_inference_settings(ner_folder, capsys, key, value, expected):
    assert cli(["predict", "--model", str(ner_folder), f"--task.{key}", value, TEXT]) == 2
    assert expected in one_error(capsys)


def test_boolean_settings_take_true_and_false_only(ner_folder):
    on = Predictor.from_pretrained(ner_folder, task_options={"constrained": True})
    assert on.settings.task.constrained is True
    with pytest.raises(BertforgeError, match="must be true or false"):
        Predictor.from_pretrained(ner_folder, task_options={"constrained": "false"})


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("max_answer_length", "0", "task.max_answer_length must be an integer >= 1, got 0"),
        ("n_best_size", "0", "task.n_best_size must be an integer >= 1, got 0"),
        ("null_threshold", "abc", "task.null_threshold must be a number or null, got 'abc' (a string)"),
        ("null_threshold", "null", "task.null_threshold needs a value"),
        ("doc_stride", "45", "task.doc_stride must be smaller than the context window, 45 pieces"),
        ("version_2_with_negative", "true", "task.version_2_with_negative is fixed when the model is trained"),
    ],
)
def test_predict_refuses_bad_qa_settings(qa_folder, capsys, key, value, expected):
    args = ["predict", "--model", str(qa_folder), "--question", "谁?", "--context", "王芳在深圳学习。"]
    assert cli([*args, f"--task.{key}", value]) == 2
    assert expected in one_error(capsys)


def tampered(folder, tmp_path, edit):
    copy = tmp_path / "tampered"
    shutil.copytree(folder, copy)
    data = json.loads((copy / "bertforge.json").read_text())
    edit(data)
    (copy / "bertforge.json").write_text(json.dumps(data))
    return copy


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d["task"]["crf_transitions"].pop(), r"task\.crf_transitions must be a 9 x 9 array of finite"),
        (lambda d: d["task"]["crf_transitions"][2].pop(), r"task\.crf_transitions must be a 9 x 9 array"),
        (lambda d: d["task"]["crf_end"].__setitem__(0, float("nan")), r"task\.crf_end must be a 9 array of finite"),
        (lambda d: d["task"].__setitem__("doc_stride", 99), r"task\.doc_stride must be 0 \(half a window\)"),
        (lambda d: d["task"].__setitem__("truncate", "no"), r"task\.truncate must be true or false, got 'no'"),
        (lambda d: d.__setitem__("max_seq_length", -3), r"max_seq_length must be an integer >= 3, got -3"),
        (lambda d: d.__setitem__("labels", "O"), r"labels must be a list or null, got 'O'"),
        (lambda d: d["task"].__setitem__("colour", 1), r"unknown config key 'task\.colour'"),
        (lambda d: d.__setitem__("format_version", 99), r"settings format 99, newer than this bertforge's"),
    ],
)
def test_a_tampered_model_folder_is_refused_naming_its_settings_file(ner_folder, tmp_path, edit, expected):
    copy = tampered(ner_folder, tmp_path, edit)
    with pytest.raises(BertforgeError, match=rf"tampered/bertforge\.json: .*{expected}"):
        Predictor.from_pretrained(copy)


def test_version_1_settings_files_still_load(qa_folder, tmp_path):
    """bertforge.json before the typed settings: no format_version, and a setting that is no longer kept."""

    def old(data):
        del data["format_version"]
        data["task"]["tune_threshold"] = True
        data["task"]["null_threshold"] = 1.5

    copy = tampered(qa_folder, tmp_path, old)
    predictor = Predictor.from_pretrained(copy)
    assert predictor.settings.task.null_threshold == 1.5 and predictor.settings.task.doc_stride == 16
    resaved = json.loads(predictor.settings.to_json())
    assert resaved["format_version"] == 2 and "tune_threshold" not in resaved["task"]


def test_kept_settings_round_trip_through_the_model_folder(ner_folder):
    settings = Predictor.from_pretrained(ner_folder).settings
    saved = json.loads((ner_folder / "bertforge.json").read_text())
    assert json.loads(settings.to_json()) == saved
    assert "train" not in saved["task"] and "max_seq_length" not in saved["task"]  # carried once, beside
    assert saved["max_seq_length"] == 16 and len(saved["task"]["crf_transitions"]) == len(TAGS)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--task.doc_stride", "1000"], "task.doc_stride must be 0 (half a window) or less than the window of 30"),
        (["--task.doc_stride", "-3"], "task.doc_stride must be an integer >= 0, got -3"),
        (["--task.crf", '"false"'], "task.crf must be true or false, got 'false' (a string)"),
        (["--task.max_seq_length", "-3"], "task.max_seq_length must be an integer >= 3, got -3"),
        (["--task.eval_batch_size", "0"], "task.eval_batch_size must be an integer >= 1, got 0"),
        (["--task.unit", "word"], "task.unit is learned in training"),
        (["--task.assessment_method", "acc"], "task.assessment_method must be one of f1, strict_f1, cluener_f1"),
    ],
)
def test_finetune_refuses_bad_task_settings_before_anything_is_written(tiny_checkpoint, tmp_path, capsys, args,
                                                                       expected):  # fmt: skip
    train = tmp_path / "train.txt"
    train.write_text("王 B-PER\n芳 I-PER\n在 O\n\n", encoding="utf-8")
    out = tmp_path / "out"
    base = ["finetune", "ner", "--quiet", "--init", str(tiny_checkpoint), "--train", str(train), "--output", str(out)]
    assert cli([*base, "--max-seq-length", "32", *args]) == 2
    error = one_error(capsys)
    assert "command line" in error and expected in error, error
    assert not holds_files(out)


def test_a_yaml_task_section_is_checked_naming_the_file(tmp_path):
    path = tmp_path / "ner.yaml"
    path.write_text("task:\n  crf: 'false'\n")
    with pytest.raises(BertforgeError, match=r"ner\.yaml: task\.crf must be true or false, got 'false'"):
        load_config(path, [], config_class("ner"))
    path.write_text("task:\n  crf: true\n  doc_stride: 200\n")
    with pytest.raises(BertforgeError, match=r"task\.doc_stride must be 0 \(half a window\) or less than .* 126"):
        load_config(path, [], config_class("ner"))


@pytest.mark.parametrize("kind", sorted(TASKS))
def test_the_shipped_recipe_is_the_default(kind):
    """`finetune KIND` with and without `--config configs/finetune/KIND.yaml` resolves to the same configuration."""
    path = ROOT / "configs" / "finetune" / f"{kind}.yaml"
    overrides = ["init=model", "task.train=train.json"]
    assert config_yaml(load_config(None, overrides, config_class(kind))) == config_yaml(
        load_config(path, overrides, config_class(kind))
    )


def test_the_resolved_configuration_is_saved_with_the_run(tiny_checkpoint, tmp_path):
    dev = tmp_path / "dev.csv"
    dev.write_text("text,label\ngood film,1\nbad film,0\n", encoding="utf-8")
    (tmp_path / "labels.txt").write_text("0\n1\n")
    saved = []
    recipe = ROOT / "configs" / "finetune" / "classification.yaml"
    for name, extra in (("plain", []), ("yaml", ["--config", str(recipe)])):
        out = tmp_path / name
        args = ["finetune", "classification", "--quiet", "--device", "cpu", "--init", str(tiny_checkpoint),
                "--dev", str(dev), "--labels", str(tmp_path / "labels.txt"), "--no-do-train", "--output", str(out),
                *extra]  # fmt: skip
        assert cli(args) == 0
        saved.append(yaml.safe_load((out / "config.yaml").read_text()))
    assert saved[0] == saved[1]
    assert saved[0]["task"]["dev"] == str(dev) and saved[0]["optimizer"]["learning_rate"] == 2e-5


def test_every_task_declares_its_settings_completely():
    """Every setting has a type the checks understand and a default that passes its own rule."""
    from bertforge.tasks.settings import declared

    for task in TASKS.values():
        for name, d in declared(task.config).items():
            assert d.rule.check(f"task.{name}", d.default) == d.default or d.default is None
        defaults = task.config()
        assert dataclasses.replace(defaults) == defaults


def test_a_blank_context_on_the_command_line_is_one_plain_line(qa_folder, capsys):
    assert cli(["predict", "--model", str(qa_folder), "--question", "谁?", "--context", "   "]) == 2
    error = one_error(capsys)
    assert "arguments: empty or missing 'context' (fields: question, context)" in error, error
