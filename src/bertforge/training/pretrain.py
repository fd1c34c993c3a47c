"""`bertforge pretrain`: the MLM + NSP training loop, readable top to bottom.

One optimizer step = `accumulation_steps` micro-batches on every process. The loss is normalised over the
whole step (all micro-batches, all processes): the MLM NLL sum is divided by the step's total masked-LM
weight and the NSP sum by its instance count, both all-reduced before the first backward — so k micro-
batches of b equal one batch of k·b, and n processes equal one process with n× accumulation. Gradients
are all-reduced only on the last micro-step (`no_sync`). Dropout is reseeded from (seed, rank, step,
micro-step), and the data order is a function of (seed, epoch): a resumed run repeats exactly what the
uninterrupted run would have done.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from bertforge.data.dataset import PretrainingDataset
from bertforge.data.sampler import DistributedSampler
from bertforge.errors import BertforgeError
from bertforge.modeling.heads import BertForPreTraining, pretraining_loss_terms
from bertforge.training import checkpoints, distributed
from bertforge.training.config import PretrainConfig, save_config
from bertforge.training.metrics import MetricsLogger
from bertforge.training.optimizers import build_optimizer, clip_gradients, describe_groups
from bertforge.training.precision import DynamicLossScaler, autocast_context
from bertforge.training.schedule import build_scheduler

BATCH_KEYS = (
    "input_ids",
    "input_mask",
    "segment_ids",
    "masked_lm_positions",
    "masked_lm_ids",
    "masked_lm_weights",
    "next_sentence_labels",
)


def collate(items: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Stack items and cut the padding common to all of them (dynamic padding)."""
    batch = {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in BATCH_KEYS}
    length = max(1, int(batch["input_mask"].sum(1).max()))
    for k in ("input_ids", "input_mask", "segment_ids"):
        batch[k] = batch[k][:, :length]
    return batch


def _stop_requested() -> tuple[list[bool], contextlib.AbstractContextManager]:
    """A flag set by SIGTERM/SIGINT, so the loop can save a checkpoint and exit between steps."""
    flag = [False]

    def handler(signum, frame):
        flag[0] = True

    @contextlib.contextmanager
    def installed():
        old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    return flag, installed()


