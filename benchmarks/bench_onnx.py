"""ONNX Runtime against PyTorch eager on a BERT-base classifier (random weights, BERT-base shape): batch 1,
length 128, on `--threads` threads.

Exported with `bertforge export` (dynamo, ONNX Runtime's BERT optimizer, verified against PyTorch); also the
same graph with attention traced as SDPA (which the optimizer does not fuse), and the int8 model
(`quantize_dynamic`). Each runner is timed alone (`--repeats` means of `--calls` calls after a warm-up; the
table gives medians): alternated with every ONNX Runtime session alive, PyTorch eager measures 1.85 s (16% of
the floor), likely ONNX Runtime's spinning worker threads starving PyTorch's OpenMP threads on 2 cores. The
fp32 matmul rate of this CPU (torch, the same threads, BERT's (128 x 768) x (768 x 3072) product) measured in
the same run gives the floor: the forward's multiply-adds at that rate.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_onnx.py [--repeats 15] [--calls 10] [--threads 2]
        [--preset bert-base]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bertforge.export.onnx import export_folder, export_graph, optimize, quantize_int8  # noqa: E402
from bertforge.inference.backends import OPTIMIZED_FILE, OnnxBackend, TorchBackend  # noqa: E402
from bertforge.model_folder import ModelSettings, save_model_folder  # noqa: E402
from bertforge.modeling import BertConfig  # noqa: E402
from bertforge.modeling.heads import BertForSequenceClassification  # noqa: E402
from bertforge.samples import fetch  # noqa: E402

LENGTH = 128


def forward_flops(config: BertConfig, length: int) -> float:
    """Multiply-adds x 2 of one sequence: every Linear of the encoder, pooler and classifier, and the two
    attention products."""
    H, inter = config.hidden_size, config.intermediate_size
    per_layer = 2 * length * (4 * H * H + 2 * H * inter) + 2 * 2 * length * length * H
    return config.num_hidden_layers * per_layer + 2 * H * H + 2 * H * config.num_labels


def matmul_rate(config: BertConfig, repeats: int) -> float:
    """fp32 GFLOP/s of torch.mm at BERT's feed-forward shape (median of `repeats` runs of 20 products)."""
    a, b = torch.randn(LENGTH, config.hidden_size), torch.randn(config.hidden_size, config.intermediate_size)
    for _ in range(5):
        torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(20):
            torch.mm(a, b)
        times.append((time.perf_counter() - start) / 20)
    return 2 * LENGTH * config.hidden_size * config.intermediate_size / statistics.median(times) / 1e9


def cpu() -> str:
    """The CPU's model name and the flags that decide fp32 and int8 speed (VNNI: int8 dot products)."""
    try:
        lines = open("/proc/cpuinfo").read().splitlines()
    except OSError:
        return platform.machine()
    name = next((x.split(":", 1)[1].strip() for x in lines if x.startswith("model name")), platform.machine())
    flags = next((x.split(":", 1)[1].split() for x in lines if x.startswith("flags")), [])
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    return f"{name}; flags {', '.join(f for f in wanted if f in flags) or 'none of avx2/avx512/vnni/amx'}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--preset", default="bert-base", help="model shape (tiny: a quick check of the script)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = BertConfig.from_preset(
        args.preset, vocab_size=30522, max_position_embeddings=512, num_labels=2, id2label={0: "neg", 1: "pos"}
    )
    model = BertForSequenceClassification(config).eval()
    settings = ModelSettings("classification", ["neg", "pos"], max_seq_length=LENGTH, task={"format": "csv"})

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = save_model_folder(tmp / "model", model, settings, fetch("vocab-en"))
        start = time.perf_counter()
        report = export_folder(folder, tmp / "fp32")
        export_s = time.perf_counter() - start
        fp32 = tmp / "fp32" / OPTIMIZED_FILE
        quantize_int8(fp32, tmp / "int8.onnx")
        export_graph(model, tmp / "sdpa_raw.onnx", fusable_attention=False)
        sdpa_fusions = optimize(tmp / "sdpa_raw.onnx", tmp / "sdpa.onnx", config)

        runners = {  # built one at a time: a live ONNX Runtime session's spinning threads slow whatever runs next
            "pytorch eager": lambda: TorchBackend(model),
            "ort fp32": lambda: OnnxBackend(fp32, args.threads),
            "ort fp32, SDPA form": lambda: OnnxBackend(tmp / "sdpa.onnx", args.threads),
            "ort int8": lambda: OnnxBackend(tmp / "int8.onnx", args.threads),
        }
        generator = torch.Generator().manual_seed(1)
        batch = {
            "input_ids": torch.randint(1000, config.vocab_size, (1, LENGTH), generator=generator).numpy(),
            "token_type_ids": np.zeros((1, LENGTH), dtype=np.int64),
            "attention_mask": np.ones((1, LENGTH), dtype=np.int64),
        }
        reference = TorchBackend(model)(batch)["logits"]
        rate = matmul_rate(config, args.repeats)
        times: dict[str, list[float]] = {}
        diffs: dict[str, float] = {}
        for name, make in runners.items():
            run = make()
            diffs[name] = float(np.abs(run(batch)["logits"] - reference).max())
            times[name] = []
            for _ in range(args.repeats):
                begin = time.perf_counter()
                for _ in range(args.calls):
                    run(batch)
                times[name].append((time.perf_counter() - begin) / args.calls * 1e3)
            del run
        rate_after = matmul_rate(config, args.repeats)
        sizes = {"fp32": fp32.stat().st_size, "int8": (tmp / "int8.onnx").stat().st_size}

    median = {name: statistics.median(t) for name, t in times.items()}
    floor_ms = forward_flops(config, LENGTH) / (max(rate, rate_after) * 1e9) * 1e3
    print(f"machine: {cpu()}; {torch.get_num_threads()} threads; torch {torch.__version__}, "
          f"onnxruntime {report['onnxruntime']}")  # fmt: skip
    print(f"export (dynamo + optimizer + verification) {export_s:.1f} s; fusions: "
          + ", ".join(f"{k} {v}" for k, v in report["fusions"].items() if v)
          + "; SDPA form: " + ", ".join(f"{k} {v}" for k, v in sdpa_fusions.items() if v))  # fmt: skip
    print(f"fp32 matmul {rate:.1f} / {rate_after:.1f} GFLOP/s (before / after the timing); forward "
          f"{forward_flops(config, LENGTH) / 1e9:.2f} GFLOP -> floor {floor_ms:.1f} ms")  # fmt: skip
    print(f"{'runner':<22}{'median ms':>10}{'vs eager':>10}{'of floor':>10}{'max |Δ|':>10}   repeats (ms)")
    for name, ms in median.items():
        print(f"{name:<22}{ms:>10.2f}{median['pytorch eager'] / ms:>9.2f}x{floor_ms / ms:>9.0%}{diffs[name]:>10.1e}   "
              + " ".join(f"{t:.1f}" for t in times[name]))  # fmt: skip
    print(f"sizes: fp32 {sizes['fp32'] / 2**20:.1f} MiB, int8 {sizes['int8'] / 2**20:.1f} MiB "
          f"({sizes['fp32'] / sizes['int8']:.2f}x smaller); int8 is {median['ort fp32'] / median['ort int8']:.2f}x "
          "the speed of fp32")  # fmt: skip
    print(json.dumps({"median_ms": median, "matmul_gflops": [rate, rate_after], "floor_ms": floor_ms, "sizes": sizes}))


if __name__ == "__main__":
    main()
