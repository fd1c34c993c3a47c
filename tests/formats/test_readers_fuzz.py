"""Readers of binary and settings files on mutated real files (hypothesis): TFRecords (plain, gzip, zlib),
MindSpore `.ckpt`, TensorFlow checkpoint bundles, `.safetensors` headers, `config.json`, a dataset's
`schema.json` and shards. The only outcomes allowed are a read or a `BertforgeError` naming the file — never
another exception or a hang."""

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bertforge.data.dataset import PretrainingDataset
from bertforge.data.pretraining_tfrecords import read_pretraining_tfrecords
from bertforge.errors import BertforgeError
from bertforge.formats.mindspore_ckpt import read_mindspore_checkpoint
from bertforge.formats.tf_checkpoint import TfCheckpoint
from bertforge.modeling import BertConfig, BertModel
from bertforge.modeling.checkpoint import read_weights
from tests.tasks.test_readers_fuzz import mutated

FIXTURES = Path(__file__).parent.parent / "fixtures"
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def outcome(read, path: Path) -> None:
    try:
        read()
    except BertforgeError as exc:
        assert path.name in str(exc), str(exc)


def mutant(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / "mutants" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


@FUZZ
@given(st.data())
def test_mutated_tfrecords(tmp_path, data):
    name = data.draw(st.sampled_from(["google_en.tfrecord", "google_en.tfrecord.gz", "google_en_zlib.tfrecord"]))
    original = (FIXTURES / "tfrecord" / name).read_bytes()
    path = mutant(tmp_path, name, data.draw(mutated(original[:4000] if name == "google_en.tfrecord" else original)))
    outcome(lambda: read_pretraining_tfrecords(path), path)


@FUZZ
@given(st.data())
def test_mutated_mindspore_checkpoints(tmp_path, data):
    name = data.draw(st.sampled_from(["bert_tiny.ckpt", "dtypes_split_crc.ckpt"]))
    path = mutant(tmp_path, name, data.draw(mutated((FIXTURES / "mindspore" / name).read_bytes())))
    outcome(lambda: read_mindspore_checkpoint(path), path)


@FUZZ
@given(st.data())
def test_mutated_tf_checkpoints(tmp_path, data):
    """A mutated `.index` or `.data` shard: every tensor read, or an error naming the bundle."""
    folder = FIXTURES / "tf_checkpoint" / data.draw(st.sampled_from(["dtypes", "sharded", "partitioned"]))
    files = sorted(f for f in folder.iterdir() if ".ckpt." in f.name)
    target = data.draw(st.sampled_from(files))
    bundle = tmp_path / "mutants" / folder.name
    shutil.rmtree(bundle, ignore_errors=True)
    shutil.copytree(folder, bundle)
    (bundle / target.name).write_bytes(data.draw(mutated(target.read_bytes())))
    prefix = bundle / target.name[: target.name.index(".ckpt.") + len(".ckpt")]

    def read() -> None:
        ckpt = TfCheckpoint(prefix)
        for name in ckpt:
            ckpt[name]

    outcome(read, prefix)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    BertModel(BertConfig.from_preset("tiny", vocab_size=99)).save_pretrained(root)
    return root


@FUZZ
@given(st.data())
def test_mutated_safetensors_headers_and_configs(tmp_path, tiny_folder, data):
    weights = (tiny_folder / "model.safetensors").read_bytes()
    header = 8 + int.from_bytes(weights[:8], "little")
    cut = data.draw(st.sampled_from([header + 64, len(weights)]))  # mutate within the header, or anywhere
    path = mutant(tmp_path, "model.safetensors", data.draw(mutated(weights[:cut])) + weights[cut:])
    outcome(lambda: read_weights(path), path)
    config = mutant(tmp_path, "config.json", data.draw(mutated((tiny_folder / "config.json").read_bytes())))
    outcome(lambda: BertConfig.from_file(config), config)


@pytest.fixture(scope="module")
def tiny_dataset(sample, tmp_path_factory):
    from bertforge.data.create import CreateOptions, create_pretraining_data

    root = tmp_path_factory.mktemp("data")
    text = "\n\n".join("\n".join(f"Sentence {s} of document {d} is here." for s in range(5)) for d in range(12))
    (root / "text.txt").write_text(text)
    create_pretraining_data([root / "text.txt"], sample("vocab-en"), root / "data", CreateOptions(dupe_factor=1),
                            progress=False)  # fmt: skip
    return root / "data"


@FUZZ
@given(st.data())
def test_mutated_dataset_schema_and_shards(tmp_path, tiny_dataset, data):
    copy = tmp_path / "mutants" / "data"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(tiny_dataset, copy)
    files = sorted(p for p in copy.rglob("*") if p.is_file())
    target = data.draw(st.sampled_from(files))
    target.write_bytes(data.draw(mutated(target.read_bytes())))

    def read():
        dataset = PretrainingDataset(copy)
        for i in range(len(dataset)):
            dataset[i]

    try:
        read()
    except BertforgeError as exc:
        assert str(copy) in str(exc) or target.name in str(exc), str(exc)
