"""`make mutants`: does the suite catch the one-line bugs a developer could make? (tests/MUTANTS.md)

Each mutant in tests/mutants.toml replaces one line of a module (`original`, which must occur exactly once
in the file) by a plausible mistake (`mutated`) and names the tests that guard that code. The repository is
copied to a temporary folder once (sources, tests, configs: subprocesses the tests start import the copy
too); each mutant is written there, its tests run with `-x` and a timeout, and the file is put back. A mutant
is *killed* when its tests fail (or time out), *survives* when they pass. Results are kept in
.cache/mutants.json by the mutant's text and the contents of its module and test files, so a second run only
redoes what changed.

    python scripts/mutants.py [--only ID ...] [--fresh] [--baseline] [--timeout S]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from bertforge.fileio import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
LIST = ROOT / "tests" / "mutants.toml"
RESULTS = ROOT / ".cache" / "mutants.json"
IGNORE = shutil.ignore_patterns(".git", ".venv", ".cache", "__pycache__", "*.egg-info", "*.whl", "build")


def load(path: Path = LIST) -> list[dict]:
    """The mutants, each checked: its id unique, its original line found exactly once in its file."""
    mutants = tomllib.loads(path.read_text(encoding="utf-8"))["mutant"]
    seen = set()
    for m in mutants:
        if m["id"] in seen:
            sys.exit(f"{path}: mutant id {m['id']!r} appears twice")
        seen.add(m["id"])
        count = (ROOT / m["file"]).read_text(encoding="utf-8").count(m["original"])
        if count != 1:
            sys.exit(f"{path}: mutant {m['id']}: its original text occurs {count} times in {m['file']} (need 1)")
    return mutants


def key(m: dict) -> str:
    """Changes when the mutant, its module or its test files change: the kept result is then stale."""
    digest = hashlib.sha256(json.dumps(m, sort_keys=True).encode())
    paths = [ROOT / m["file"]]
    for selection in m["tests"]:  # paths and node ids; options such as "-k" name no file
        path = ROOT / selection.split("::")[0]
        paths += sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.is_file() else []
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def run(m: dict, copy: Path, timeout: float) -> tuple[str, float, str]:
    """(outcome, seconds, last output line) of the mutant's tests with the mutant in place in `copy`."""
    target = copy / m["file"]
    original = target.read_text(encoding="utf-8")
    target.write_text(original.replace(m["original"], m["mutated"]), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=f"{copy / 'src'}:{copy}", PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *m["tests"]]
    started = time.monotonic()
    try:
        done = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
        outcome = "survived" if done.returncode == 0 else "killed"  # 1: tests failed; 2: the mutant broke collection
        last = (done.stdout.strip().splitlines() or [""])[-1]
        if done.returncode > 2:  # 3-5: pytest's own error, a bad selection, no tests collected: not a kill
            outcome, last = "error", (done.stdout + done.stderr).strip()[-300:]
    except subprocess.TimeoutExpired:
        outcome, last = "killed", f"timed out after {timeout:.0f} s"
    finally:
        target.write_text(original, encoding="utf-8")
    return outcome, time.monotonic() - started, last


def baseline(mutants: list[dict], timeout: float) -> bool:
    """Whether every selection of tests passes on the tree as it is (else its mutants' kills mean nothing)."""
    selections = {tuple(m["tests"]): m for m in mutants}
    with tempfile.TemporaryDirectory(prefix="bertforge-mutants-") as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(ROOT, copy, ignore=IGNORE)
        failing = []
        for tests, m in selections.items():
            outcome, seconds, last = run(m | {"mutated": m["original"]}, copy, timeout)
            print(f"baseline {'ok' if outcome == 'survived' else 'FAILS'}: {' '.join(tests)} ({seconds:.1f} s) {last}")
            if outcome != "survived":
                failing.append(tests)
    return not failing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="mutant ids to run (default: all)")
    parser.add_argument("--fresh", action="store_true", help="ignore kept results")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per mutant (default 600)")
    parser.add_argument("--baseline", action="store_true", help="first run each selection of tests unmutated")
    args = parser.parse_args()
    mutants = [m for m in load() if not args.only or m["id"] in args.only]
    if args.baseline and not baseline(mutants, args.timeout):
        return 1
    kept = {} if args.fresh or not RESULTS.exists() else json.loads(RESULTS.read_text())
    with tempfile.TemporaryDirectory(prefix="bertforge-mutants-") as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(ROOT, copy, ignore=IGNORE)
        for i, m in enumerate(mutants, 1):
            k = key(m)
            if kept.get(m["id"], {}).get("key") != k:
                outcome, seconds, last = run(m, copy, args.timeout)
                kept[m["id"]] = {"key": k, "outcome": outcome, "seconds": round(seconds, 1), "last": last}
                RESULTS.parent.mkdir(exist_ok=True)
                atomic_write_text(RESULTS, json.dumps(kept, indent=1))
            r = kept[m["id"]]
            print(f"[{i}/{len(mutants)}] {r['outcome']:8} {m['id']} ({r['seconds']} s) {r['last']}", flush=True)
    outcomes = [kept[m["id"]]["outcome"] for m in mutants]
    killed = outcomes.count("killed")
    print(f"\n{killed} of {len(mutants)} mutants killed ({killed / max(len(mutants), 1):.0%})")
    for m in mutants:
        if kept[m["id"]]["outcome"] != "killed":
            print(f"  {kept[m['id']]['outcome']}: {m['id']} — {m['file']}: {m.get('note', m['mutated'].strip())}")
    return 0 if "error" not in outcomes else 1


if __name__ == "__main__":
    sys.exit(main())
