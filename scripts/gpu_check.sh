#!/usr/bin/env bash
# GPU check: what the test suite cannot check without a GPU, in one short run on a borrowed one.
#
#   bash scripts/gpu_check.sh                      # CUDA: NCCL, the training device on the GPU
#   GPU_CHECK_SMOKE=1 bash scripts/gpu_check.sh    # anywhere (also when torch sees no CUDA): the same steps with
#                                                  # gloo on the CPU at tiny shapes; tests/test_gpu_check.py runs it
#
# Environment: GPU_CHECK_OUT (output folder; default a new temporary one), GPU_CHECK_ATOL (largest difference
# allowed between resumed and uninterrupted weights on CUDA; default 1e-4, unmeasured: the smoke mode requires
# them equal), PYTHON (default python).
#
# Sections, each opened by "== <name>" and closed by "PASS <name>"; the first failure prints "FAIL <name>: <why>"
# with the end of its log and exits 1. Later issues add sections (issue 18: speed) in the same form.
#   distributed  torchrun with one process (a process group of world size 1: NCCL on CUDA, gloo in smoke mode),
#                FSDP2, the tiny recipe: a run of 8 steps; a run stopped at its step-4 checkpoint and rerun;
#                the rerun continues from step 4 (it keeps the records of steps 2 and 4, then logs 6 and 8) and
#                ends with the uninterrupted run's weights. On CUDA the logs must show NCCL at work (NCCL_DEBUG=INFO).
#   train_speed  scripts/gpu_speed.py train under torchrun (one process, FSDP2): the training step at 4M-21 B
#                shapes (dim 768, 12+12 layers, the 4M-21 domains, batch 64 x (128 + 128) masked tokens), bf16,
#                eager and torch.compile'd: step time, tokens/s, MFU against the card's nominal bf16 peak (by its
#                name; H100 SXM 989 TFLOP/s) and against a bf16 matmul measured on the card.
#   generation_speed  scripts/gpu_speed.py generate: MaskGIT RGB -> tok_depth@224 (8 steps, with and without
#                guidance 2) and greedy caption decoding (64 tokens) at batch 1, 8, 32: images/s, tokens/s.
# The speed figures also go to $OUT/speed/speed.json (one file to paste from). On CUDA each run has a timeout
# (60 s per distributed run, 210 s for train_speed, 90 s for generation_speed), so the whole check ends within 8
# minutes on one H100 (not yet run on one: no GPU in the session that wrote it). Smoke mode: tiny shapes.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
OUT=${GPU_CHECK_OUT:-$(mktemp -d -t gpu_check.XXXXXX)}
mkdir -p "$OUT"
if [ "${GPU_CHECK_SMOKE:-0}" = 1 ] || ! "$PYTHON" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'
then
    SMOKE=1 DEVICE=cpu ATOL=0
    T_RUN=300 T_TRAIN=300 T_GEN=300  # a shared CPU: generous limits (the speed sections take ~25 s each at load 7)
else
    SMOKE=0 DEVICE=cuda ATOL=${GPU_CHECK_ATOL:-1e-4}
    T_RUN=60 T_TRAIN=210 T_GEN=90  # 3 x 60 + 210 + 90 = 8 minutes at most
fi
echo "gpu_check: device $DEVICE (smoke $SMOKE), output $OUT"

CURRENT=""
section() { CURRENT=$1; echo "== $1"; }
pass() { echo "PASS $CURRENT"; }
fail() {  # fail <why> [log]
    echo "FAIL $CURRENT: $1"
    [ -n "${2:-}" ] && tail -n 40 "$2"
    exit 1
}

