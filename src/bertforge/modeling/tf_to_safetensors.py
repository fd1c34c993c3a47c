"""A TensorFlow checkpoint written as a Hugging Face folder without building the model: each weight goes from
the memory-mapped shard (its CRC32C checked, a kernel transposed to torch's (out, in)) straight into
`model.safetensors`, one tensor at a time, and its pages are unmapped once written.

Loading the model and `save_pretrained` cost a second copy of the weights and three passes over them
(read, transpose into the model, copy out to the file); this costs a read, the transposes and a write,
and one tensor of memory. The folder is byte for byte what that path writes: the model class, its
tensor names, dtypes and shapes come from the same class built on the meta device (no storage), the
checks and messages are `load_weights`'.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from bertforge.errors import BertforgeError
from bertforge.formats.safetensors_writer import PendingTensor, write_safetensors
from bertforge.formats.tf_checkpoint import TfCheckpoint
from bertforge.modeling.auto import MODEL_CLASSES, detect_head
from bertforge.modeling.checkpoint import (
    SAFETENSORS_METADATA,
    PretrainedMixin,
    check_fits,
    covers,
    is_tf_checkpoint,
    locate,
    own_prefix,
    resolve_config,
    with_tf_label_count,
)
from bertforge.modeling.config import BertConfig
from bertforge.modeling.google_names import google_renames, transposed


@dataclass(frozen=True)
class _Weight:
    """A checkpoint tensor under its Hugging Face name, not read yet."""

    tf_name: str
    shape: tuple[int, ...]  # torch's layout


def save_tf_as_pretrained(
    source: str | Path,
    output: str | Path,
    *,
    config: BertConfig | str | Path | None = None,
    head: str = "auto",
    overwrite: bool = False,
) -> PretrainedMixin | None:
    """Write the TensorFlow checkpoint `source` as `load_model(source, config, head).save_pretrained(output,
    overwrite)` would, streamed. Returns the model it stands for, on the meta device (class and config, no
    weights), or None, writing nothing, when `source` is no TensorFlow checkpoint or lacks weights of the
    model (a head to initialise): loading the model is the way then."""
    weights, found = locate(source)
    if not is_tf_checkpoint(weights):
        return None
    ckpt = TfCheckpoint(weights)
    state = {
        hf: _Weight(name, _torch_shape(name, ckpt.entries[name].shape))
        for name, hf in google_renames(ckpt, str(weights)).items()
    }
    cfg = resolve_config(weights, found, config)
    if head == "auto":
        head = detect_head(state, cfg)
    cfg = with_tf_label_count(cfg, state)
    with torch.device("meta"):
        model = MODEL_CLASSES[head](cfg)
    if not covers(model, state):
        return None
    check_fits(model, state, str(weights))
    prefix = own_prefix(model)
    tensors = {}
    for name, like in model.state_dict().items():
        weight = state[prefix + name]
        ckpt.check_readable(weight.tf_name)
        if ckpt.entries[weight.tf_name].dtype_name == "string":
            raise BertforgeError(f"{weights}: tensor {weight.tf_name!r} holds strings, not weights")
        tensors[name] = PendingTensor(
            like.dtype, weight.shape, lambda w=weight: _read(ckpt, w), lambda w=weight: ckpt.release(w.tf_name)
        )
    output = Path(output)
    made = [p for p in (output, *output.parents) if not p.exists()]
    try:
        model.write_pretrained(output, overwrite, lambda tmp: write_safetensors(tmp, tensors, SAFETENSORS_METADATA))
    except BaseException:  # a corrupt tensor found while writing: leave no folder this call made
        for folder in made:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    return model


def _torch_shape(tf_name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape[::-1] if transposed(tf_name) else shape


def _read(ckpt: TfCheckpoint, weight: _Weight) -> torch.Tensor:
    """The tensor as torch sees it, a view of the mapped shard (the writer copies what it must)."""
    with warnings.catch_warnings():  # torch warns that the mapped array is read-only: it is only read here
        warnings.simplefilter("ignore", UserWarning)
        value = torch.from_numpy(ckpt.view(weight.tf_name))
    return value.t() if transposed(weight.tf_name) else value
