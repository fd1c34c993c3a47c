#!/usr/bin/env bash
# Wheels of the pure-Python packages scripts/gpu_check.sh may not find on a GPU machine that cannot reach a
# package index, at the versions tested here (read from PYTHON, default .venv/bin/python), into
# .cache/gpu_check_wheels/ (git-ignored; send it along with the working tree).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DEST=.cache/gpu_check_wheels
mkdir -p "$DEST"
mapfile -t pins < <("$PY" - <<'PY'
from importlib.metadata import version
for dist in ("omegaconf", "tqdm", "pytest", "pluggy", "iniconfig", "packaging", "pygments", "pytorch-crf"):
    print(f"{dist}=={version(dist)}")
PY
)
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: \
    --platform any --python-version 3.11 --implementation py --dest "$DEST" "${pins[@]}"
ls "$DEST"
