"""Lines/s of bertforge's FullTokenizer against Google's and Hugging Face's slow Python BERT tokenizers.

Same text, same process, median of --repeats runs each. Run from the repo root:

    OMP_NUM_THREADS=2 RAYON_NUM_THREADS=2 .venv/bin/python benchmarks/bench_tokenizer.py
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "src"):  # tests.reference.google_bert and bertforge without installing
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bertforge.samples import fetch  # noqa: E402
from bertforge.tokenization import FullTokenizer  # noqa: E402
from tests.reference.google_bert import load_google_module  # noqa: E402


def hf_slow_tokenizer(vocab_file: Path):
    """transformers' pure-Python BertTokenizer (named BertTokenizerLegacy since transformers 5)."""
    try:
        from transformers.models.bert.tokenization_bert_legacy import (
            BertTokenizerLegacy as Slow,
        )
    except ImportError:
        from transformers import BertTokenizer as Slow
    return Slow(vocab_file=str(vocab_file), do_lower_case=True)


def corpora(lines: int) -> dict[str, tuple[str, list[str]]]:
    """name -> (vocab sample, texts)."""
    with open(fetch("peoples-daily"), encoding="utf-8") as f:  # strip POS tags and the spaces between words
        daily = [re.sub(r" +", "", re.sub(r"/[A-Za-z]+", "", line)).strip() for line in f]
    with open(fetch("lee-background"), encoding="utf-8") as f:
        lee = [line.strip() for line in f]
    return {
        "peoples-daily": ("vocab-zh", [t for t in daily if t][:lines]),
        "lee-background": ("vocab-en", [t for t in lee if t][:lines]),
    }


def median_rate(run: Callable[[], object], n_lines: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return n_lines / statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2000, help="lines per corpus (lee-background has 300 docs)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    google = load_google_module("tokenization")
    print(
        f"{'corpus':16} {'lines':>6} {'chars/line':>10} {'ours batch':>11} {'ours 1-by-1':>11} "
        f"{'google':>8} {'hf slow':>8} {'ours/google':>11} {'ours/hf':>8}"
    )
    for name, (vocab, texts) in corpora(args.lines).items():
        path = fetch(vocab)
        ours, hf = FullTokenizer(path), hf_slow_tokenizer(path)
        theirs = google.FullTokenizer(str(path), do_lower_case=True)
        ours.tokenize_batch(texts[:10])  # warm-up: builds the Unicode tables once per process
        mismatches = sum(a != theirs.tokenize(t) for a, t in zip(ours.tokenize_batch(texts), texts))
        rates = {
            "ours batch": median_rate(lambda: ours.tokenize_batch(texts), len(texts), args.repeats),
            "ours 1-by-1": median_rate(lambda: [ours.tokenize(t) for t in texts], len(texts), args.repeats),
            "google": median_rate(lambda: [theirs.tokenize(t) for t in texts], len(texts), args.repeats),
            "hf slow": median_rate(lambda: [hf.tokenize(t) for t in texts], len(texts), args.repeats),
        }
        chars = sum(map(len, texts)) / len(texts)
        print(
            f"{name:16} {len(texts):6d} {chars:10.0f} {rates['ours batch']:11.0f} {rates['ours 1-by-1']:11.0f} "
            f"{rates['google']:8.0f} {rates['hf slow']:8.0f} {rates['ours batch'] / rates['google']:10.1f}x "
            f"{rates['ours batch'] / rates['hf slow']:7.1f}x"
        )
        if mismatches:
            print(f"  WARNING: {mismatches} texts tokenized differently from Google")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
