"""Every ```python snippet of README.md runs, as written, in a folder holding the files it names (tiny models,
real vocabularies), so the README cannot drift from the code. A snippet that cannot run is a failure unless
the README says why right above it: `<!-- not-tested: reason -->`, reported as a skip with that reason."""

import re
import shutil
from pathlib import Path

import pytest
import torch

from bertforge.model_folder import ModelSettings, save_model_folder
from bertforge.modeling import BertConfig, BertForSequenceClassification, BertModel

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
_FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
_NOT_TESTED = re.compile(r"<!--\s*not-tested:\s*(.*?)\s*-->\s*\Z", re.DOTALL)


def snippets() -> list:
    """One pytest param per snippet, named by its line in README.md, with the reason it is not run (or None)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    params = []
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        marked = _NOT_TESTED.search(text[: match.start()].rstrip() + "\n")
        reason = marked.group(1) if marked else None
        params.append(pytest.param(match.group(1), reason, id=f"README.md:{line}"))
    return params


@pytest.fixture(scope="module")
def workdir(sample, tmp_path_factory):
    """The files the snippets name, relative to the folder they run in."""
    root = tmp_path_factory.mktemp("readme")
    shutil.copyfile(sample("vocab-zh"), root / "vocab.txt")  # the snippet's comment shows Google's Chinese vocab
    torch.manual_seed(0)
    sizes = dict(vocab_size=30522, hidden_size=32, num_attention_heads=2, intermediate_size=64)
    BertModel(BertConfig.from_preset("tiny", **sizes)).save_pretrained(root / "path/to/hf-or-bertforge-dir")
    shutil.copyfile(FIXTURES / "mindspore" / "bert_tiny.ckpt", root / "bert.ckpt")  # written by MindSpore
    shutil.copyfile(FIXTURES / "mindspore" / "pretrain_config.yaml", root / "pretrain_config.yaml")
    classifier = BertForSequenceClassification(BertConfig.from_preset("tiny", num_labels=2, **sizes))
    save_model_folder(
        root / "out/sst2/best", classifier, ModelSettings("classification", labels=["0", "1"]), sample("vocab-en")
    )
    return root


def test_the_readme_has_python_snippets():
    assert len(snippets()) >= 3


@pytest.mark.parametrize(("code", "not_tested"), snippets())
def test_readme_snippet_runs(code, not_tested, workdir, tmp_path, monkeypatch):
    if not_tested is not None:
        pytest.skip(f"marked not-tested in README.md: {not_tested}")
    run_dir = tmp_path / "run"
    shutil.copytree(workdir, run_dir)  # a snippet may write (out/...): each one starts from the same files
    monkeypatch.chdir(run_dir)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
