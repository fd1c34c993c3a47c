"""create-pretraining-data (2 workers) against Google's create_pretraining_data.py: wall time and peak memory.

Both run as child processes on the same text (the English Wikipedia sample through extract-wiki) with the
same options (max_seq_length 128, max_predictions 20, masked_lm_prob 0.15, dupe_factor 5). Google's side
runs `create_training_instances` (read, tokenize, build and mask every instance, in memory) but does not
write TFRecords (that needs TensorFlow); ours also writes its shards. Peak memory is the largest sum of the
proportional set sizes (PSS) of the process tree, sampled every 20 ms.

    .venv/bin/python benchmarks/bench_pretraining_data.py [--repeats 3] [--dupe-factor 5]
"""

from __future__ import annotations

import argparse
import os
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
print(len(inst))
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


def measure(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_pss(proc.pid))
        time.sleep(0.02)
    seconds = time.perf_counter() - start
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{cmd[:3]} failed:\n{err}")
    return seconds, peak, out.strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dupe-factor", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}:{ROOT}")
    vocab = str(fetch("vocab-en"))
    google_bert_dir()  # fetch the reference scripts before timing
    with tempfile.TemporaryDirectory() as tmp:
        text = extract_wiki(fetch("enwiki-dump"), Path(tmp) / "wiki", progress=False).shards[0]
        print(f"text: {text.stat().st_size / 1e6:.2f} MB of English Wikipedia, dupe_factor {args.dupe_factor}")
        google_cmd = [
            sys.executable,
            "-c",
            GOOGLE.format(paths=[str(ROOT / "src"), str(ROOT)], vocab=vocab, text=str(text), dupe=args.dupe_factor),
        ]
        ours_cmd = [
            sys.executable,
            "-m",
            "bertforge",
            "create-pretraining-data",
            "--input",
            str(text),
            "--vocab",
            vocab,
            "--output",
            str(Path(tmp) / "out"),
            "--dupe-factor",
            str(args.dupe_factor),
            "--workers",
            str(args.workers),
            "--overwrite",
            "--quiet",
        ]
        rows = {"google": [], "ours": []}
        for _ in range(args.repeats):
            rows["google"].append(measure(google_cmd, env))
            rows["ours"].append(measure(ours_cmd, env))
    g_time = statistics.median(r[0] for r in rows["google"])
    o_time = statistics.median(r[0] for r in rows["ours"])
    g_mem = max(r[1] for r in rows["google"])
    o_mem = max(r[1] for r in rows["ours"])
    print(
        f"google: {g_time:.2f} s (median of {args.repeats}), peak {g_mem / 2**20:.0f} MiB, "
        f"{rows['google'][0][2]} instances"
    )
    print(
        f"ours ({args.workers} workers): {o_time:.2f} s (median of {args.repeats}), peak {o_mem / 2**20:.0f} MiB; "
        f"{rows['ours'][0][2]}"
    )
    print(f"speed-up: {g_time / o_time:.1f}x   memory: {o_mem / g_mem:.2f}x of Google's")


if __name__ == "__main__":
    main()
