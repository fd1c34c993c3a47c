"""Converting a Google-layout TensorFlow checkpoint of BERT-base size (synthetic, Google's names and shapes, about
420 MB with the pretraining heads, and a vocab.txt) against a plain copy of its bytes.

Each measurement runs in a fresh process with the same imports (its peak RSS is that process's; the copy's
is the baseline of the imports alone), the files in the page cache (written just before, read once before):
- `copy`: `shutil.copyfile` of every file of the release to a new folder: the floor;
- `read`: every tensor read through `TfCheckpoint` (memory-mapped, CRC32C checked), one at a time;
- `convert`: `bertforge convert DIR OUT` through the CLI's entry point, as a user runs it (to a model folder:
  the weights streamed from the mapped shards into model.safetensors, no model built; vocab.txt,
  bertforge.json and the tokenizer files written);
- `warm`: the same conversion `--repeats` times in one process, after a first one that is not counted;
- `model`: `load_model(DIR).save_pretrained(OUT)`, the model path that `convert` took before it streamed
  (and still takes for other sources): the checkpoint read, the model built, its state written.
Per-process import costs are not timed (torch's meta-device machinery, imported on first use, is printed
apart). The ratio printed is each median over the copy's median. Results: benchmarks/RESULTS.md.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_tf_checkpoint.py [--repeats 3] [--layers 12]
"""

from __future__ import annotations

import argparse
import contextlib
import io
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


def vocab(size: int) -> str:
    """A vocab.txt of `size` tokens as Google's releases ship one (special tokens first), so the conversion
    writes vocab.txt, bertforge.json and the tokenizer files as it does for a real release."""
    special = ["[PAD]", *(f"[unused{i}]" for i in range(99)), "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    return "".join(t + "\n" for t in special + [f"t{i}" for i in range(size - len(special))])


def step(kind: str, source: Path, out: Path, repeats: int) -> dict:
    """One measurement in this (fresh) process."""
    import torch  # noqa: F401 - the same imports in every step: the copy's peak RSS is the baseline

    import bertforge.cli.convert  # noqa: F401 - imported by `bertforge convert` before it converts: not timed
    import bertforge.modeling.tf_to_safetensors  # noqa: F401
    import bertforge.tasks  # noqa: F401
    from bertforge.cli import main as cli
    from bertforge.modeling.auto import load_model

    start = time.perf_counter()
    with torch.device("meta"):  # torch imports its meta-device machinery on first use, once per process
        torch.nn.Embedding(2, 2), torch.nn.Linear(2, 2), torch.nn.LayerNorm(2)
    meta_import = time.perf_counter() - start

    def convert(target: Path) -> None:
        with contextlib.redirect_stdout(io.StringIO()):  # its one line; this process prints JSON
            assert cli(["convert", str(source), str(target)]) == 0

    runs = []
    for run in range(repeats + 1 if kind == "warm" else 1):
        target = out.with_name(f"{out.name}-{run}")
        start = time.perf_counter()
        if kind == "copy":
            target.mkdir()
            for f in source.iterdir():
                shutil.copyfile(f, target / f.name)
        elif kind == "read":
            ckpt = TfCheckpoint(source / "bert_model.ckpt")
            for name in ckpt:
                ckpt[name]
        elif kind in ("convert", "warm"):
            convert(target)
        elif kind == "model":
            load_model(source).save_pretrained(target)
        runs.append(time.perf_counter() - start)
        shutil.rmtree(target, ignore_errors=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    timed = runs[1:] if kind == "warm" else runs  # warm: the first conversion in the process is not counted
    return {"runs": timed, "maxrss_mb": rss, "meta_import": meta_import}


def measure(kind: str, source: Path, work: Path, run: int, repeats: int) -> dict:
    out = work / f"{kind}-{run}"
    result = subprocess.run(
        [sys.executable, __file__, "--step", kind, str(source), str(out), "--repeats", str(repeats)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


KINDS = {
    "copy": "shutil.copyfile of the release's files (the floor)",
    "read": "every tensor through TfCheckpoint (CRC32C checked, a fresh array each)",
    "convert": "`bertforge convert DIR OUT` (streamed), fresh process",
    "warm": "the same, in one process after a first, untimed conversion",
    "model": "load_model(DIR).save_pretrained(OUT): the model path, as convert did before",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--step", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(step(args.step[0], Path(args.step[1]), Path(args.step[2]), args.repeats)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "chinese_L-12_H-768_A-12"
        source.mkdir()
        write_tf_checkpoint(source / "bert_model.ckpt", google_tensors(args.layers))
        config = BASE | dict(hidden_act="gelu", num_hidden_layers=args.layers, num_attention_heads=12)
        (source / "bert_config.json").write_text(json.dumps(config))
        (source / "vocab.txt").write_text(vocab(BASE["vocab_size"]), encoding="utf-8")
        size = sum(f.stat().st_size for f in source.iterdir())
        for f in source.iterdir():
            f.read_bytes()  # in the page cache for every measurement alike
        measure("read", source, Path(tmp), -1, 1)  # a warm-up, not counted
        results = {}
        for kind in KINDS:
            if kind == "warm":  # one process, `repeats` timed conversions
                results[kind] = [measure(kind, source, Path(tmp), 0, args.repeats)]
            else:
                results[kind] = [measure(kind, source, Path(tmp), r, 1) for r in range(args.repeats)]
    floor = statistics.median(t for r in results["copy"] for t in r["runs"])
    print(
        f"checkpoint: {size / 1e6:.0f} MB ({args.layers} layers, with vocab.txt), {os.cpu_count()} CPUs, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {args.repeats} repeats (median); peak "
        "RSS includes the imports (python, numpy, torch, bertforge): the copy's is that baseline"
    )
    once = statistics.median(r["meta_import"] for r in results["convert"])
    print(f"not timed: imports, and torch's meta-device machinery on its first use in a process ({once:.2f} s)")
    for kind, measured in results.items():
        runs = [t for r in measured for t in r["runs"]]
        seconds = statistics.median(runs)
        rss = statistics.median(r["maxrss_mb"] for r in measured)
        every = ", ".join(f"{t:.2f}" for t in runs)
        print(
            f"{kind:8s} {seconds:7.2f} s  {seconds / floor:5.2f}x copy  {size / 1e6 / seconds:7.0f} MB/s  "
            f"peak RSS {rss:6.0f} MB  (all: {every} s)  {KINDS[kind]}"
        )


if __name__ == "__main__":
    main()
