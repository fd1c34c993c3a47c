"""Load and save weights: bertforge/Hugging Face directories, MindSpore model-zoo `.ckpt` files and Google's /
Huawei's TensorFlow checkpoints (`bert_model.ckpt.index` + `.data-*`).

Every source is first normalised to Hugging Face's full-model names (`bert.` prefix on the encoder,
`cls.`/`classifier.`/`qa_outputs.` for heads); a model then takes what it owns and every mismatch is
reported by name. Nothing is unpickled: safetensors, or `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from bertforge.errors import BertforgeError
from bertforge.fileio import atomic_path, atomic_write_text, check_output_dir
from bertforge.formats.tf_checkpoint import TfCheckpoint, find_tf_checkpoint, index_path, write_tf_checkpoint
from bertforge.modeling.config import BertConfig
from bertforge.modeling.google_names import from_google_names, google_config, to_google_names
from bertforge.modeling.model_zoo_names import from_model_zoo_names, to_model_zoo_names

log = logging.getLogger("bertforge")

# Weights of task heads: absent ones are initialised fresh, present-but-unused ones are reported, not errors.
HEAD_PREFIXES = ("cls.", "classifier.", "qa_outputs.", "crf.", "lstm.")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
SAFETENSORS_METADATA = {"format": "pt"}  # what transformers writes and expects
_CONFIG_FILES = (
    "config.json",
    "bert_config.json",
    "config.yaml",
    "pretrain_config.yaml",
)  # bert_config: Google, Huawei


# ------------------------------------------------------------------------------------ Hugging Face names
def normalize_hf_names(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Bring a Hugging Face state dict to full-model names: add the `bert.` prefix to a bare encoder, turn
    TF-era `gamma`/`beta` into `weight`/`bias` and NVIDIA's `dense_act` into `dense`, and drop derived
    entries (position ids, the decoder tied to the word embeddings, NEZHA's fixed sinusoid buffers)."""
    out = {}
    for name, value in state.items():
        if name.startswith(("embeddings.", "encoder.", "pooler.")):
            name = "bert." + name
        name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", name)
        name = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name)
        name = re.sub(r"\.dense_act\.", ".dense.", name)  # NVIDIA's LinearActivation (dense + activation)
        if name.endswith(("embeddings.position_ids", "relative_positions_encoding.positions_encoding")):
            continue
        out[name] = value
    decoder = out.pop("cls.predictions.decoder.weight", None)
    words = out.get("bert.embeddings.word_embeddings.weight")
    if decoder is not None and words is not None and not torch.equal(decoder, words):
        raise BertforgeError(f"{source}: the MLM decoder is not tied to the word embeddings; bertforge ties them")
    decoder_bias = out.pop("cls.predictions.decoder.bias", None)
    if decoder_bias is not None:
        out.setdefault("cls.predictions.bias", decoder_bias)
    return out


