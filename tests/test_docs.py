"""Every ```python snippet of README.md runs, as written, in a folder holding the files it names (tiny models,
real vocabularies), so the README cannot drift from the code. A snippet that cannot run is a failure unless
the README says why right above it: `<!-- not-tested: reason -->`, reported as a skip with that reason.
An expression whose comment shows a value (a list or dict literal; `...` stands for any value) must give
that value."""

import ast
import io
import re
import shutil
import tokenize
from pathlib import Path
from typing import Any

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
    with torch.no_grad():  # label "1" the most probable, as the README's comment shows
        classifier.classifier.bias.copy_(torch.tensor([0.0, 5.0]))
    save_model_folder(
        root / "out/sst2/best", classifier, ModelSettings("classification", labels=["0", "1"]), sample("vocab-en")
    )
    return root


def shown_values(code: str) -> dict[int, Any]:
    """Line -> the value a comment on that line shows: the longest list or dict literal starting at its first
    `[` or `{` (prose around it is left out)."""
    shown = {}
    for token in tokenize.generate_tokens(io.StringIO(code).readline):
        if token.type != tokenize.COMMENT:
            continue
        text = token.string
        starts = [i for i in (text.find("["), text.find("{")) if i >= 0]
        for end in range(len(text), min(starts, default=len(text)), -1):
            try:
                shown[token.start[0]] = ast.literal_eval(text[min(starts) : end])
                break
            except (ValueError, SyntaxError):
                continue
    return shown


def matches(actual: Any, shown: Any) -> bool:
    if shown is Ellipsis:
        return True
    if isinstance(shown, list | tuple):
        return isinstance(actual, list | tuple) and len(actual) == len(shown) and all(map(matches, actual, shown))
    if isinstance(shown, dict):
        return (
            isinstance(actual, dict)
            and actual.keys() == shown.keys()
            and all(matches(actual[k], v) for k, v in shown.items())
        )
    return actual == shown


def test_the_readme_has_python_snippets():
    assert len(snippets()) >= 3
    assert sum(len(shown_values(code.values[0])) for code in snippets()) >= 2  # values shown are compared


def test_shown_values_are_read_from_comments():
    code = 'f(1)   # gives: [{"a": 1, "b": ...}]  (the shape)\ng(2)  # no value here\nh()  # {"k": [1, 2]}\n'
    assert shown_values(code) == {1: [{"a": 1, "b": ...}], 3: {"k": [1, 2]}}
    assert matches([{"a": 1, "b": 0.3}], [{"a": 1, "b": ...}]) and not matches([{"a": 2, "b": 0}], [{"a": 1, "b": ...}])


@pytest.mark.parametrize(("code", "not_tested"), snippets())
def test_readme_snippet_runs(code, not_tested, workdir, tmp_path, monkeypatch):
    if not_tested is not None:
        pytest.skip(f"marked not-tested in README.md: {not_tested}")
    run_dir = tmp_path / "run"
    shutil.copytree(workdir, run_dir)  # a snippet may write (out/...): each one starts from the same files
    monkeypatch.chdir(run_dir)
    shown, scope = shown_values(code), {"__name__": "readme"}
    for statement in ast.parse(code).body:  # one at a time: an expression with a value shown is compared
        if isinstance(statement, ast.Expr) and statement.lineno in shown:
            value = eval(compile(ast.Expression(statement.value), "README.md", "eval"), scope)
            assert matches(value, shown[statement.lineno]), (statement.lineno, value, shown[statement.lineno])
        else:
            exec(compile(ast.Module([statement], []), "README.md", "exec"), scope)