def pretrain(config: PretrainConfig, run_dir: str | Path, resume: bool = False, progress: bool = True) -> Path:
    """Train; returns the final checkpoint directory (loadable with `BertForPreTraining.from_pretrained`)."""
    run_dir = Path(run_dir)
    tc, oc = config.train, config.optimizer
    dist = distributed.setup(tc.device)
    if tc.precision == "fp16" and dist.device.type != "cuda":
        raise BertforgeError("--precision fp16 needs a CUDA device; use fp32 on CPU")

    # ------------------------------------------------------------------ run directory, data, model
    previous = checkpoints.latest_checkpoint(run_dir) if resume else None
    if resume and previous is None:
        raise BertforgeError(f"{run_dir}: --resume, but the run has no complete checkpoint yet")
    if not resume and (run_dir / "config.yaml").exists():
        raise BertforgeError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --output")
    if config.data.path is None:
        raise BertforgeError("no training data: pass --data DIR (a dataset from create-pretraining-data or TFRecords)")
    dataset = PretrainingDataset(config.data.path, seed=config.data.seed)
    bert_config = config.bert_config()
    dataset.check_vocab(bert_config.vocab_size)
    if previous is not None:
        model = BertForPreTraining.from_pretrained(previous)
    elif tc.init_checkpoint:
        model = BertForPreTraining.from_pretrained(tc.init_checkpoint, config=bert_config)
    else:
        torch.manual_seed(tc.seed)
        model = BertForPreTraining(bert_config)
    model.to(dist.device)
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")
    ddp = DistributedDataParallel(model) if dist.enabled else model

    sampler = DistributedSampler(len(dataset), dist.rank, dist.world_size, seed=tc.seed, drop_last=True)
    micro_per_epoch = len(sampler) // tc.batch_size
    steps_per_epoch = micro_per_epoch // tc.accumulation_steps
    if steps_per_epoch == 0:
        raise BertforgeError(
            f"{len(dataset)} instances make no full step of {tc.batch_size} × "
            f"{tc.accumulation_steps} micro-batches on {dist.world_size} process(es)"
        )
    total_steps = tc.train_steps if tc.train_steps > 0 else tc.epochs * steps_per_epoch

    optimizer = build_optimizer(
        oc.name,
        model,
        lr=oc.learning_rate,
        weight_decay=oc.weight_decay,
        eps=oc.eps,
        betas=(oc.beta1, oc.beta2),
        bias_correction=oc.bias_correction,
        momentum=oc.momentum,
    )
    decay_steps = oc.decay_steps
    if decay_steps <= 0:  # decay over the run; a run shorter than its warm-up only warms up
        decay_steps = max(total_steps, oc.warmup_steps + 1)
        if total_steps <= oc.warmup_steps and dist.is_main:
            print(f"note: the run ({total_steps} steps) ends before warm-up ({oc.warmup_steps} steps) does")
    scheduler = build_scheduler(
        optimizer,
        learning_rate=oc.learning_rate,
        end_learning_rate=oc.end_learning_rate,
        warmup_steps=oc.warmup_steps,
        decay_steps=decay_steps,
        power=oc.power,
        decay_from_zero=oc.decay_from_zero,
    )
    ls = config.loss_scale
    scaler = DynamicLossScaler(
        ls.init_scale, ls.scale_factor, ls.scale_window, ls.max_consecutive_overflows, enabled=tc.precision == "fp16"
    )
    step = 0
    if previous is not None:
        state = checkpoints.load_trainer_state(previous)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        sampler.load_state_dict(state["sampler"])
        checkpoints.set_rng_state(state["rng"])
        step = state["step"]
    if dist.is_main:
        print(describe_groups(optimizer))
        print(
            f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters; {len(dataset)} instances; "
            f"{steps_per_epoch} steps/epoch; {total_steps} steps of {tc.batch_size}×{tc.accumulation_steps}"
            f"×{dist.world_size} instances" + (f"; resuming at step {step}" if step else "")
        )
    logger = MetricsLogger(run_dir, enabled=dist.is_main, resume_step=step if previous else None)

    loader = DataLoader(
        dataset,
        batch_size=tc.batch_size,
        sampler=sampler,
        collate_fn=collate,
        drop_last=True,
        num_workers=config.data.num_workers,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(tc.seed),
    )  # keeps the global RNG for dropout

    def save() -> Path:
        state = {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "sampler": sampler.state_dict(),
            "rng": checkpoints.rng_state(),
        }
        path = checkpoints.save_checkpoint(run_dir, step, model, state, keep=tc.save_checkpoint_num)
        dist.barrier()
        return path

    # ---------------------------------------------------------------------------------- the loop
    stop, handlers = _stop_requested()
    bar = tqdm(total=total_steps, initial=step, disable=not (progress and dist.is_main), desc="pretrain", unit="step")
    window = _Window()
    last = None
    with handlers:
        while step < total_steps:
            epoch = sampler.epoch
            dataset.set_epoch(epoch)
            batches = iter(loader)
            for _ in range((len(sampler) - sampler.position) // (tc.batch_size * tc.accumulation_steps)):
                if step >= total_steps:
                    break
                started = time.perf_counter()
                micro = [next(batches) for _ in range(tc.accumulation_steps)]
                sampler.advance(tc.batch_size * tc.accumulation_steps)
                stats = _train_step(ddp, micro, optimizer, scaler, dist, config, step)
                scheduler.step()
                step += 1
                window.add(stats, time.perf_counter() - started)
                if dist.is_main and (step % tc.log_steps == 0 or step == total_steps):
                    values = window.flush() | {
                        "lr": scheduler.get_last_lr()[0],
                        "loss_scale": scaler.loss_scale,
                        "skipped_steps": scaler.skipped,
                    }
                    logger.log(step, values)
                    bar.set_postfix(
                        loss=f"{values['loss']:.3f}",
                        lr=f"{values['lr']:.2e}",
                        tok_s=f"{values['tokens_per_second']:.0f}",
                    )
                bar.update(1)
                if dist.any(stop[0]):
                    last = save()
                    if dist.is_main:
                        bar.write(f"stopped by signal at step {step}; checkpoint {last}; continue with --resume")
                    logger.close()
                    distributed.teardown()
                    return last
                if step % tc.save_checkpoint_steps == 0:
                    last = save()
            sampler.set_epoch(epoch + 1)  # (an epoch's remainder too short for a full step is skipped)
    bar.close()
    if last is None or not last.name.endswith(f"{step:08d}"):
        last = save()
    logger.close()
    distributed.teardown()
    return last


def _train_step(
    ddp, micro: list[dict[str, torch.Tensor]], optimizer, scaler, dist, config: PretrainConfig, step: int
) -> dict[str, float]:
    """Forward/backward over the micro-batches, then one (possibly skipped) optimizer update."""
    tc, oc = config.train, config.optimizer
    device = dist.device
    micro = [{k: v.to(device, non_blocking=True) for k, v in mb.items()} for mb in micro]
    # Normalisers of the whole step, over all processes (see the module docstring).
    totals = dist.sum(
        torch.stack(
            [
                sum(mb["masked_lm_weights"].sum() for mb in micro).float(),
                torch.tensor(float(sum(len(mb["input_ids"]) for mb in micro)), device=device),
            ]
        )
    )
    mlm_total, nsp_total = totals[0].clamp(min=1e-5), totals[1]
    sums = torch.zeros(6, device=device)
    for i, mb in enumerate(micro):
        # Dropout draws depend only on (seed, rank, step, micro-step): reproducible after a resume.
        torch.manual_seed(int(np.random.SeedSequence([tc.seed, dist.rank, step, i]).generate_state(1)[0]))
        sync = i == len(micro) - 1 or not dist.enabled
        with contextlib.nullcontext() if sync else ddp.no_sync(), autocast_context(tc.precision, device.type):
            out = ddp(mb["input_ids"], mb["segment_ids"], mb["input_mask"], mb["masked_lm_positions"])
            terms = pretraining_loss_terms(
                out.mlm_logits, out.nsp_logits, mb["masked_lm_ids"], mb["masked_lm_weights"], mb["next_sentence_labels"]
            )
            # DDP averages gradients over processes: scale by world size to get the sum-normalised loss.
            loss = (terms.mlm_nll / mlm_total + terms.nsp_nll / nsp_total) * dist.world_size
            scaler.scale(loss).backward()
        sums += torch.stack(
            [terms.mlm_nll, terms.mlm_weight, terms.mlm_correct, terms.nsp_nll, terms.nsp_count, terms.nsp_correct]
        ).detach()
    found_inf = scaler.unscale_and_check(optimizer)
    grad_norm = clip_gradients(ddp.parameters(), oc.clip_norm, oc.clip_mode)
    if not found_inf:
        optimizer.step()
    scaler.update(found_inf)
    optimizer.zero_grad(set_to_none=True)
    sums = dist.sum(sums).tolist()
    tokens = dist.sum(torch.tensor(float(sum(int(mb["input_mask"].sum()) for mb in micro)), device=device)).item()
    mlm_loss = sums[0] / max(sums[1], 1e-5)
    nsp_loss = sums[3] / max(sums[4], 1)
    return {
        "loss": mlm_loss + nsp_loss,
        "mlm_loss": mlm_loss,
        "nsp_loss": nsp_loss,
        "mlm_accuracy": sums[2] / max(sums[1], 1e-5),
        "nsp_accuracy": sums[5] / max(sums[4], 1),
        "grad_norm": float(grad_norm),
        "tokens": tokens,
        "skipped": float(found_inf),
    }


class _Window:
    """Averages of the step statistics since the last log line (token-weighted throughput)."""

    def __init__(self):
        self.rows, self.seconds = [], 0.0

    def add(self, stats: dict[str, float], seconds: float) -> None:
        self.rows.append(stats)
        self.seconds += seconds

    def flush(self) -> dict[str, float]:
        keys = ("loss", "mlm_loss", "nsp_loss", "mlm_accuracy", "nsp_accuracy", "grad_norm")
        out = {k: float(np.mean([r[k] for r in self.rows if math.isfinite(r[k])] or [math.nan])) for k in keys}
        out["tokens_per_second"] = sum(r["tokens"] for r in self.rows) / max(self.seconds, 1e-9)
        self.rows, self.seconds = [], 0.0
        return out


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
    dist = distributed.setup(device)
    model = BertForPreTraining.from_pretrained(model_path).to(dist.device).eval()
    dataset = PretrainingDataset(data)
    dataset.check_vocab(model.config.vocab_size)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    indices = list(range(dist.rank, n, dist.world_size))
    sums = torch.zeros(6, device=dist.device)
    with torch.no_grad():
        for start in tqdm(range(0, len(indices), batch_size), disable=not (progress and dist.is_main), desc="eval"):
            mb = collate([dataset[i] for i in indices[start : start + batch_size]])
            mb = {k: v.to(dist.device) for k, v in mb.items()}
            out = model(mb["input_ids"], mb["segment_ids"], mb["input_mask"], mb["masked_lm_positions"])
            t = pretraining_loss_terms(
                out.mlm_logits, out.nsp_logits, mb["masked_lm_ids"], mb["masked_lm_weights"], mb["next_sentence_labels"]
            )
            sums += torch.stack([t.mlm_nll, t.mlm_weight, t.mlm_correct, t.nsp_nll, t.nsp_count, t.nsp_correct])
    s = dist.sum(sums).tolist()
    distributed.teardown()
    return {
        "instances": int(s[4]),
        "mlm_accuracy": s[2] / max(s[1], 1e-5),
        "mlm_loss": s[0] / max(s[1], 1e-5),
        "nsp_accuracy": s[5] / max(s[4], 1),
        "nsp_loss": s[3] / max(s[4], 1),
    }
