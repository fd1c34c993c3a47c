"""Reading a Google-layout TensorFlow checkpoint of BERT-base size (synthetic, Google's names and shapes, about
420 MB with the pretraining heads) against a plain copy of its bytes.

Each measurement runs in a fresh process with the same imports (its peak RSS is that process's; the copy's
is the baseline of the imports alone), the files in the page cache (written just before, read once before):
- `copy`: `shutil.copyfile` of the `.index` and `.data` files to a new folder: the floor;
- `read`: every tensor read through `TfCheckpoint` (memory-mapped, CRC32C checked), one at a time;
- `convert`: `bertforge convert DIR OUT` (to a Hugging Face folder: model built on the meta device, the
  checkpoint's tensors assigned, safetensors written), through the Python API. Per-process import costs are
  not timed (torch's meta-device machinery, imported on first use, is printed apart).
The ratio printed is each median over the copy's median.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_tf_checkpoint.py [--repeats 3] [--layers 12]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402

from bertforge.formats.tf_checkpoint import TfCheckpoint, write_tf_checkpoint  # noqa: E402

BASE = dict(vocab_size=21128, hidden_size=768, intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2)


def google_tensors(layers: int) -> dict[str, np.ndarray]:
    """Google's variable names and shapes for `chinese_L-12_H-768_A-12` with its pretraining heads."""
    V, H, inter = BASE["vocab_size"], BASE["hidden_size"], BASE["intermediate_size"]
    rng = np.random.default_rng(0)
    shapes = {
        "bert/embeddings/word_embeddings": (V, H),
        "bert/embeddings/token_type_embeddings": (2, H),
        "bert/embeddings/position_embeddings": (BASE["max_position_embeddings"], H),
        "bert/embeddings/LayerNorm/gamma": (H,),
        "bert/embeddings/LayerNorm/beta": (H,),
        "bert/pooler/dense/kernel": (H, H),
        "bert/pooler/dense/bias": (H,),
        "cls/predictions/transform/dense/kernel": (H, H),
        "cls/predictions/transform/dense/bias": (H,),
        "cls/predictions/transform/LayerNorm/gamma": (H,),
        "cls/predictions/transform/LayerNorm/beta": (H,),
        "cls/predictions/output_bias": (V,),
        "cls/seq_relationship/output_weights": (2, H),
        "cls/seq_relationship/output_bias": (2,),
    }
    for n in range(layers):
        p = f"bert/encoder/layer_{n}/"
        for name in ("attention/self/query", "attention/self/key", "attention/self/value", "attention/output/dense"):
            shapes[f"{p}{name}/kernel"], shapes[f"{p}{name}/bias"] = (H, H), (H,)
        shapes[f"{p}intermediate/dense/kernel"], shapes[f"{p}intermediate/dense/bias"] = (H, inter), (inter,)
        shapes[f"{p}output/dense/kernel"], shapes[f"{p}output/dense/bias"] = (inter, H), (H,)
        for norm in ("attention/output/LayerNorm", "output/LayerNorm"):
            shapes[f"{p}{norm}/gamma"] = shapes[f"{p}{norm}/beta"] = (H,)
    return {name: rng.standard_normal(shape, dtype=np.float32) * 0.02 for name, shape in shapes.items()}


def step(kind: str, source: Path, out: Path) -> dict[str, float]:
    """One measurement in this (fresh) process."""
    import torch  # noqa: F401 - the same imports in every step: the copy's peak RSS is the baseline

    import bertforge.modeling.auto  # noqa: F401 - imported by convert_checkpoint when called: not timed
    from bertforge.model_folder import convert_checkpoint

    start = time.perf_counter()
    with torch.device("meta"):  # torch imports its meta-device machinery on first use, once per process
        torch.nn.Embedding(2, 2), torch.nn.Linear(2, 2), torch.nn.LayerNorm(2)
    meta_import = time.perf_counter() - start
    start = time.perf_counter()
    if kind == "copy":
        out.mkdir()
        for f in source.iterdir():
            shutil.copyfile(f, out / f.name)
    elif kind == "read":
        ckpt = TfCheckpoint(source / "bert_model.ckpt")
        for name in ckpt:
            ckpt[name]
    elif kind == "convert":
        convert_checkpoint(source, out)
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "maxrss_mb": rss, "meta_import": meta_import}


def measure(kind: str, source: Path, work: Path, run: int) -> dict[str, float]:
    out = work / f"{kind}-{run}"
    result = subprocess.run(
        [sys.executable, __file__, "--step", kind, str(source), str(out)], check=True, capture_output=True, text=True
    )
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--step", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(step(args.step[0], Path(args.step[1]), Path(args.step[2]))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "chinese_L-12_H-768_A-12"
        source.mkdir()
        write_tf_checkpoint(source / "bert_model.ckpt", google_tensors(args.layers))
        config = BASE | dict(hidden_act="gelu", num_hidden_layers=args.layers, num_attention_heads=12)
        (source / "bert_config.json").write_text(json.dumps(config))
        size = sum(f.stat().st_size for f in source.iterdir())
        for f in source.iterdir():
            f.read_bytes()  # in the page cache for every measurement alike
        measure("read", source, Path(tmp), -1)  # a warm-up, not counted
        kinds = ("copy", "read", "convert")
        results = {kind: [measure(kind, source, Path(tmp), r) for r in range(args.repeats)] for kind in kinds}
    floor = statistics.median(r["seconds"] for r in results["copy"])
    print(
        f"checkpoint: {size / 1e6:.0f} MB ({args.layers} layers), {os.cpu_count()} CPUs, OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, {args.repeats} repeats (median); peak RSS includes the "
        "imports (python, numpy, torch, bertforge): the copy's is that baseline"
    )
    once = statistics.median(r["meta_import"] for r in results["convert"])
    print(f"not timed: imports, and torch's meta-device machinery on its first use in a process ({once:.2f} s)")
    for kind, runs in results.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        rss = statistics.median(r["maxrss_mb"] for r in runs)
        every = ", ".join(f"{r['seconds']:.2f}" for r in runs)
        print(
            f"{kind:8s} {seconds:7.2f} s  {seconds / floor:5.2f}x copy  {size / 1e6 / seconds:7.0f} MB/s  "
            f"peak RSS {rss:6.0f} MB  (all: {every} s)"
        )


if __name__ == "__main__":
    main()
