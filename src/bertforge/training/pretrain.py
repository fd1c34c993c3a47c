"""`bertforge pretrain`: masked-LM + next-sentence pretraining, as an objective of the shared training loop.

The loss of a step is the masked-LM NLL summed over the step's masked positions divided by their total
weight, plus the NSP NLL summed over its instances divided by their number (both totals over all
micro-batches and processes; see `training.loop`).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bertforge.data.dataset import FEATURES, PretrainingDataset
from bertforge.errors import BertforgeError
from bertforge.fileio import run_lock
from bertforge.modeling.heads import BertForPreTraining
from bertforge.training import checkpoints, distributed, loop
from bertforge.training.config import RESUMABLE, PretrainConfig, load_config, resume_changes, save_config
from bertforge.validation import Rule

log = logging.getLogger("bertforge")


def collate(items: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Stack items and cut the padding common to all of them (dynamic padding)."""
    batch = {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in FEATURES}
    length = max(1, int(batch["input_mask"].sum(1).max()))
    for k in ("input_ids", "input_mask", "segment_ids"):
        batch[k] = batch[k][:, :length]
    return batch


def _sums(model, mb) -> dict[str, torch.Tensor]:
    return model(
        mb["input_ids"],
        mb["segment_ids"],
        mb["input_mask"],
        mb["masked_lm_positions"],
        mb["masked_lm_ids"],
        mb["masked_lm_weights"],
        mb["next_sentence_labels"],
    ).terms


def _summary(s: dict[str, torch.Tensor]) -> dict[str, float]:
    s = {k: float(v) for k, v in s.items()}
    mlm_loss, nsp_loss = s["mlm_nll"] / max(s["mlm_weight"], 1e-5), s["nsp_nll"] / max(s["nsp_count"], 1)
    return {
        "loss": mlm_loss + nsp_loss,
        "mlm_loss": mlm_loss,
        "nsp_loss": nsp_loss,
        "mlm_accuracy": s["mlm_correct"] / max(s["mlm_weight"], 1e-5),
        "nsp_accuracy": s["nsp_correct"] / max(s["nsp_count"], 1),
    }


PRETRAINING = loop.Objective(
    totals=lambda micro: {
        "mlm_weight": sum(mb["masked_lm_weights"].sum() for mb in micro).float(),
        "nsp_count": torch.tensor(
            float(sum(len(mb["input_ids"]) for mb in micro)), device=micro[0]["input_ids"].device
        ),
    },
    sums=_sums,
    loss=lambda s, t: s["mlm_nll"] / t["mlm_weight"].clamp(min=1e-5) + s["nsp_nll"] / t["nsp_count"],
    summary=_summary,
    tokens=lambda mb: int(mb["input_mask"].sum()),
)


def pretrain(config: PretrainConfig, run_dir: str | Path, resume: bool = False, progress: bool = True) -> Path:
    """Train; returns the final checkpoint directory (loadable with `BertForPreTraining.from_pretrained`).
    The run directory is locked for the whole run; a SIGINT/SIGTERM saves a checkpoint and raises
    `Interrupted`."""
    run_dir = Path(run_dir)
    train_config = config.train
    dist = distributed.setup(train_config.device)
    with run_lock(run_dir) if dist.is_main else contextlib.nullcontext():
        try:
            return _pretrain(config, run_dir, resume, progress, dist)
        finally:
            distributed.teardown()


def _pretrain(config: PretrainConfig, run_dir: Path, resume: bool, progress: bool, dist) -> Path:
    train_config = config.train
    if train_config.precision == "fp16" and dist.device.type != "cuda":
        raise BertforgeError("--precision fp16 needs a CUDA device; use fp32 on CPU")
    saved = run_dir / "config.yaml"
    if not resume and saved.exists():
        raise BertforgeError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --output")
    previous = checkpoints.latest_checkpoint(run_dir) if resume else None
    if previous is not None and saved.exists():  # (before the first checkpoint, settings may still change)
        changed = resume_changes(load_config(saved), config)
        if changed:
            raise BertforgeError(
                f"{run_dir}: --resume with settings that differ from the run's {saved.name}: {'; '.join(changed)} "
                f"(only {', '.join(RESUMABLE)} may change on resume)"
            )
    if resume and previous is None and dist.is_main:
        log.warning(f"{run_dir}: no complete checkpoint yet; starting from step 0")
    if config.data.path is None:
        raise BertforgeError("no training data: pass --data DIR (a dataset from create-pretraining-data or TFRecords)")
    dataset = PretrainingDataset(config.data.path, seed=config.data.seed)
    bert_config = config.bert_config()
    dataset.check_vocab(bert_config.vocab_size)
    loop.check_steps(len(dataset), train_config, dist.world_size)
    if previous is not None:
        model = BertForPreTraining.from_pretrained(previous)
    elif train_config.init_checkpoint:
        model = BertForPreTraining.from_pretrained(train_config.init_checkpoint, config=bert_config)
    else:
        torch.manual_seed(train_config.seed)
        model = BertForPreTraining(bert_config)
    model.to(dist.device)
    # Every process has checked that run_dir holds no run before the main one writes into it: a slower rank
    # would otherwise find the config.yaml just written and refuse ("already holds a run").
    dist.barrier()
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, saved)
    job = loop.Job(model, dataset, collate, PRETRAINING, name="pretrain")
    run = loop.setup(
        job, train_config, config.optimizer, config.loss_scale, run_dir, dist, previous=previous,
        num_workers=config.data.num_workers,
    )  # fmt: skip
    return loop.train(run, progress)


def evaluate(
    model_path: str | Path,
    data: str | Path,
    batch_size: int = 32,
    device: str = "auto",
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """`pretrain-eval`: MLM and NSP accuracy and loss of a checkpoint over a dataset (all processes share
    the work under torchrun; every instance is counted once)."""
    Rule(int, low=1).check("batch_size", batch_size)
    Rule(int, low=1, optional=True).check("limit", limit)  # (0 would score nothing as a loss of 0)
    dist = distributed.setup(device)
    model = BertForPreTraining.from_pretrained(model_path).to(dist.device).eval()
    dataset = PretrainingDataset(data)
    dataset.check_vocab(model.config.vocab_size)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    indices = list(range(dist.rank, n, dist.world_size))
    sums: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for start in tqdm(range(0, len(indices), batch_size), disable=not (progress and dist.is_main), desc="eval"):
            mb = collate([dataset[i] for i in indices[start : start + batch_size]])
            terms = _sums(model, {k: v.to(dist.device) for k, v in mb.items()})
            sums = {k: v + sums.get(k, 0) for k, v in terms.items()}
    sums = dist.sum_terms(sums)
    distributed.teardown()
    summary = _summary(sums)
    return {"instances": int(sums["nsp_count"].item())} | {k: v for k, v in summary.items() if k != "loss"}
