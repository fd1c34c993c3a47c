"""The one training loop every job runs (pretraining, fine-tuning): readable top to bottom.

A job supplies a model, a dataset, a collate function and an `Objective`; the loop supplies everything
else — optimizer, schedule, clipping, fp16 loss scaling, accumulation, DDP, checkpoints with exact resume,
signals, logging and periodic evaluation. A recipe runs `train(setup(job, ...))`: set-up, one step
(`train_step`), `save` and the step loop (`train`) are separate functions, as in torchtune's recipes.

One optimizer step = `accumulation_steps` micro-batches on every process. The loss is normalised over the
whole step: the objective's `totals` (e.g. the number of masked-LM targets, of examples) are summed over
the step's micro-batches and all processes before the first backward, and every micro-batch's loss is its
sums divided by those totals — so k micro-batches of b equal one batch of k·b, and n processes equal one
process with n× accumulation. Gradients are all-reduced only on the last micro-step (`no_sync`). Dropout
is reseeded from (seed, rank, step, micro-step) and the data order is a function of (seed, epoch): a
resumed run repeats exactly what the uninterrupted run would have done.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from bertforge.data.sampler import DistributedSampler
from bertforge.errors import BertforgeError, Interrupted
from bertforge.training import checkpoints, distributed
from bertforge.training.config import LossScaleConfig, OptimizerConfig, TrainConfig
from bertforge.training.metrics_log import MetricsLogger
from bertforge.training.optimizers import build_optimizer, clip_gradients, describe_groups
from bertforge.training.precision import DynamicLossScaler, autocast_context
from bertforge.training.schedule import build_scheduler

Batch = dict[str, torch.Tensor]
log = logging.getLogger("bertforge")


Terms = dict[str, torch.Tensor]  # named scalar sums (see `bertforge.modeling.heads`)


@dataclass
class Objective:
    """What a task plugs into the loop. Sums and totals are named scalars, so they add up exactly over
    micro-batches and processes."""

    totals: Callable[[Sequence[Batch]], Terms]  # the step's normalisers, from its micro-batches (before forward)
    sums: Callable[[nn.Module, Batch], Terms]  # differentiable sums of one micro-batch (the head's loss terms)
    loss: Callable[[Terms, Terms], torch.Tensor]  # (sums, all-process totals) -> scalar
    summary: Callable[[Terms], dict[str, float]]  # the step's summed sums -> values to log
    tokens: Callable[[Batch], int]  # real tokens of a micro-batch, for throughput


@dataclass
class Job:
    model: nn.Module  # already on its device, with its weights (fresh, initialised or resumed)
    dataset: Any  # __len__, __getitem__; optionally set_epoch (dynamic masking)
    collate: Callable[[list[Any]], Batch]
    objective: Objective
    name: str = "train"  # progress bar label
    lengths: np.ndarray | None = None  # per-item lengths: batches of similar length (fine-tuning)
    evaluate: Callable[[int], dict[str, float]] | None = None  # called on every process at each epoch end
    lr_multipliers: dict[str, float] | None = None  # parameter-name prefix -> multiple of the learning rate


@dataclass
class Run:
    """Everything a run holds between steps; `save` writes what `setup` reads back on resume."""

    job: Job
    train_config: TrainConfig
    oc: OptimizerConfig
    run_dir: Path
    dist: distributed.Distributed
    ddp: nn.Module  # the model, wrapped for DDP when distributed
    sampler: DistributedSampler
    loader: DataLoader
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: DynamicLossScaler
    logger: MetricsLogger
    total_steps: int
    step: int = 0

    @property
    def step_items(self) -> int:
        return self.train_config.batch_size * self.train_config.accumulation_steps


@contextlib.contextmanager
def stop_signals(handler) -> Iterator[None]:
    """`handler(signum, frame)` for SIGTERM and SIGINT while inside; the previous handlers after."""
    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _stop_requested() -> tuple[list[int], contextlib.AbstractContextManager]:
    """The number of a SIGTERM/SIGINT received (0: none), so the loop can save a checkpoint and stop
    between steps."""
    flag = [0]

    def handler(signum, frame):
        flag[0] = signum

    return flag, stop_signals(handler)


def check_steps(examples: int, train_config: TrainConfig, world_size: int) -> int:
    """Steps per epoch; none is an error, raised before a recipe writes anything into its output."""
    steps = examples // world_size // (train_config.batch_size * train_config.accumulation_steps)
    if steps == 0:
        micro = f"{train_config.batch_size} × {train_config.accumulation_steps}"
        raise BertforgeError(
            f"{examples} examples make no full step of {micro} micro-batches on {world_size} process(es)"
        )
    return steps


def setup(
    job: Job,
    train_config: TrainConfig,
    oc: OptimizerConfig,
    ls: LossScaleConfig,
    run_dir: Path,
    dist: distributed.Distributed,
    *,
    previous: Path | None = None,
    num_workers: int = 0,
) -> Run:
    """Sampler, optimizer, schedule, loss scaler and logger for `job`, restored from `previous` if given."""
    model, dataset = job.model, job.dataset
    sampler = DistributedSampler(
        len(dataset),
        dist.rank,
        dist.world_size,
        seed=train_config.seed,
        drop_last=True,
        lengths=job.lengths,
        batch_size=train_config.batch_size,
    )
    micro = f"{train_config.batch_size} × {train_config.accumulation_steps}"  # examples × micro-batches per step
    steps_per_epoch = check_steps(len(dataset), train_config, dist.world_size)
    total_steps = train_config.train_steps if train_config.train_steps > 0 else train_config.epochs * steps_per_epoch
    optimizer, scheduler, scaler = _optimization(model, train_config, oc, ls, total_steps, dist, job.lr_multipliers)
    step = 0
    if previous is not None:
        state = checkpoints.load_trainer_state(previous)
        try:  # first: the one part of the state that ties a run to its number of processes
            sampler.load_state_dict(state["sampler"])
        except BertforgeError as exc:
            raise BertforgeError(f"{previous}: {exc}") from None
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        checkpoints.set_rng_state(state["rng"])
        step = state["step"]
    if dist.is_main:
        log.info(describe_groups(optimizer))
        log.info(
            f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters; {len(dataset)} examples; "
            f"{steps_per_epoch} steps/epoch; {total_steps} steps of {micro.replace(' ', '')}×{dist.world_size} examples"
            + (f"; resuming at step {step}" if step else "")
        )
    loader = DataLoader(
        dataset,
        batch_size=train_config.batch_size,
        sampler=sampler,
        collate_fn=job.collate,
        drop_last=True,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(train_config.seed),  # keeps the global RNG for dropout
    )
    return Run(
        job=job,
        train_config=train_config,
        oc=oc,
        run_dir=run_dir,
        dist=dist,
        ddp=DistributedDataParallel(model) if dist.enabled else model,
        sampler=sampler,
        loader=loader,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        logger=MetricsLogger(run_dir, enabled=dist.is_main, resume_step=step if previous else None),
        total_steps=total_steps,
        step=step,
    )


def save(r: Run) -> Path:
    """A checkpoint of the model and everything needed to continue exactly (optimizer, RNG, data position)."""
    state = {
        "step": r.step,
        "optimizer": r.optimizer.state_dict(),
        "scheduler": r.scheduler.state_dict(),
        "scaler": r.scaler.state_dict(),
        "sampler": r.sampler.state_dict(),
        "rng": checkpoints.rng_state(),
    }
    path = checkpoints.checkpoint_dir(r.run_dir) / checkpoints.step_name(r.step)
    if r.dist.is_main:  # every rank holds the same weights and state; two writers would race on the rename
        checkpoints.save_checkpoint(r.run_dir, r.step, r.job.model, state, keep=r.train_config.save_checkpoint_num)
    r.dist.barrier()
    return path


def train(r: Run, progress: bool = True) -> Path:
    """Steps until `total_steps`, logging, evaluating and saving as configured; returns the last checkpoint.
    A SIGTERM/SIGINT saves a checkpoint at the end of the step, then raises `Interrupted`."""
    train_config, dist, job, dataset = r.train_config, r.dist, r.job, r.job.dataset
    stop, handlers = _stop_requested()
    bar = tqdm(total=r.total_steps, initial=r.step, disable=not (progress and dist.is_main), desc=job.name, unit="step")
    window = _Window()
    last = None
    with handlers, logging_redirect_tqdm([log]):  # log lines go above the progress bar
        while r.step < r.total_steps:
            epoch = r.sampler.epoch
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)
            batches = iter(r.loader)
            for _ in range((len(r.sampler) - r.sampler.position) // r.step_items):
                if r.step >= r.total_steps:
                    break
                started = time.perf_counter()
                micro = [next(batches) for _ in range(train_config.accumulation_steps)]
                r.sampler.advance(r.step_items)
                stats = train_step(r, micro)
                r.step += 1
                window.add(stats, time.perf_counter() - started)
                if dist.is_main and (r.step % train_config.log_steps == 0 or r.step == r.total_steps):
                    _log(r, window.flush(), bar)
                bar.update(1)
                if dist.any(bool(stop[0])):
                    last = save(r)
                    r.logger.close()
                    signum = stop[0] or signal.SIGTERM  # a process that got none stops with the others
                    raise Interrupted(
                        signum, f"stopped by signal at step {r.step}; checkpoint {last}; continue with --resume"
                    )
                if r.step % train_config.save_checkpoint_steps == 0:
                    last = save(r)
                if train_config.eval_steps > 0 and r.step % train_config.eval_steps == 0 and job.evaluate is not None:
                    _evaluate(r, f"step {r.step}")
            else:  # a whole epoch ran (its remainder too short for a full step is skipped)
                r.sampler.set_epoch(epoch + 1)
                if job.evaluate is not None:
                    _evaluate(r, f"epoch {epoch + 1}, step {r.step}")
    bar.close()
    if last is None or not last.name.endswith(f"{r.step:08d}"):
        last = save(r)
    r.logger.close()
    return last


def _log(r: Run, values: dict[str, float], bar) -> None:
    values |= {"lr": r.scheduler.get_last_lr()[0], "loss_scale": r.scaler.loss_scale, "skipped_steps": r.scaler.skipped}
    r.logger.log(r.step, values)
    bar.set_postfix(loss=f"{values['loss']:.3f}", lr=f"{values['lr']:.2e}", tok_s=f"{values['tokens_per_second']:.0f}")


def _evaluate(r: Run, when: str) -> None:
    r.job.model.eval()
    metrics = r.job.evaluate(r.step)
    r.job.model.train()
    r.logger.log(r.step, {f"eval_{k}": v for k, v in metrics.items()})
    if r.dist.is_main:
        log.info(f"{when}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))


def _optimization(
    model,
    train_config: TrainConfig,
    oc: OptimizerConfig,
    ls: LossScaleConfig,
    total_steps: int,
    dist,
    lr_multipliers=None,
):
    optimizer = build_optimizer(
        oc.name,
        model,
        lr=oc.learning_rate,
        weight_decay=oc.weight_decay,
        eps=oc.eps,
        betas=(oc.beta1, oc.beta2),
        bias_correction=oc.bias_correction,
        momentum=oc.momentum,
        lr_multipliers=lr_multipliers,
    )
    warmup = round(oc.warmup_proportion * total_steps) if oc.warmup_proportion > 0 else oc.warmup_steps
    decay_steps = oc.decay_steps
    if decay_steps <= 0:  # decay over the run; a run shorter than its warm-up only warms up
        decay_steps = max(total_steps, warmup + 1)
        if total_steps <= warmup and dist.is_main:
            log.warning(f"note: the run ({total_steps} steps) ends before warm-up ({warmup} steps) does")
    scheduler = build_scheduler(
        optimizer,
        learning_rate=oc.learning_rate,
        end_learning_rate=oc.end_learning_rate,
        warmup_steps=warmup,
        decay_steps=decay_steps,
        power=oc.power,
        decay_from_zero=oc.decay_from_zero,
    )
    scaler = DynamicLossScaler(
        ls.init_scale,
        ls.scale_factor,
        ls.scale_window,
        ls.max_consecutive_overflows,
        enabled=train_config.precision == "fp16",
    )
    return optimizer, scheduler, scaler


def train_step(r: Run, micro: list[Batch]) -> dict[str, float]:
    """Forward/backward over the micro-batches, then one optimizer update and schedule step (both skipped when
    fp16 gradients overflowed)."""
    train_config, dist, objective, scaler = r.train_config, r.dist, r.job.objective, r.scaler
    device = dist.device
    micro = [{k: v.to(device, non_blocking=True) for k, v in mb.items()} for mb in micro]
    # Normalisers of the whole step, all processes.
    totals = dist.sum_terms({k: v.to(device) for k, v in objective.totals(micro).items()})
    acc: Terms = {}
    for i, mb in enumerate(micro):
        # Dropout draws depend only on (seed, rank, step, micro-step): reproducible after a resume.
        torch.manual_seed(int(np.random.SeedSequence([train_config.seed, dist.rank, r.step, i]).generate_state(1)[0]))
        sync = i == len(micro) - 1 or not dist.enabled
        with (
            contextlib.nullcontext() if sync else r.ddp.no_sync(),
            autocast_context(train_config.precision, device.type),
        ):
            sums = objective.sums(r.ddp, mb)
            # DDP averages gradients over processes: scale by world size to get the sum-normalised loss.
            loss = objective.loss(sums, totals) * dist.world_size
            scaler.scale(loss).backward()
        acc = {k: v.detach() + acc.get(k, 0) for k, v in sums.items()}
    found_inf = scaler.unscale_and_check(r.optimizer)
    grad_norm = clip_gradients(r.ddp.parameters(), r.oc.clip_norm, r.oc.clip_mode)
    summary = objective.summary(dist.sum_terms(acc))
    if not scaler.enabled:  # without loss scaling a non-finite value is a fault, never a skippable overflow
        _check_finite(r, summary["loss"], float(grad_norm))
    if not found_inf:  # a skipped update leaves the schedule where it was too (as accelerate, Megatron, MindSpore)
        r.optimizer.step()
        r.scheduler.step()
    scaler.update(found_inf)
    r.optimizer.zero_grad(set_to_none=True)
    tokens = dist.sum(torch.tensor(float(sum(objective.tokens(mb) for mb in micro)), device=device)).item()
    return summary | {"grad_norm": float(grad_norm), "tokens": tokens}


def _check_finite(r: Run, loss: float, grad_norm: float) -> None:
    """Stop before a NaN/inf loss or gradient reaches the weights (nothing after it would be worth keeping)."""
    if math.isfinite(loss) and math.isfinite(grad_norm):
        return
    last = checkpoints.latest_checkpoint(r.run_dir)
    raise BertforgeError(
        f"step {r.step + 1}: the loss is {loss} and the gradient norm {grad_norm}; stopped before updating the "
        f"weights. Check the data (e.g. non-finite labels) or lower the learning rate"
        + (f"; the last good checkpoint is {last}" if last else "")
    )


class _Window:
    """Averages of the step statistics since the last log line (token-weighted throughput)."""

    def __init__(self):
        self.rows, self.seconds = [], 0.0

    def add(self, stats: dict[str, float], seconds: float) -> None:
        self.rows.append(stats)
        self.seconds += seconds

    def flush(self) -> dict[str, float]:
        keys = [k for k in self.rows[0] if k != "tokens"]
        out = {k: float(np.mean([r[k] for r in self.rows if math.isfinite(r[k])] or [math.nan])) for k in keys}
        out["tokens_per_second"] = sum(r["tokens"] for r in self.rows) / max(self.seconds, 1e-9)
        self.rows, self.seconds = [], 0.0
        return out
