"""Prediction throughput on 2,000 real short sentences: bertforge's `Predictor` against the same model padded
to 128 tokens and against `transformers`' `pipeline("text-classification", batch_size=32)` on the same folder.

The model: all-MiniLM-L6-v2 fine-tuned for one epoch on the other half of Pang & Lee sentence polarity
(`bertforge finetune`, kept as a model folder that `transformers` loads too). Each repeat runs the three
side by side in this process, after one warm-up pass each; the labels of all three must be identical.
Times include tokenizing and post-processing (raw text in, `{"label", "score"}` lists out).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_predict.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from bertforge.inference import Predictor  # noqa: E402
from bertforge.samples import fetch  # noqa: E402
from bertforge.training.config import load_config  # noqa: E402
from bertforge.training.finetune import config_class, finetune  # noqa: E402


def polarity() -> list[tuple[str, str]]:
    with open(fetch("polarity-en"), encoding="utf-8-sig", newline="") as f:
        rows = [(text.strip(), "positive" if label == "1" else "negative") for label, text in csv.reader(f)]
    random.Random(0).shuffle(rows)
    return rows


def fine_tuned(rows: list[tuple[str, str]], tmp: Path) -> Path:
    train = tmp / "train.csv"
    with open(train, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    overrides = [f"init={fetch('minilm')}", f"task.train={train}", "train.epochs=1", "train.device=cpu",
                 "optimizer.learning_rate=5e-5", "do_eval=false"]  # fmt: skip
    finetune(load_config(None, overrides, config_class("classification")), tmp / "out", progress=False)
    return tmp / "out" / "best"


def timed(fn, texts):
    start = time.perf_counter()
    out = fn(texts)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sentences", type=int, default=2000)
    args = parser.parse_args()
    import transformers

    rows = polarity()
    texts = [t for t, _ in rows[: args.sentences]]
    with tempfile.TemporaryDirectory() as tmp:
        folder = fine_tuned(rows[args.sentences : 2 * args.sentences], Path(tmp))
        ours = Predictor.from_pretrained(folder, batch_size=32)
        padded = Predictor.from_pretrained(folder, batch_size=32, max_seq_length=128, pad_to_max_length=True)
        pipe = transformers.pipeline("text-classification", model=str(folder), device="cpu", batch_size=32, top_k=None)
        runs = {
            "bertforge": lambda xs: [r[0]["label"] for r in ours.predict(xs)],
            "bertforge padded to 128": lambda xs: [r[0]["label"] for r in padded.predict(xs)],
            "transformers pipeline": lambda xs: [r[0]["label"] for r in pipe(xs)],
        }
        for fn in runs.values():  # warm-up
            fn(texts[:64])
        times: dict[str, list[float]] = {name: [] for name in runs}
        labels = {}
        for _ in range(args.repeats):
            for name, fn in runs.items():
                seconds, labels[name] = timed(fn, texts)
                times[name].append(seconds)
    same = all(labels[name] == labels["bertforge"] for name in runs)
    median = {name: statistics.median(t) for name, t in times.items()}
    tokens = sum(len(ids) for ids in ours.tokenizer.ids_batch(texts)) / len(texts) + 2
    print(f"{len(texts)} Pang & Lee sentences ({tokens:.1f} tokens on average), batch 32, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}; labels identical: {same}")  # fmt: skip
    for name, seconds in median.items():
        ratio = seconds / median["bertforge"]
        print(f"  {name:26s} {seconds:7.2f} s  {len(texts) / seconds:7.1f} sentences/s  bertforge is {ratio:.2f}x")
    print(json.dumps({"median_seconds": median, "all_seconds": times, "labels_identical": same}))
    if not same:
        raise SystemExit("labels differ between bertforge and a reference")


if __name__ == "__main__":
    main()
