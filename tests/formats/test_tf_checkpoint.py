"""TensorFlow checkpoint bundles read and written without TensorFlow, against files TensorFlow 2.21 wrote and the
values its own `tf.train.load_checkpoint` returned for them (scripts/make_tf_checkpoint_fixtures.py)."""

import shutil
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from bertforge.errors import BertforgeError
from bertforge.formats.protowire import encode_varint
from bertforge.formats.sstable import build_table, read_table
from bertforge.formats.tf_checkpoint import TfCheckpoint, find_tf_checkpoint, write_tf_checkpoint

FIXTURES = Path(__file__).parent.parent / "fixtures" / "tf_checkpoint"
BUNDLES = sorted(p.with_suffix("") for p in FIXTURES.glob("*/*.index") if p.parent.name != "partitioned")


def tf_values(prefix: Path) -> dict[str, np.ndarray]:
    return dict(np.load(prefix.parent / "values.npz"))


@pytest.mark.parametrize("prefix", BUNDLES, ids=lambda p: p.parent.name)
def test_every_tensor_equals_tensorflows_bit_for_bit(prefix):
    ckpt = TfCheckpoint(prefix)
    expected = tf_values(prefix)
    assert sorted(ckpt) == sorted(k.split("@")[0] for k in expected)
    for key, value in expected.items():
        name, _, kind = key.partition("@")
        got = ckpt[name]
        assert got.shape == value.shape, name
        if kind == "bfloat16":  # widened exactly: the stored 16 bits on top, zeros below
            assert got.dtype == np.float32
            assert np.array_equal(got.view(np.uint32) >> 16, value) and not (got.view(np.uint32) & 0xFFFF).any()
        elif kind == "string":
            assert list(got.ravel()) == list(value.ravel())
        else:
            assert got.dtype == value.dtype and got.tobytes() == value.tobytes(), name


@pytest.mark.parametrize("prefix", BUNDLES, ids=lambda p: p.parent.name)
def test_view_reads_the_mapped_bytes_in_place_and_after_release(prefix):
    """`view` is TensorFlow's value without a copy (read-only, over the mapping) until its pages are
    released, and again after; `ckpt[name]` stays a fresh array the caller may change."""
    ckpt = TfCheckpoint(prefix)
    for key, value in tf_values(prefix).items():
        name, _, kind = key.partition("@")
        if kind in ("bfloat16", "string") or not value.size:
            continue  # converted or empty: fresh arrays, compared above
        view = ckpt.view(name)
        assert not view.flags.writeable and not view.flags.owndata, name
        assert view.tobytes() == value.tobytes(), name
        ckpt.release(name)
        assert ckpt.view(name).tobytes() == value.tobytes(), name
        assert ckpt[name].flags.writeable, name


def test_dtypes_fixture_covers_what_the_issue_asks():
    ckpt = TfCheckpoint(FIXTURES / "dtypes" / "model.ckpt")
    kinds = {entry.dtype_name for entry in ckpt.entries.values()}
    assert {"float32", "float16", "bfloat16", "int32", "int64", "string", "bool"} <= kinds
    assert ckpt["scalar/global_step"].shape == () and ckpt["empty"].shape == (0, 4)


def as_written(ckpt: TfCheckpoint, name: str) -> np.ndarray:
    value = ckpt[name]
    return value.astype(ml_dtypes.bfloat16) if ckpt.entries[name].dtype_name == "bfloat16" else value


@pytest.mark.parametrize(
    "prefix", [p for p in BUNDLES if p.parent.name not in ("sharded", "dtypes")], ids=lambda p: p.parent.name
)
def test_writer_reproduces_tensorflows_bytes(prefix, tmp_path):
    ckpt = TfCheckpoint(prefix)
    write_tf_checkpoint(tmp_path / "copy", {name: as_written(ckpt, name) for name in ckpt})
    for suffix in (".index", ".data-00000-of-00001"):
        assert (tmp_path / f"copy{suffix}").read_bytes() == Path(f"{prefix}{suffix}").read_bytes()


def test_round_trip_of_every_writable_dtype_and_of_two_shards(tmp_path):
    for prefix in (FIXTURES / "dtypes" / "model.ckpt", FIXTURES / "sharded" / "bert_model.ckpt"):
        ckpt = TfCheckpoint(prefix)
        names = [n for n in ckpt if ckpt.entries[n].dtype_name != "string"]
        write_tf_checkpoint(tmp_path / prefix.parent.name, {n: as_written(ckpt, n) for n in names})
        again = TfCheckpoint(tmp_path / prefix.parent.name)
        assert list(again) == sorted(names)
        for name in names:
            assert again.entries[name].dtype == ckpt.entries[name].dtype
            assert again[name].tobytes() == ckpt[name].tobytes()


