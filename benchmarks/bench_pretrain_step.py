"""One pretraining step of BERT-base (fp32, CPU): bertforge vs `transformers`, same batch, same process.

A step is forward + backward + optimizer update of `BertForPreTraining` with the BERT-base shape (12 layers,
hidden 768, 12 heads, intermediate 3072, vocab 21128) on a batch of 8 × 128 tokens with 20 masked positions
per sequence. bertforge runs its own model (MLM head only at the masked positions) and its AdamW;
`transformers` runs `BertForPreTraining` with SDPA attention and `torch.optim.AdamW(fused=True)` — what
`Trainer` uses by default since torch 2.8 (`adamw_torch_fused`) — and, as a second line, the foreach AdamW;
all from the same initial weights. They alternate step by step so that machine noise hits all alike; the
median tokens/s ratios are printed. Peak memory is measured separately (each model in a fresh child process
for the same number of steps, its VmHWM). MFU counts the FLOPs BERT needs (encoder, attention, MLM head at
the masked positions) against a measured fp32 matmul peak.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_pretrain_step.py [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

B, S, P = 8, 128, 20


def config():
    from bertforge.modeling import BertConfig

    return BertConfig.from_preset("bert-base", vocab_size=21128)


def make_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    positions = torch.stack([torch.randperm(S - 2, generator=g)[:P].sort().values + 1 for _ in range(B)])
    return {
        "input_ids": torch.randint(1000, 21128, (B, S), generator=g),
        "token_type_ids": (torch.arange(S) >= S // 2).long().expand(B, S).contiguous(),
        "attention_mask": torch.ones(B, S, dtype=torch.long),
        "masked_lm_positions": positions,
        "masked_lm_ids": torch.randint(1000, 21128, (B, P), generator=g),
        "masked_lm_weights": torch.ones(B, P),
        "next_sentence_labels": torch.randint(0, 2, (B,), generator=g),
    }


REFERENCES = {"hf": "fused", "hf-foreach": "foreach"}  # transformers with torch's AdamW, by implementation


def build(which: str, initial: dict[str, torch.Tensor] | None = None):
    """(model, step function) for 'ours' or a `REFERENCES` key; `initial` (our state dict) gives all the same
    weights."""
    import transformers

    from bertforge.modeling import BertForPreTraining
    from bertforge.training.optimizers import build_optimizer

    batch = make_batch()
    if which == "ours":
        torch.manual_seed(0)
        ours = BertForPreTraining(config())
        optimizer = build_optimizer("adamw", ours, lr=1e-4, weight_decay=0.01, eps=1e-6)

        def step():
            out = ours(
                batch["input_ids"],
                batch["token_type_ids"],
                batch["attention_mask"],
                batch["masked_lm_positions"],
                batch["masked_lm_ids"],
                batch["masked_lm_weights"],
                batch["next_sentence_labels"],
            )
            out.loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return out.loss.item()

        return ours, step
    c = config()
    hf = transformers.BertForPreTraining(
        transformers.BertConfig(
            vocab_size=c.vocab_size,
            hidden_size=c.hidden_size,
            num_hidden_layers=c.num_hidden_layers,
            num_attention_heads=c.num_attention_heads,
            intermediate_size=c.intermediate_size,
            attn_implementation="sdpa",
        )
    )
    assert hf.config._attn_implementation == "sdpa"
    if initial is not None:
        hf.load_state_dict(initial, strict=False)  # same weights (the tied decoder follows the embeddings)
        hf.tie_weights()
    labels = torch.full((B, S), -100)
    labels.scatter_(1, batch["masked_lm_positions"], batch["masked_lm_ids"])
    decay = [p for n, p in hf.named_parameters() if "bias" not in n and "LayerNorm" not in n]
    rest = [p for n, p in hf.named_parameters() if "bias" in n or "LayerNorm" in n]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}],
        lr=1e-4,
        eps=1e-6,
        **{REFERENCES[which]: True},
    )
    hf.train()

    def step():
        out = hf(
            input_ids=batch["input_ids"],
            token_type_ids=batch["token_type_ids"],
            attention_mask=batch["attention_mask"],
            labels=labels,
            next_sentence_label=batch["next_sentence_labels"],
        )
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return out.loss.item()

    return hf, step


def needed_flops() -> float:
    """FLOPs of forward + backward (3x forward) for what BERT needs."""
    c = config()
    H, F, L, V = c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.vocab_size
    tokens = B * S
    encoder = L * tokens * 2 * (4 * H * H + 2 * H * F)
    attention = L * B * 2 * 2 * S * S * H
    mlm = B * P * 2 * (H * H + H * V)
    return 3 * (encoder + attention + mlm)


def matmul_peak(windows: int = 8) -> float:
    """Best fp32 GEMM rate over several short windows (a shared machine's slow moments are not the peak)."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best = 0.0
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(5):
            a @ b
        best = max(best, 5 * 2 * 2048**3 / (time.perf_counter() - start))
    return best


def memory_child(which: str, steps: int) -> None:
    _, step = build(which)
    for _ in range(steps):
        step()
    # VmHWM, not ru_maxrss: ru_maxrss survives exec and would report the parent's high-water mark.
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
    print(json.dumps({"maxrss_mib": hwm / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model (after one warm-up)")
    parser.add_argument("--memory-child", choices=["ours", *REFERENCES])
    args = parser.parse_args()
    if args.memory_child:
        return memory_child(args.memory_child, 2)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; batch {B}x{S}, {P} masked positions")
    peak = matmul_peak()
    print(f"measured fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s")
    models = {"ours": build("ours")}
    for name in REFERENCES:
        models[name] = build(name, initial=models["ours"][0].state_dict())
    times: dict[str, list[float]] = {name: [] for name in models}
    for name, (_, step) in models.items():
        step()  # warm-up
    for _ in range(args.steps):
        for name, (_, step) in models.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    del models
    memory = {}
    for name in times:
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", name], capture_output=True, text=True, check=True
        )
        memory[name] = json.loads(out.stdout.strip().splitlines()[-1])["maxrss_mib"]
    flops = needed_flops()
    labels = {"ours": "bertforge"} | {name: f"transformers + {impl} AdamW" for name, impl in REFERENCES.items()}
    for name, label in labels.items():
        t = statistics.median(times[name])
        print(
            f"{label:28s}: {t:6.2f} s/step (median of {args.steps}: {', '.join(f'{x:.2f}' for x in times[name])}), "
            f"{B * S / t:6.1f} tokens/s, peak RSS {memory[name]:.0f} MiB, MFU {flops / t / peak:.0%}"
        )
    for name in REFERENCES:
        ratio = statistics.median(times[name]) / statistics.median(times["ours"])
        paired = statistics.median(h / o for h, o in zip(times[name], times["ours"]))
        print(
            f"tokens/s ratio bertforge / {labels[name]}: {ratio:.2f}x (ratio of medians), {paired:.2f}x (median "
            f"of the per-round ratios); memory {memory['ours'] / memory[name]:.2f}x"
        )
    print(f"needed work {flops / 1e9:.0f} GFLOP/step")


if __name__ == "__main__":
    main()
