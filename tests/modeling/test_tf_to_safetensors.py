"""`bertforge convert` of a TensorFlow checkpoint to a model folder, streamed (no model built), against the
folder that loading the model and `save_pretrained` write: every file byte for byte."""

import shutil
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from bertforge.cli import main as cli
from bertforge.formats.tf_checkpoint import TfCheckpoint, write_tf_checkpoint
from bertforge.model_folder import convert_checkpoint
from bertforge.modeling import auto, tf_to_safetensors
from bertforge.modeling.tf_to_safetensors import save_tf_as_pretrained
from bertforge.tasks import kinds_by_head

FIXTURES = Path(__file__).parent.parent / "fixtures" / "tf_checkpoint"


def files(folder: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(folder.iterdir())}


def loaded_and_saved(source: Path, output: Path, monkeypatch, head: str = "auto"):
    """The conversion as it was before streaming: `load_model`, `save_pretrained`, then the vocab files."""
    with monkeypatch.context() as m:
        m.setattr(tf_to_safetensors, "save_tf_as_pretrained", lambda *args, **kwargs: None)
        return convert_checkpoint(source, output, head=head, kinds=kinds_by_head())


def streamed(source: Path, output: Path, monkeypatch, head: str = "auto"):
    """The conversion as `bertforge convert` does it, with no model to load (loading one fails the test)."""

    def no_model(*args, **kwargs):
        raise AssertionError("the streamed conversion loaded the model")

    with monkeypatch.context() as m:
        m.setattr(auto, "load_model", no_model)
        return convert_checkpoint(source, output, head=head, kinds=kinds_by_head())


@pytest.mark.parametrize(
    "folder, head",
    [
        ("google_bert", "auto"),  # BertForPreTraining, optimizer slots skipped
        ("google_bert", "encoder"),  # a bare BertModel: names without `bert.`, the heads left out
        ("google_classifier", "auto"),  # num_labels from the classifier's rows
        ("google_squad", "auto"),  # the pooler TensorFlow saved, unused
        ("nezha", "auto"),  # relative positions, no position table
        ("sharded", "auto"),  # two data shards
    ],
)
def test_streamed_folder_equals_the_loaded_models(tmp_path, monkeypatch, folder, head):
    theirs = loaded_and_saved(FIXTURES / folder, tmp_path / "theirs", monkeypatch, head)
    ours = streamed(FIXTURES / folder, tmp_path / "ours", monkeypatch, head)
    assert (ours.head, ours.parameters) == (theirs.head, theirs.parameters)
    assert files(tmp_path / "ours") == files(tmp_path / "theirs")
    assert "model.safetensors" in files(tmp_path / "ours")


def test_half_precision_weights_are_widened_as_torch_widens_them(tmp_path, monkeypatch):
    """float16 and bfloat16 kernels and embeddings (a mixed-precision run's checkpoint) become float32 as
    `load_model` makes them: transposed and cast in one copy."""
    ckpt = TfCheckpoint(FIXTURES / "google_bert" / "bert_model.ckpt")
    tensors = {}
    for i, name in enumerate(ckpt):
        value = ckpt[name]
        if value.dtype == np.float32 and value.ndim == 2:
            value = value.astype(ml_dtypes.bfloat16 if i % 2 else np.float16)
        tensors[name] = value
    shutil.copytree(FIXTURES / "google_bert", tmp_path / "src", ignore=shutil.ignore_patterns("bert_model.ckpt*"))
    write_tf_checkpoint(tmp_path / "src" / "bert_model.ckpt", tensors)
    kinds = {entry.dtype_name for entry in TfCheckpoint(tmp_path / "src" / "bert_model.ckpt").entries.values()}
    assert {"float16", "bfloat16"} <= kinds
    loaded_and_saved(tmp_path / "src", tmp_path / "theirs", monkeypatch)
    streamed(tmp_path / "src", tmp_path / "ours", monkeypatch)
    assert files(tmp_path / "ours") == files(tmp_path / "theirs")


def test_a_head_to_initialise_is_left_to_the_model(tmp_path):
    """A pretraining checkpoint as a token classifier: its classifier must be initialised, which only a built
    model does; the streamed path declines and writes nothing, `convert` then loads the model."""
    assert save_tf_as_pretrained(FIXTURES / "google_bert", tmp_path / "out", head="token-classification") is None
    assert not (tmp_path / "out").exists()
    done = convert_checkpoint(FIXTURES / "google_bert", tmp_path / "out", head="token-classification")
    assert done.head == "token-classification" and (tmp_path / "out" / "model.safetensors").is_file()


def test_a_corrupt_tensor_found_while_writing_leaves_nothing(tmp_path, capsys):
    """The last tensor in the file fails its CRC after the others are written: no file, no folder."""
    shutil.copytree(FIXTURES / "google_bert", tmp_path / "src")
    entry = TfCheckpoint(tmp_path / "src" / "bert_model.ckpt").entries["cls/seq_relationship/output_weights"]
    data = tmp_path / "src" / "bert_model.ckpt.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[entry.offset + 3] ^= 0x01
    data.write_bytes(bytes(raw))
    out = tmp_path / "new" / "hf"
    assert cli(["convert", str(tmp_path / "src"), str(out)]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert "'cls/seq_relationship/output_weights'" in err and "CRC32C" in err
    assert not (tmp_path / "new").exists()


def test_a_full_disk_while_streaming_is_one_line_leaving_nothing(tmp_path, capsys, monkeypatch):
    import builtins
    import errno

    class Full:
        def __init__(self, path, mode):
            self.file = builtins.open(path, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, data):
            if self.file.tell() > 1000:  # the header and a few tensors fit, then the disk is full
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.file.write(data)

    monkeypatch.setattr("bertforge.formats.safetensors_writer.open", Full, raising=False)
    out = tmp_path / "hf"
    assert cli(["convert", str(FIXTURES / "google_bert"), str(out)]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.endswith(f"while writing {out / 'model.safetensors'}") and "no space left on" in err, err
    assert not out.exists()