def test_sharded_bundle_is_read_across_both_shards():
    ckpt = TfCheckpoint(FIXTURES / "sharded" / "bert_model.ckpt")
    assert ckpt.num_shards == 2 and {e.shard for e in ckpt.entries.values()} == {0, 1}
    single = TfCheckpoint(FIXTURES / "google_bert" / "bert_model.ckpt")
    for name in ckpt:
        assert np.array_equal(ckpt[name], single[name])


def test_partitioned_variable_is_refused_by_name():
    ckpt = TfCheckpoint(FIXTURES / "partitioned" / "model.ckpt")
    assert ckpt["global_step"] == 5
    with pytest.raises(BertforgeError, match=r"'bert/embeddings/word_embeddings' is a partitioned variable .*2 slices"):
        ckpt["bert/embeddings/word_embeddings"]


# ------------------------------------------------------------------------------------------- finding a bundle
def test_find_by_prefix_index_shard_folder_and_state_file(tmp_path):
    folder = FIXTURES / "google_bert"
    prefix = folder / "bert_model.ckpt"
    for given in (prefix, folder / "bert_model.ckpt.index", folder / "bert_model.ckpt.data-00000-of-00001", folder):
        assert find_tf_checkpoint(given) == prefix
    assert find_tf_checkpoint(folder / "checkpoint") == prefix
    assert find_tf_checkpoint(FIXTURES / "sharded") == FIXTURES / "sharded" / "bert_model.ckpt"  # no state file
    assert find_tf_checkpoint(FIXTURES.parent / "mindspore" / "bert_tiny.ckpt") is None


