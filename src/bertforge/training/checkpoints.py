"""Run checkpoints: everything needed to continue a run exactly, written so that a kill never breaks one.

    RUN_DIR/checkpoints/step-00001000/model.safetensors + config.json   (loadable by from_pretrained)
    RUN_DIR/checkpoints/step-00001000/trainer.pt   optimizer, scheduler, loss scaler, RNG, data position
    RUN_DIR/checkpoints/latest                     name of the newest complete checkpoint

A checkpoint is assembled in a temporary directory and renamed into place, then `latest` is replaced
atomically, then old checkpoints beyond the newest `keep` are removed: at every instant the directory
named by `latest` is complete. `trainer.pt` holds only tensors and plain Python values and is read back
with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import torch

from bertforge.errors import BertforgeError
from bertforge.fileio import atomic_dir, atomic_write_text

PREFIX = "step-"


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def step_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, step: int, model, trainer_state: dict[str, Any], keep: int) -> Path:
    """Write checkpoint `step` (model + trainer state) atomically; keep the newest `keep` checkpoints."""
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    name = step_name(step)
    with atomic_dir(root / name) as tmp:  # the same step saved again (at the end) replaces its twin
        model.save_pretrained(tmp)
        torch.save(trainer_state, tmp / "trainer.pt")
    atomic_write_text(root / "latest", name + "\n")
    for old in sorted(p for p in root.glob(f"{PREFIX}*") if p.is_dir())[: -max(1, keep)]:
        shutil.rmtree(old)
    return root / name


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint, or None when the run has none yet."""
    root = checkpoint_dir(run_dir)
    pointer = root / "latest"
    if pointer.is_file():
        path = root / pointer.read_text().strip()
        if (path / "trainer.pt").is_file():
            return path
    complete = sorted(p for p in root.glob(f"{PREFIX}*") if (p / "trainer.pt").is_file())
    return complete[-1] if complete else None


def load_trainer_state(checkpoint: Path) -> dict[str, Any]:
    try:
        return torch.load(checkpoint / "trainer.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for damaged files
        raise BertforgeError(f"{checkpoint / 'trainer.pt'}: cannot be read ({exc.__class__.__name__}: {exc})") from None
