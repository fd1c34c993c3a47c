"""scripts/gpu_check.sh is ready to run, and no CUDA-only test can pass unnoticed on a machine without CUDA."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"


def test_scripts_parse():
    for script in ("gpu_check.sh", "gpu_check_wheels.sh"):
        proc = subprocess.run(["bash", "-n", str(SCRIPTS / script)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def test_every_wheel_the_check_may_unpack_is_downloaded():
    check = (SCRIPTS / "gpu_check.sh").read_text()
    pairs = re.search(r"for pair in (.*?); do", check, re.DOTALL).group(1).split()
    dists = {pair.split(":")[1].replace("_", "-").lower() for pair in pairs if pair != "\\"}
    downloaded = re.search(r"for dist in \((.*?)\)", (SCRIPTS / "gpu_check_wheels.sh").read_text()).group(1)
    assert dists == set(re.findall(r'"([^"]+)"', downloaded))


def test_cuda_only_tests_use_the_marker():
    """A CUDA test must be marked `cuda` (reported when skipped), not skipped by its own `skipif`."""
    own = {Path(__file__).name, "conftest.py"}
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "tests").rglob("*.py")
        if path.name not in own and "cuda.is_available" in path.read_text(encoding="utf-8")
    ]
    assert not offenders


def test_without_cuda_every_cuda_test_is_listed_in_the_summary():
    files = [str(p) for p in (ROOT / "tests").rglob("test_*.py") if re.search(r"mark\.cuda\b", p.read_text())]
    assert len(files) >= 2
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", BERTFORGE_REQUIRE_CUDA="")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", "-m", "cuda", *files],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    skipped = set(re.findall(r"^(tests/\S+::\S+) SKIPPED", proc.stdout, re.MULTILINE))
    assert len(skipped) >= 5
    section = proc.stdout.split("CUDA-ONLY TESTS NOT RUN")[1]
    listed = set(re.findall(r"^(tests/\S+::\S+)$", section, re.MULTILINE))
    assert listed == skipped
