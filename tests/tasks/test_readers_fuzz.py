"""Readers of user files on mutated real files (hypothesis): the only outcomes allowed are a read or a
`BertforgeError` that names the file — never another exception, a hang, or a half-read file reported as
whole. Covers the CLUE/GLUE/CSV/TSV/JSON lines readers, `predict`'s input reader, and vocab files."""

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bertforge.errors import BertforgeError
from bertforge.inference.files import InputReport, read_inputs
from bertforge.tasks.classification_readers import read_examples
from bertforge.tokenization import FullTokenizer

FIXTURES = Path(__file__).parent.parent / "fixtures" / "classification"
FILES = {  # fixture -> the task it is read as
    "tnews_train.json": "tnews",
    "afqmc_train.json": "afqmc",
    "ocnli_dev.json": "ocnli",
    "cola_train.tsv": "cola",
    "mnli_dev_matched.tsv": "mnli",
    "mrpc_train.tsv": "mrpc",
    "stsb_train.tsv": "stsb",
    "generic.csv": "auto",
    "generic.tsv": "auto",
    "generic.jsonl": "auto",
}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """`data` with one to three edits: a byte changed, a span deleted or duplicated, bytes inserted, a cut."""
    for _ in range(draw(st.integers(1, 3))):
        n = len(data)
        at = draw(st.integers(0, max(n - 1, 0)))
        kind = draw(st.sampled_from(["flip", "delete", "insert", "duplicate", "truncate"]))
        if kind == "flip" and n:
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
        elif kind == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 40)) :]
        elif kind == "insert":
            special = st.sampled_from([b"\n", b"\r", b"\t", b",", b'"', b"{", b"}", b"\xff", b"\xe4\xb8", b"\x00"])
            data = data[:at] + draw(st.one_of(st.binary(max_size=8), special)) + data[at:]
        elif kind == "duplicate":
            data = data[:at] + data[at : at + draw(st.integers(1, 80))] + data[at:]
        else:
            data = data[:at]
    return data


def write_mutant(tmp_path: Path, name: str, data) -> Path:
    path = tmp_path / "mutants" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


def read_or_clean_error(read, path: Path) -> None:
    try:
        read()
    except BertforgeError as exc:
        assert str(path) in str(exc) or path.name in str(exc), str(exc)


@FUZZ
@given(st.data())
def test_mutated_task_files_read_or_fail_cleanly(tmp_path, data):
    name = data.draw(st.sampled_from(sorted(FILES)))
    path = write_mutant(tmp_path, name, data.draw(mutated((FIXTURES / name).read_bytes())))
    read_or_clean_error(lambda: read_examples(path, FILES[name]), path)
    read_or_clean_error(lambda: read_examples(path, FILES[name], skip_bad_lines=True), path)


@FUZZ
@given(st.data())
def test_mutated_predict_inputs_read_or_fail_cleanly(tmp_path, data):
    name = data.draw(st.sampled_from(["generic.csv", "generic.tsv", "generic.jsonl", "tnews_train.json"]))
    path = write_mutant(tmp_path, name.replace(".json", ".jsonl"), data.draw(mutated((FIXTURES / name).read_bytes())))
    for skip in (False, True):
        report = InputReport(str(path))
        column = "sentence" if name.startswith("tnews") else "text"
        read_or_clean_error(lambda: list(read_inputs(str(path), report, text_column=column, skip_bad_lines=skip)), path)


@pytest.fixture(scope="module")
def vocab_head(sample):
    """The first 3,000 lines of Google's Chinese vocab (with its specials): a real vocab file, quick to load."""
    return b"\n".join(sample("vocab-zh").read_bytes().split(b"\n")[:3000]) + b"\n"


@FUZZ
@given(st.data())
def test_mutated_vocab_files_load_or_fail_cleanly(tmp_path, vocab_head, data):
    path = write_mutant(tmp_path, "vocab.txt", data.draw(mutated(vocab_head)))

    def load():
        tokenizer = FullTokenizer(path)
        tokenizer.tokenize("北京的天气 is fine")

    read_or_clean_error(load, path)


def test_the_fixtures_themselves_read(tmp_path):
    for name, task in FILES.items():
        shutil.copyfile(FIXTURES / name, tmp_path / name)
        assert read_examples(tmp_path / name, task)[0], name