def test_state_file_with_the_training_machines_absolute_path(tmp_path):
    shutil.copytree(FIXTURES / "google_bert", tmp_path / "run")
    (tmp_path / "run" / "checkpoint").write_text(
        'model_checkpoint_path: "/gpfs/someone/run/bert_model.ckpt"\n'
        'all_model_checkpoint_paths: "/gpfs/someone/run/bert_model.ckpt"\n'
    )
    assert find_tf_checkpoint(tmp_path / "run") == tmp_path / "run" / "bert_model.ckpt"
    (tmp_path / "run" / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-2000"\n')
    with pytest.raises(
        BertforgeError, match=r"names checkpoint 'model.ckpt-2000'.*model.ckpt-2000.index does not exist"
    ):
        find_tf_checkpoint(tmp_path / "run")


@pytest.mark.parametrize(
    "line",
    [
        b'model_checkpoint_path: "\xe6\xa8\xa1\xe5\x9e\x8b \\"q\\"-2"\n',  # as TF 2.21's CheckpointManager wrote it
        b'model_checkpoint_path: "\\346\\250\\241\\345\\236\\213 \\"q\\"-2"\n',  # octal, as older writers do
    ],
)
def test_state_file_names_with_quotes_and_non_ascii(tmp_path, line):
    write_tf_checkpoint(tmp_path / '\u6a21\u578b "q"-2', {"x": np.zeros(2, np.float32)})
    (tmp_path / "checkpoint").write_bytes(line + b'all_model_checkpoint_paths: "x"\n')
    assert find_tf_checkpoint(tmp_path) == tmp_path / '\u6a21\u578b "q"-2'


def test_folder_with_two_bundles_asks_for_one(tmp_path):
    for name in ("model.ckpt-1000", "model.ckpt-2000"):
        write_tf_checkpoint(tmp_path / name, {"x": np.zeros(2, np.float32)})
    with pytest.raises(BertforgeError, match="several TensorFlow checkpoints.*model.ckpt-1000, model.ckpt-2000"):
        find_tf_checkpoint(tmp_path)


# ------------------------------------------------------------------------------------------------ bad input
@pytest.fixture
def bundle(tmp_path):
    for f in (FIXTURES / "sharded").iterdir():
        shutil.copy(f, tmp_path / f.name)
    return tmp_path / "bert_model.ckpt"


def one_line_error(prefix: Path, read_all: bool = True) -> str:
    with pytest.raises(BertforgeError) as err:
        ckpt = TfCheckpoint(prefix)
        if read_all:
            for name in ckpt:
                ckpt[name]
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("keep", [0, 30, 200, -48, -1])
def test_truncated_index(bundle, keep):
    index = Path(f"{bundle}.index")
    data = index.read_bytes()
    index.write_bytes(data[:keep])
    message = one_line_error(bundle)
    assert message.startswith(str(index)) and ("truncated" in message or "footer" in message)


def test_flipped_byte_in_the_index_fails_the_block_crc(bundle):
    index = Path(f"{bundle}.index")
    data = bytearray(index.read_bytes())
    data[40] ^= 0x01
    index.write_bytes(bytes(data))
    assert "CRC32C" in one_line_error(bundle)


def test_flipped_byte_in_a_shard_names_the_tensor(bundle):
    ckpt = TfCheckpoint(bundle)
    name = "bert/encoder/layer_1/output/dense/kernel"
    entry = ckpt.entries[name]
    shard = Path(f"{bundle}.data-{entry.shard:05d}-of-00002")
    data = bytearray(shard.read_bytes())
    data[entry.offset + 5] ^= 0x10
    shard.write_bytes(bytes(data))
    message = one_line_error(bundle)
    assert message.startswith(str(shard)) and f"tensor {name!r}" in message and "CRC32C" in message


def test_membership_reads_no_tensor(bundle):
    """`name in ckpt` answers from the index: converting asks it of the (largest) word embeddings first."""
    ckpt = TfCheckpoint(bundle)
    entry = ckpt.entries["bert/embeddings/word_embeddings"]
    shard = Path(f"{bundle}.data-{entry.shard:05d}-of-00002")
    data = bytearray(shard.read_bytes())
    data[entry.offset] ^= 0xFF
    shard.write_bytes(bytes(data))
    ckpt = TfCheckpoint(bundle)
    assert "bert/embeddings/word_embeddings" in ckpt and "bert/nothing" not in ckpt
    with pytest.raises(BertforgeError, match="CRC32C"):
        ckpt["bert/embeddings/word_embeddings"]


def test_missing_shard(bundle):
    Path(f"{bundle}.data-00001-of-00002").unlink()
    message = one_line_error(bundle, read_all=False)
    assert message.startswith(f"{bundle}.data-00001-of-00002: missing") and "2 data shard(s)" in message


def test_missing_index_is_named(bundle):
    Path(f"{bundle}.index").unlink()
    for given in (bundle, bundle.parent):
        with pytest.raises(BertforgeError, match=r"bert_model.ckpt.index: missing; .* beside its .data files"):
            find_tf_checkpoint(given)


def test_truncated_shard_fails_when_opened(bundle):
    shard = Path(f"{bundle}.data-00000-of-00002")
    shard.write_bytes(shard.read_bytes()[:-10])
    assert "truncated" in one_line_error(bundle, read_all=False)


def test_index_of_another_format(bundle):
    Path(f"{bundle}.index").write_bytes(b"PK\x03\x04" + bytes(100))
    assert "magic" in one_line_error(bundle)


def rewrite_entry(prefix: Path, name: str, field: int, value: int) -> None:
    """Change one varint field of one entry, keeping the table otherwise as it was (its CRCs recomputed)."""
    items = [(bytes(k), bytes(v)) for k, v in read_table(Path(f"{prefix}.index").read_bytes())]
    out = []
    for key, entry in items:
        if key == name.encode():
            assert entry[0] == field << 3  # dtype is the first field TensorFlow writes
            entry = encode_varint(field << 3) + encode_varint(value) + entry[2:]
        out.append((key, entry))
    Path(f"{prefix}.index").write_bytes(build_table(out))


@pytest.mark.parametrize("dtype, shown", [(21, "variant"), (99, "DataType 99")])
def test_unknown_dtype_is_named(bundle, dtype, shown):
    rewrite_entry(bundle, "bert/pooler/dense/bias", 1, dtype)
    message = one_line_error(bundle)
    assert f"'bert/pooler/dense/bias' has dtype {shown}, which bertforge does not read" in message


def test_sstable_round_trip_over_many_blocks():
    """Keys sharing long prefixes, values big enough for several 256 KiB blocks: every key comes back."""
    items = [(f"bert/encoder/layer_{i:05d}/x".encode(), bytes([i % 251]) * (i % 300)) for i in range(4000)]
    table = build_table(items)
    assert len(table) > 2 * 262144
    assert [(k, bytes(v)) for k, v in read_table(table)] == items