# ------------------------------------------------------------------------------------------------ distributed
section distributed
D=$OUT/distributed
rm -rf "$D" && mkdir -p "$D"
train() {  # train <run folder> <log> [overrides...]: one process under torchrun, FSDP2, the tiny recipe
    local run=$1 log=$2
    shift 2
    NCCL_DEBUG=INFO OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} timeout "$T_RUN" "$PYTHON" \
        -m torch.distributed.run \
        --standalone --nproc_per_node 1 -m polymodal train configs/fourm_tiny_cpu.py "train.out_dir=$run" \
        "train.device=$DEVICE" train.parallel=fsdp train.steps=8 train.save_every=4 train.log_every=2 \
        train.eval_every=4 train.batch_size=8 data.mask_chunk=2 data.val_samples=16 train.progress=false \
        train.tensorboard=false "$@" >"$log" 2>&1
}
train "$D/straight" "$D/straight.log" || fail "the uninterrupted run failed" "$D/straight.log"
train "$D/resumed" "$D/stopped.log" train.stop_at=4 || fail "the run to step 4 failed" "$D/stopped.log"
[ -f "$D/resumed/checkpoints/step_00000004/state.json" ] || fail "no checkpoint at step 4" "$D/stopped.log"
[ ! -e "$D/resumed/checkpoints/step_00000008" ] || fail "the run meant to stop at step 4 ran on" "$D/stopped.log"
cp "$D/resumed/metrics.jsonl" "$D/stopped_metrics.jsonl"
train "$D/resumed" "$D/resumed.log" || fail "the rerun failed" "$D/resumed.log"
if [ "$SMOKE" = 0 ]; then
    grep -q "NCCL INFO" "$D/straight.log" || fail "no NCCL in the log: the collectives did not run on NCCL" \
        "$D/straight.log"
fi
"$PYTHON" - "$D" "$ATOL" <<'PY' || fail "the resumed run differs from the uninterrupted one" "$D/resumed.log"
import sys
from pathlib import Path

from safetensors.torch import load_file

from polymodal.train.metrics import read_metrics

d, atol = Path(sys.argv[1]), float(sys.argv[2])
records = read_metrics(d / "resumed" / "metrics.jsonl")
steps = [r["step"] for r in records if "train/loss" in r]
assert steps == [2, 4, 6, 8], f"logged steps {steps}, expected [2, 4, 6, 8]"
# Continued, not started over: the records to step 4 are the stopped run's own (a new start logs new timings).
assert [r for r in records if r["step"] <= 4] == read_metrics(d / "stopped_metrics.jsonl"), "the rerun started over"
a, b = (load_file(str(d / run / "release" / "model.safetensors")) for run in ("straight", "resumed"))
assert set(a) == set(b), "the two releases hold different tensors"
diff = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
print(f"resumed vs uninterrupted: largest weight difference {diff:.3g} (allowed {atol:g})")
assert diff <= atol, f"largest weight difference {diff:.3g} > {atol:g}"
PY
pass

# ------------------------------------------------------------------------------------------------ speed
S=$OUT/speed
mkdir -p "$S"
rm -f "$S/speed.json"
SPEED_ARGS=()
[ "$SMOKE" = 1 ] && SPEED_ARGS=(--smoke)
speed() {  # speed <train|generate> <seconds> <log> <what the log must show>: run it, show its figures, check
    local what=$1 limit=$2 log=$3 want=$4 rc=0 launcher=()
    [ "$what" = train ] && launcher=(-m torch.distributed.run --standalone --nproc_per_node 1)
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} timeout "$limit" "$PYTHON" "${launcher[@]}" scripts/gpu_speed.py "$what" \
        "$S" "${SPEED_ARGS[@]}" >"$log" 2>&1 || rc=$?
    grep -E "^(device:|model:|train |generate )" "$log" || true
    [ "$rc" = 124 ] && fail "timed out after $limit s (figures so far in $S/$what.json)" "$log"
    [ "$rc" = 0 ] || fail "exit code $rc" "$log"
    grep -qE "$want" "$log" || fail "the log has no line matching '$want'" "$log"
}

section train_speed
speed train "$T_TRAIN" "$S/train.log" "^train compiled: step [0-9.]+ ms, [0-9]+ tokens/s"
pass

section generation_speed
speed generate "$T_GEN" "$S/generate.log" "^generate caption batch [0-9]+: .* tokens/s"
pass

echo "gpu_check: figures in $S/speed.json"
echo "gpu_check: all sections passed (device $DEVICE, smoke $SMOKE)"