# --------------------------------------------------------------------------------------------- files
def locate(path: str | Path) -> tuple[Path, Path | None]:
    """(weights file, config file or None) for a checkpoint directory or a weights file. A TensorFlow
    checkpoint's weights are its prefix (`…/bert_model.ckpt`), named by itself, its folder, its `.index`, or
    a `checkpoint` state file."""
    path = Path(path)
    if path.is_dir():
        found = [path / f for f in _WEIGHT_FILES if (path / f).is_file()]
        if not found and (prefix := find_tf_checkpoint(path)) is not None:
            found = [prefix]
        found = found or sorted(path.glob("*.ckpt"))
        if not found:
            raise BertforgeError(
                f"{path}: no weights found (expected one of {', '.join(_WEIGHT_FILES)}, a MindSpore .ckpt file or "
                "a TensorFlow checkpoint's .index and .data files)"
            )
        if len(found) > 1 and found[0].suffix == ".ckpt":
            raise BertforgeError(f"{path}: several .ckpt files ({', '.join(f.name for f in found)}); name one")
        weights, folder = found[0], path
    elif (prefix := find_tf_checkpoint(path)) is not None:
        weights, folder = prefix, prefix.parent
    elif path.is_file():
        weights, folder = path, path.parent
    else:
        raise BertforgeError(f"checkpoint {path} does not exist")
    config = next((folder / f for f in _CONFIG_FILES if (folder / f).is_file()), None)
    return weights, config


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Read a weights file (or a TensorFlow checkpoint prefix) into Hugging Face full-model names."""
    if is_tf_checkpoint(path):
        return from_google_names(TfCheckpoint(path), str(path))
    if path.suffix == ".ckpt":
        from bertforge.formats.mindspore_ckpt import read_mindspore_checkpoint

        return from_model_zoo_names(read_mindspore_checkpoint(path), str(path))
    if path.suffix == ".safetensors":
        with _readable_safetensors(path):
            state = load_file(path)
    elif path.suffix in (".bin", ".pt", ".pth"):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torch raises many types for bad/unsafe pickles
            raise BertforgeError(
                f"{path}: cannot be read safely as PyTorch weights ({exc.__class__.__name__}: {exc})"
            ) from None
        if isinstance(state, dict) and isinstance(state.get("model"), dict):
            state = state["model"]  # NVIDIA DeepLearningExamples' ckpt_*.pt: the weights beside the optimizer's
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise BertforgeError(f"{path}: expected a state dict of tensors")
    else:
        raise BertforgeError(f"{path}: unknown weights format (expected .safetensors, .bin or .ckpt)")
    return normalize_hf_names(state, str(path))


def is_tf_checkpoint(weights: Path) -> bool:
    """Whether `weights` (as `locate` returns it) is a TensorFlow bundle prefix, not a file."""
    return index_path(weights).is_file()


def safetensors_names(path: Path) -> list[str]:
    """The tensor names in a safetensors file's header (no tensor is read)."""
    with _readable_safetensors(path), safe_open(path, framework="pt") as f:
        return list(f.keys())


@contextlib.contextmanager
def _readable_safetensors(path: Path) -> Iterator[None]:
    try:
        yield
    except SafetensorError as exc:
        raise BertforgeError(f"{path}: not a readable safetensors file, truncated or damaged ({exc})") from None


def check_fits(model: torch.nn.Module, state: Mapping[str, Any], source: str) -> list[str]:
    """Refuse `state` (full-model names -> anything with a `.shape`) unless it fits `model`, naming every
    missing, unknown or mis-shaped tensor; return the head tensors it lacks, which the model initialises."""
    target = {own_prefix(model) + k: v for k, v in model.state_dict().items()}
    # Source tensors a model may legitimately not have: other heads, the pooler (token-level heads have
    # none), and absolute positions (the model zoo's NEZHA saves a table it never uses).
    optional = HEAD_PREFIXES + ("bert.pooler.", "bert.embeddings.position_embeddings.")
    missing = [k for k in target if k not in state and not k.startswith(HEAD_PREFIXES)]
    fresh = [k for k in target if k not in state and k.startswith(HEAD_PREFIXES)]
    unknown = [k for k in state if k not in target and not k.startswith(optional)]
    unused = [k for k in state if k not in target and k.startswith(optional)]
    misshaped = [
        f"{k} {tuple(state[k].shape)} (model expects {tuple(v.shape)})"
        for k, v in target.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing: {', '.join(missing)}")
    if unknown:
        problems.append(f"unexpected: {', '.join(unknown)}")
    if misshaped:
        problems.append(f"wrong shape: {'; '.join(misshaped)}")
    if problems:
        raise BertforgeError(f"{source} does not fit {type(model).__name__}: " + " | ".join(problems))
    if unused:
        log.debug("%s: not used by %s: %s", source, type(model).__name__, ", ".join(unused))
    return fresh


def own_prefix(model: torch.nn.Module) -> str:
    """What the model's own tensor names lack of the full-model names: `bert.` for a bare encoder."""
    return "" if hasattr(model, "bert") else "bert."


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy `state` (full-model names) into `model`, naming every missing, unknown or mis-shaped tensor. A
    model built on the meta device (from `from_pretrained`, when `state` covers it) takes the tensors
    themselves."""
    fresh = check_fits(model, state, source)
    prefix = own_prefix(model)
    target = {prefix + k: v for k, v in model.state_dict().items()}
    if any(v.is_meta for v in target.values()):
        _assign(model, {k[len(prefix) :]: state[k] for k in target if k in state})
    else:
        with torch.no_grad():
            for k, v in target.items():
                if k in state:
                    v.copy_(state[k])
    if fresh:
        log.warning("%s: newly initialised (not in the checkpoint): %s", source, ", ".join(fresh))


def _assign(model: torch.nn.Module, values: dict[str, torch.Tensor]) -> None:
    """Give a model built on the meta device its weights: the checkpoint's tensors themselves (cast to the
    parameter's dtype; no copy when it matches). Every parameter must be in `values`."""
    own = model.state_dict()
    model.load_state_dict({k: v.to(own[k].dtype).contiguous() for k, v in values.items()}, strict=True, assign=True)
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"{type(model).__name__}: {', '.join(left)} still without storage after loading")


