"""create-pretraining-data (2 workers) against Google's create_pretraining_data.py: wall time and peak memory,
on the same text shaped two ways: many documents, and one document (no blank line at all, like a book or a
sentence-per-line corpus without breaks).

The text is the English Wikipedia sample through extract-wiki; the one-document shape is the same lines with
the blank lines removed. Every run is a child process with the same options (max_seq_length 128,
max_predictions 20, masked_lm_prob 0.15, dupe_factor 5). Google's side runs `create_training_instances`
(read, tokenize, build and mask every instance, in memory) but does not write TFRecords (that needs
TensorFlow); ours also writes its shards, through the command line (`python -m bertforge ...`, start-up
included) and through the Python API (`create_pretraining_data` in a fresh `python -c`), which shows what the
command line adds. Runs alternate; the time is the median of the repeats, each timed alone. Peak memory comes
from one more run of each command: the largest sum of the proportional set sizes (PSS) of its process tree,
sampled every 20 ms (sampling takes CPU time, so it is kept out of the timed runs).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_pretraining_data.py [--repeats 3] [--dupe-factor 5]
        [--text corpus.txt]   # your own text instead (a blank line between documents)
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from bertforge.data.wiki import extract_wiki  # noqa: E402
from bertforge.samples import fetch  # noqa: E402
from tests.reference.google_bert import google_bert_dir  # noqa: E402

GOOGLE = """
import random, sys
sys.path[:0] = {paths!r}
from tests.reference.google_bert import load_google_module
cpd = load_google_module("create_pretraining_data")
tok = load_google_module("tokenization").FullTokenizer({vocab!r}, do_lower_case=True)
inst = cpd.create_training_instances([{text!r}], tok, 128, {dupe}, 0.1, 0.15, 20, random.Random(12345))
print(f"{{len(inst)}} instances")
"""

API = """
from bertforge.data.create import CreateOptions, create_pretraining_data
report = create_pretraining_data(
    [{text!r}], {vocab!r}, {out!r}, CreateOptions(dupe_factor={dupe}), workers={workers}, overwrite=True,
    progress=False,
)
print(report.summary())
"""


def tree_pss(pid: int) -> int:
    """Proportional set size of `pid` and all its descendants: pages shared after fork count once in total,
    so forked workers are not charged for the parent's memory they merely see."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, StopIteration, ProcessLookupError, PermissionError):
            continue
    return total


def measure(cmd: list[str], env: dict[str, str], memory: bool = False) -> tuple[float, int, str]:
    """Wall seconds, peak PSS of the process tree in bytes (when `memory`, else 0), and the instances (and
    documents) it reported."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = 0
    while memory and proc.poll() is None:
        peak = max(peak, tree_pss(proc.pid))
        time.sleep(0.02)
    out, err = proc.communicate()
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{cmd[:3]} failed:\n{err}")
    counts = re.findall(r"\d+ instances|from \d+ documents", out)
    return seconds, peak, " ".join(counts)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


def shapes(text: Path, folder: Path) -> dict[str, Path]:
    """The text as it is (a blank line between articles) and as one document (no blank line)."""
    one = folder / "one-document.txt"
    with open(text, encoding="utf-8") as src, open(one, "w", encoding="utf-8") as dst:
        dst.writelines(line for line in src if line.strip())
    return {"many documents": text, "one document": one}


def commands(text: Path, vocab: str, out: Path, dupe: int, workers: int) -> dict[str, list[str]]:
    python = [sys.executable, "-c"]
    cli = [sys.executable, "-m", "bertforge", "create-pretraining-data", "--input", str(text), "--vocab", vocab]
    cli += ["--output", str(out), "--dupe-factor", str(dupe), "--workers", str(workers), "--overwrite", "--quiet"]
    paths = [str(ROOT / "src"), str(ROOT)]
    return {
        "Google create_pretraining_data.py": [
            *python,
            GOOGLE.format(paths=paths, vocab=vocab, text=str(text), dupe=dupe),
        ],
        f"bertforge CLI, {workers} workers": cli,
        f"bertforge API, {workers} workers": [
            *python,
            API.format(text=str(text), vocab=vocab, out=str(out), dupe=dupe, workers=workers),
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dupe-factor", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--text", type=Path, help="sentence-per-line text (default: the Wikipedia sample)")
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}:{ROOT}")
    vocab = str(fetch("vocab-en"))
    google_bert_dir()  # fetch the reference scripts before timing
    with tempfile.TemporaryDirectory() as tmp:
        text = args.text or extract_wiki(fetch("enwiki-dump"), Path(tmp) / "wiki", progress=False).shards[0]
        content = text.read_text(encoding="utf-8").strip()
        lines, documents = len(re.findall(r"^.*\S", content, re.M)), len(re.split(r"\n\s*\n", content))
        print(
            f"text: {text.stat().st_size / 1e6:.2f} MB, {lines} lines, {documents} documents; "
            f"dupe_factor {args.dupe_factor}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}, "
            f"{os.cpu_count()} CPUs ({cpu_model()})"
        )
        for shape, shaped in shapes(text, Path(tmp)).items():
            runs = commands(shaped, vocab, Path(tmp) / "out", args.dupe_factor, args.workers)
            rows: dict[str, list[tuple[float, int, str]]] = {name: [] for name in runs}
            for _ in range(args.repeats):
                for name, cmd in runs.items():
                    rows[name].append(measure(cmd, env))
            peaks = {name: measure(cmd, env, memory=True)[1] for name, cmd in runs.items()}
            google = statistics.median(r[0] for r in next(iter(rows.values())))
            print(f"\n{shape}: wall time (median of {args.repeats}), peak PSS, ratio to Google's time")
            for name, results in rows.items():
                seconds, peak = statistics.median(r[0] for r in results), peaks[name]
                print(
                    f"  {name:36s} {seconds:6.2f} s  {peak / 2**20:5.0f} MiB  {google / seconds:5.1f}x  "
                    f"[{min(r[0] for r in results):.2f}-{max(r[0] for r in results):.2f} s]  {results[0][2]}"
                )


if __name__ == "__main__":
    main()
