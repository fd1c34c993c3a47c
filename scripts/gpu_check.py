"""The measuring half of scripts/gpu_check.sh (run by it, with bertforge on PYTHONPATH).

    python3 scripts/gpu_check.py env OUT             versions and the device, as env.json
    python3 scripts/gpu_check.py compare A B         max |diff| between two checkpoints' weights (0: bit-identical)
    python3 scripts/gpu_check.py throughput OUT      BERT-base/large pretraining steps, bf16, lengths 128 and 512
    python3 scripts/gpu_check.py finetune-data DIR   a random BERT-base init folder and a synthetic train/dev CSV
    python3 scripts/gpu_check.py finetune-speed RUN BATCH   training examples/s from a finetune run's metrics

Throughput uses the pretraining objective and the fused AdamW of bertforge, on random batches with the
largest batch (a power of two) that fits. TFLOP/s counts the matmuls of a training step (3x forward):
6·N·T for the encoder's weight matrices (N parameters, T tokens), 12·L·S·H·T for attention scores and
context, and 6·P·(H² + H·V) for the MLM head at the P masked positions — the usual estimate, as in
NVIDIA's and Megatron's MFU figures.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import torch

from bertforge.modeling import BertConfig, BertForPreTraining
from bertforge.training import build_optimizer
from bertforge.training.pretrain import PRETRAINING


def env(out: str) -> None:
    out = Path(out)
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "bf16": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        "memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30 if torch.cuda.is_available() else 0,
    }
    (out / "env.json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info))
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: nothing to check")


def compare(a: str, b: str) -> None:
    a, b = Path(a), Path(b)
    from safetensors.torch import load_file

    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    print(max((wa[k].float() - wb[k].float()).abs().max().item() for k in wa))


def _batch(config: BertConfig, batch: int, length: int, predictions: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    mb = {
        "input_ids": torch.randint(1000, config.vocab_size, (batch, length), generator=g),
        "segment_ids": (torch.arange(length) >= length // 2).long().expand(batch, length).contiguous(),
        "input_mask": torch.ones(batch, length, dtype=torch.long),
        "masked_lm_positions": torch.stack([torch.randperm(length, generator=g)[:predictions] for _ in range(batch)]),
        "masked_lm_ids": torch.randint(1000, config.vocab_size, (batch, predictions), generator=g),
        "masked_lm_weights": torch.ones(batch, predictions),
        "next_sentence_labels": torch.randint(0, 2, (batch, 1), generator=g),
    }
    return {k: v.cuda() for k, v in mb.items()}


def _step(model, optimizer, mb) -> None:
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = PRETRAINING.loss(PRETRAINING.sums(model, mb), PRETRAINING.totals([mb]))
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _fits(model, optimizer, config, batch, length, predictions) -> bool:
    try:
        _step(model, optimizer, _batch(config, batch, length, predictions))
        torch.cuda.synchronize()
        return True
    except torch.cuda.OutOfMemoryError:
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        return False


def _flops_per_step(config: BertConfig, model, batch: int, length: int, predictions: int) -> float:
    encoder = sum(p.numel() for n, p in model.bert.encoder.named_parameters() if p.dim() == 2)
    tokens = batch * length
    h, v, layers = config.hidden_size, config.vocab_size, config.num_hidden_layers
    return 6 * encoder * tokens + 12 * layers * length * h * tokens + 6 * batch * predictions * (h * h + h * v)


def throughput(out: str, steps: int = 10, max_batch: int = 1024) -> None:
    out, rows = Path(out), []
    for preset in ("bert-base", "bert-large"):
        for length, predictions in ((128, 20), (512, 80)):
            torch.manual_seed(0)
            config = BertConfig.from_preset(preset)
            model = BertForPreTraining(config).cuda().train()
            optimizer = build_optimizer("adamw", model, lr=1e-4, weight_decay=0.01)
            batch = 8
            while batch * 2 <= max_batch and _fits(model, optimizer, config, batch * 2, length, predictions):
                batch *= 2
            mb = _batch(config, batch, length, predictions)
            for _ in range(2):  # warm-up at the measured shape
                _step(model, optimizer, mb)
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(steps):
                _step(model, optimizer, mb)
            torch.cuda.synchronize()
            seconds = (time.perf_counter() - start) / steps
            row = {
                "model": preset,
                "seq_len": length,
                "batch": batch,
                "precision": "bf16",
                "sequences_per_s": round(batch / seconds, 1),
                "tflops": round(_flops_per_step(config, model, batch, length, predictions) / seconds / 1e12, 1),
                "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1),
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
            del model, optimizer, mb
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    (out / "throughput.json").write_text(json.dumps(rows, indent=1) + "\n")


def finetune_data(root: str | Path, train: int = 20000, dev: int = 1000) -> None:
    """Words w0..w29999 in a vocab, random sentences of 8-64 of them labelled by a keyword: the speed of the
    recipe on BERT-base, not a result (the weights are random)."""
    import csv
    import random

    from bertforge.model_folder import VOCAB_FILE

    words = [f"w{i}" for i in range(30000)]
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    init = Path(root) / "init"
    torch.manual_seed(0)
    BertForPreTraining(BertConfig.from_preset("bert-base", vocab_size=len(tokens))).save_pretrained(init)
    (init / VOCAB_FILE).write_text("\n".join(tokens) + "\n")
    rng, root = random.Random(0), Path(root)
    for name, n in (("train", train), ("dev", dev)):
        with open(root / f"{name}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            for _ in range(n):
                label = rng.randint(0, 1)
                text = rng.choices(words[100:], k=rng.randint(8, 64)) + [words[label]]
                rng.shuffle(text)
                writer.writerow([" ".join(text), label])


def finetune_speed(run: str, batch: str) -> None:
    """Examples/s between the first and the last training log line (no set-up, featurizing or evaluation)."""
    rows = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss" in r]
    batch = int(batch)
    seconds = rows[-1]["time"] - rows[0]["time"]
    print(
        json.dumps(
            {
                "examples_per_s": round((rows[-1]["step"] - rows[0]["step"]) * batch / seconds, 1),
                "tokens_per_s": round(sum(r["tokens_per_second"] for r in rows[1:]) / (len(rows) - 1)),
            }
        )
    )


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {
        "env": env,
        "compare": compare,
        "throughput": throughput,
        "finetune-data": finetune_data,
        "finetune-speed": finetune_speed,
    }[command](*args)
