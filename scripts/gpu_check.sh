#!/usr/bin/env bash
# The GPU check (issue 12, item 5): everything bertforge does only on CUDA, in one run of under eight minutes
# on one GPU. Results (logs, JSON, summary.txt) go to $OUT, or to gpu_check_results/ when OUT is unset.
#
#   1. the test suite's cuda-marked tests (autocast bf16/fp16, the fp16 overflow skip through the loop, SDPA's
#      CUDA kernels in training, the CRF on CUDA); a CUDA-less machine fails here instead of skipping;
#   2. a tiny pretraining run in bf16 and in fp16, SIGKILLed after a checkpoint and continued with --resume,
#      against the same run uninterrupted (bit-identical on CPU; on CUDA the difference is reported);
#   3. an fp16 run with a loss scale of 2^40: steps skipped and the scale halved, through the CLI;
#   4. BERT-base and BERT-large pretraining throughput, bf16, lengths 128 and 512, largest batch that fits,
#      with TFLOP/s (scripts/gpu_check.py);
#   5. fine-tuning examples/s: BERT-base, bf16, a synthetic 20,000-sentence classification set.
#
# It runs bertforge from src/ on the machine's own python3 (PYTHON=... to choose another), without
# `make setup`: the machine's CUDA build of PyTorch is used as it is. pyproject pins torch 2.13, the version
# the CPU suite is tested on; a GPU machine may hold another (2.11 when last seen). bertforge uses no torch
# API newer than 2.4 (torch.amp.is_autocast_available; the private _fused_adamw_ and
# _amp_foreach_non_finite_check_and_unscale_ keep their 2.x signatures), so it is run as it is, and the
# version is recorded in env.json; the pin is not relaxed until a run here has passed. Pure-Python packages the
# machine may lack (omegaconf, pytest, pytorch-crf, ...) travel as wheels in .cache/gpu_check_wheels/, put
# there by scripts/gpu_check_wheels.sh on a machine that can reach the package index; only the ones that do
# not import are unpacked. NCCL is not exercised: one GPU cannot host two NCCL ranks.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
OUT=${OUT:-$ROOT/gpu_check_results}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
FAILED=0

say() { echo "$*" | tee -a "$SUMMARY"; }
check() {  # check NAME COMMAND...: run, log to $OUT/NAME.log, record pass/fail and seconds
    local name=$1 start=$SECONDS
    shift
    if "$@" >"$OUT/$name.log" 2>&1; then
        say "PASS $name ($((SECONDS - start)) s)"
    else
        say "FAIL $name ($((SECONDS - start)) s): see $name.log"
        FAILED=1
    fi
}

