"""Model folders that other tools read right: the tokenizer files `finetune` (save_model_folder), `convert` and
`export` write make transformers' `AutoTokenizer` tokenize exactly as bertforge does — a cased model stays cased —
and its pipelines cut a text longer than the model takes instead of crashing on it."""

import dataclasses
import json
import logging

import pytest
import torch

from bertforge.model_folder import convert_checkpoint, load_settings, save_model_folder, write_settings
from bertforge.modeling.config import BertConfig
from bertforge.tasks import get_task, kinds_by_head
from bertforge.tokenization import FullTokenizer
from tests.export.test_onnx import model_folder

transformers = pytest.importorskip("transformers")


def real_lines(sample, n: int = 300) -> list[str]:
    """English news with its capitals, numbers and punctuation (gensim's Lee corpus), and Chinese prose."""
    english = sample("lee-background").read_text(encoding="utf-8").splitlines()
    chinese = sample("peoples-daily").read_text(encoding="utf-8").splitlines()
    return [line for line in english if line.strip()][:n] + [
        line.replace("/", " ")[:300] for line in chinese[:50] if line.strip()
    ]


def cased_copy(folder, tmp_path):
    """The same model, kept as a cased one (as `finetune --do-lower-case false` would)."""
    settings = load_settings(folder)
    settings = dataclasses.replace(
        settings, do_lower_case=False, task=dataclasses.replace(settings.task, do_lower_case=False)
    )
    model = get_task(settings.kind).head.from_pretrained(folder)
    return save_model_folder(tmp_path / "cased", model, settings, folder / "vocab.txt")


@pytest.fixture(scope="module")
def classifier(sample, tmp_path_factory):
    return model_folder(tmp_path_factory.mktemp("folder"), "classification", sample("vocab-en"))


@pytest.mark.parametrize("cased", [False, True], ids=["uncased", "cased"])
def test_auto_tokenizer_tokenizes_like_bertforge(classifier, tmp_path, sample, cased):
    folder = cased_copy(classifier, tmp_path) if cased else classifier
    ours = FullTokenizer(folder / "vocab.txt", do_lower_case=not cased)
    theirs = transformers.AutoTokenizer.from_pretrained(str(folder))
    lines = real_lines(sample)
    got = theirs(lines, add_special_tokens=True, truncation=False)["input_ids"]
    expected = [ours.encode(line, max_length=None).input_ids for line in lines]
    assert got == expected
    capitals = [line for line in lines if any(c.isupper() for c in line)]
    other = FullTokenizer(folder / "vocab.txt", do_lower_case=cased)  # the other casing
    ids = [(other.encode(line, max_length=None).input_ids, ours.encode(line, max_length=None).input_ids)
           for line in capitals]  # fmt: skip
    changed = [line for line, (a, b) in zip(capitals, ids) if a != b]
    assert len(changed) > len(capitals) // 2  # the check has teeth: casing changes these lines' ids
    assert theirs.model_max_length == 224


def test_pipeline_truncates_a_long_text(classifier, sample):
    words = " ".join(sample("lee-background").read_text(encoding="utf-8").split()[:600])
    classify = transformers.pipeline("text-classification", model=str(classifier), device="cpu")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    (top,) = classify(words, truncation=True)
    tokenizer = FullTokenizer(classifier / "vocab.txt")
    assert len(tokenizer.tokenize(words)) > 224  # over the model's 224 positions: cut, not a crash
    assert top["label"] in {"neg", "pos", "neutral"}
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(classifier)).eval()
    cut = tokenizer.encode(words, max_length=224)
    with torch.no_grad():
        logits = model(torch.tensor([cut.input_ids]), token_type_ids=torch.tensor([cut.token_type_ids])).logits
    probs = torch.softmax(logits[0].double(), -1)
    assert top["score"] == pytest.approx(float(probs.max()), abs=1e-5)
    assert top["label"] == model.config.id2label[int(probs.argmax())]


def test_convert_and_export_write_the_tokenizer_files(classifier, tmp_path):
    kinds = kinds_by_head()
    converted = convert_checkpoint(classifier, tmp_path / "converted", kinds=kinds).path
    for folder in (classifier, converted):
        config = json.loads((folder / "tokenizer_config.json").read_text())
        assert (config["do_lower_case"], config["model_max_length"]) == (True, 224), folder
        special = json.loads((folder / "special_tokens_map.json").read_text())
        assert special["cls_token"] == "[CLS]" and special["sep_token"] == "[SEP]"
    pytest.importorskip("onnxruntime")
    from bertforge.export.onnx import export_folder

    settings = load_settings(classifier)
    cased = dataclasses.replace(settings, do_lower_case=False)
    write_settings(tmp_path / "converted", cased)  # a cased folder, as convert wrote it
    export_folder(tmp_path / "converted", tmp_path / "onnx")
    config = json.loads((tmp_path / "onnx" / "tokenizer_config.json").read_text())
    assert (config["do_lower_case"], config["tokenizer_class"]) == (False, "BertTokenizer")
    assert BertConfig.from_file(tmp_path / "onnx" / "config.json").max_position_embeddings == 224