def covers(model: torch.nn.Module, state: Mapping[str, Any]) -> bool:
    """Whether `state` holds every tensor of `model` (full-model names)."""
    prefix = own_prefix(model)
    return all(prefix + k in state for k in model.state_dict())


def resolve_config(weights: Path, found: Path | None, config: BertConfig | str | Path | None) -> BertConfig:
    """The config a checkpoint is loaded with: `config` when given, else the file `locate` found beside it."""
    if config is not None:
        return BertConfig.resolve(config)
    if found is not None:
        return BertConfig.from_file(found)
    raise BertforgeError(
        f"{weights}: no config file beside the weights ({', '.join(_CONFIG_FILES)}); pass config= "
        "(a preset name, a config file, or the model zoo's pretrain_config.yaml)"
    )


def with_tf_label_count(config: BertConfig, state: Mapping[str, Any]) -> BertConfig:
    """Google's bert_config.json has no label count (run_classifier.py takes it from the task's processor):
    it is the classifier's rows."""
    if "classifier.weight" not in state:
        return config
    return dataclasses.replace(config, num_labels=state["classifier.weight"].shape[0])


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's tensors under Hugging Face's names for its class (no prefix for a bare encoder)."""
    return {k: v.detach().contiguous() for k, v in model.state_dict().items()}


T = TypeVar("T", bound="PretrainedMixin")


class PretrainedMixin:
    """`from_pretrained` / `save_pretrained` for the encoder and every head class."""

    config: BertConfig
    google_tf_head = True  # whether Google's TensorFlow code has this head (save_tf)

    @classmethod
    def from_pretrained(
        cls: type[T],
        path: str | Path,
        config: BertConfig | str | Path | None = None,
        *,
        state: dict[str, torch.Tensor] | None = None,
        **overrides: Any,
    ) -> T:
        """Load a bertforge or Hugging Face directory, a weights file, a MindSpore `.ckpt`, or a TensorFlow
        checkpoint (Google's BERT, Huawei's NEZHA: the `bert_model.ckpt` prefix or its folder).

        `config` (a BertConfig, preset name or file) is needed only when no config file lies beside the
        weights (a `.ckpt` carries none); `overrides` set config fields, e.g. `num_labels=3`. `state` is
        `read_weights` of the weights file, from a caller that read it already, so it is not read twice.
        """
        weights, found = locate(path)
        cfg = resolve_config(weights, found, config)
        if overrides:
            cfg = dataclasses.replace(cfg, **overrides)
        if (
            weights.suffix == ".ckpt"
            and not is_tf_checkpoint(weights)
            and (cfg.layer_norm_eps != 1e-7 or cfg.hidden_act != "gelu_tanh")
        ):
            log.warning(
                "%s: model zoo weights with layer_norm_eps=%g, hidden_act=%s (the model zoo trains with 1e-7, "
                "gelu_tanh)",
                weights,
                cfg.layer_norm_eps,
                cfg.hidden_act,
            )
        state = read_weights(weights) if state is None else state
        if is_tf_checkpoint(weights) and "num_labels" not in overrides:
            cfg = with_tf_label_count(cfg, state)
        with torch.device("meta"):  # no storage, no initialisation: the checkpoint's tensors become the weights
            model = cls(cfg)
        if not covers(model, state):  # heads to initialise, or a mismatch load_weights will name
            model = cls(cfg)
        load_weights(model, state, str(weights))
        return model

    def save_pretrained(self, directory: str | Path, overwrite: bool = False) -> Path:
        """Write `config.json` + `model.safetensors` (Hugging Face's layout), each file atomically."""
        return self.write_pretrained(
            directory, overwrite, lambda tmp: save_file(full_state_dict(self), str(tmp), metadata=SAFETENSORS_METADATA)
        )

    def write_pretrained(self, directory: str | Path, overwrite: bool, write_weights: Callable[[Path], None]) -> Path:
        """`save_pretrained` with the weights file written by `write_weights(path)`: a model on the meta device
        can write the config of a folder whose weights come from elsewhere (a checkpoint, streamed)."""
        directory = Path(directory)
        files = [directory / "config.json", directory / "model.safetensors"]
        existing = [str(f) for f in files if f.exists()]
        if existing and not overwrite:
            raise BertforgeError(f"{', '.join(existing)} already exist; pass overwrite=True (--overwrite) to replace")
        check_output_dir(directory, overwrite=bool(existing))
        config = self.config.to_hf_dict() | {"architectures": [type(self).__name__]}
        with atomic_path(files[1]) as tmp:
            write_weights(tmp)
        atomic_write_text(files[0], json.dumps(config, indent=2, ensure_ascii=False) + "\n")
        return directory

    def save_mindspore(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write a MindSpore model zoo `.ckpt` (pretraining-network names) that MindSpore's loader reads."""
        from bertforge.formats.mindspore_ckpt import write_mindspore_checkpoint

        path = Path(path)
        if path.exists() and not overwrite:
            raise BertforgeError(f"{path} already exists; pass overwrite=True (--overwrite) to replace")
        state = full_state_dict(self)
        if not hasattr(self, "bert"):
            state = {"bert." + k: v for k, v in state.items()}
        write_mindspore_checkpoint(path, to_model_zoo_names(state))
        return path

    def save_tf(self, directory: str | Path, overwrite: bool = False, vocab: Path | None = None) -> Path:
        """Write Google's release layout, which TensorFlow and Google's `modeling.py` read: `bert_model.ckpt`
        (`.index` + `.data-00000-of-00001`, Google's variable names), `bert_config.json`, a `checkpoint` file
        naming it, and `vocab` as `vocab.txt`. Each file appears atomically."""
        if not self.google_tf_head:
            raise BertforgeError(
                f"{type(self).__name__} has no head in Google's TensorFlow BERT; write the encoder alone with "
                "--head encoder"
            )
        directory = Path(directory)
        prefix = directory / "bert_model.ckpt"
        files = [index_path(prefix), prefix.with_name(prefix.name + ".data-00000-of-00001")]
        files += [directory / "bert_config.json", directory / "checkpoint"] + (
            [directory / "vocab.txt"] if vocab else []
        )
        existing = [str(f) for f in files if f.exists()]
        if existing and not overwrite:
            raise BertforgeError(f"{', '.join(existing)} already exist; pass overwrite=True (--overwrite) to replace")
        check_output_dir(directory, overwrite=bool(existing))
        state = full_state_dict(self)
        if not hasattr(self, "bert"):
            state = {"bert." + k: v for k, v in state.items()}
        config = google_config(self.config)
        write_tf_checkpoint(prefix, to_google_names(state))
        atomic_write_text(files[2], json.dumps(config, indent=2) + "\n")
        atomic_write_text(
            files[3], f'model_checkpoint_path: "{prefix.name}"\nall_model_checkpoint_paths: "{prefix.name}"\n'
        )
        if vocab:
            with atomic_path(files[4]) as tmp:
                shutil.copyfile(vocab, tmp)
        return directory