# --- dependencies: the machine's own packages first; wheels only for what does not import
DEPS=$WORK/deps
for pair in omegaconf:omegaconf tqdm:tqdm pytest:pytest pluggy:pluggy iniconfig:iniconfig \
    packaging:packaging pygments:pygments torchcrf:pytorch_crf; do
    module=${pair%%:*} dist=${pair#*:}
    "$PY" -c "import $module" 2>/dev/null && continue
    wheel=$(ls "$ROOT"/.cache/gpu_check_wheels/"$dist"-*.whl 2>/dev/null | head -1)
    if [ -z "$wheel" ]; then
        say "FAIL dependencies: $module does not import and no $dist wheel (run scripts/gpu_check_wheels.sh first)"
        exit 2
    fi
    "$PY" -m zipfile -e "$wheel" "$DEPS"
    say "note: $module from $(basename "$wheel")"
done
export PYTHONPATH=$ROOT/src:$ROOT:$DEPS
export PYTHONDONTWRITEBYTECODE=1 BERTFORGE_CACHE=$WORK/cache BERTFORGE_SAMPLES=$WORK/samples
BF=("$PY" -m bertforge)

if ! "$PY" scripts/gpu_check.py env "$OUT" 2>&1 | tee -a "$SUMMARY"; then
    say "FAIL env: no CUDA device, or bertforge does not import on this python (above)"
    exit 2
fi

# --- 1. the cuda-marked tests (only their files are collected: no test-only packages beyond pytest needed)
mapfile -t CUDA_TESTS < <(grep -rlE "mark\.cuda\b" tests --include='test_*.py')
check cuda_tests env BERTFORGE_REQUIRE_CUDA=1 "$PY" -m pytest -p no:cacheprovider -q -m cuda "${CUDA_TESTS[@]}"
tail -n 3 "$OUT/cuda_tests.log" | tee -a "$SUMMARY"

# --- 2. tiny pretraining, bf16 and fp16: uninterrupted, then SIGKILLed after step 40 and resumed
DATA=tests/fixtures/tfrecord/google_en.tfrecord  # Google-format TFRecord, 303 instances
pretrain() {  # pretrain OUTPUT PRECISION [ARGS...]
    local output=$1 precision=$2
    shift 2
    "${BF[@]}" pretrain --config configs/pretrain/tiny.yaml --data "$DATA" --output "$output" --device cuda \
        --precision "$precision" --train-steps 100 --batch-size 8 --save-checkpoint-steps 20 --quiet "$@"
}
kill_and_resume() {  # kill_and_resume PRECISION
    local run=$WORK/$1 last=step-00000100
    pretrain "$run/full" "$1" || return 1
    pretrain "$run/cut" "$1" &
    local pid=$!
    until [ -e "$run/cut/checkpoints/step-00000040" ] || ! kill -0 $pid 2>/dev/null; do sleep 0.2; done
    kill -KILL $pid
    wait $pid
    echo "killed at $(ls "$run/cut/checkpoints")"
    pretrain "$run/cut" "$1" --resume || return 1
    echo "max |weight difference| resumed vs uninterrupted at $last (0: bit-identical):"
    "$PY" scripts/gpu_check.py compare "$run/full/checkpoints/$last" "$run/cut/checkpoints/$last"
    tail -n 1 "$run/cut/metrics.jsonl"
}
for precision in bf16 fp16; do
    check "resume_$precision" kill_and_resume $precision
    tail -n 3 "$OUT/resume_$precision.log" | head -n 2 | tee -a "$SUMMARY"
done

# --- 3. fp16 forced to overflow: every step skipped, the scale halved each time
overflow() {
    pretrain "$WORK/overflow" fp16 --train-steps 3 --train.log_steps 1 --loss_scale.init_scale 1099511627776 \
        || return 1
    cat "$WORK/overflow/metrics.jsonl"
    "$PY" - "$WORK/overflow/metrics.jsonl" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
got = [(r["skipped_steps"], r["loss_scale"]) for r in rows]
assert got == [(1, 2.0**39), (2, 2.0**38), (3, 2.0**37)], got
print("overflow: 3 steps skipped, scale 2^40 -> 2^37")
EOF
}
check fp16_overflow overflow
tail -n 1 "$OUT/fp16_overflow.log" | tee -a "$SUMMARY"

# --- 4. pretraining throughput
check throughput "$PY" scripts/gpu_check.py throughput "$OUT"
grep '^{' "$OUT/throughput.log" | tee -a "$SUMMARY"

# --- 5. fine-tuning speed: BERT-base, bf16, batch 32, one epoch, length-grouped dynamic padding
finetune() {
    "$PY" scripts/gpu_check.py finetune-data "$WORK/ft" || return 1
    "${BF[@]}" finetune classification --train "$WORK/ft/train.csv" --dev "$WORK/ft/dev.csv" \
        --init "$WORK/ft/init" --output "$WORK/ft/out" --epochs 1 --batch-size 32 --max-seq-length 128 \
        --device cuda --train.precision bf16 --train.log_steps 50 --task.text_a text --task.label label --quiet \
        || return 1
    "$PY" scripts/gpu_check.py finetune-speed "$WORK/ft/out" 32
}
check finetune finetune
tail -n 1 "$OUT/finetune.log" | tee -a "$SUMMARY"

say "$([ $FAILED = 0 ] && echo "ALL PASSED" || echo "SOME CHECKS FAILED") in $SECONDS s"
exit $FAILED
