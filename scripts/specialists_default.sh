#!/usr/bin/env bash
# The specialist baselines of the default model at equal compute, on a 2-core CPU (after scripts/train_default.sh).
#
#   bash scripts/specialists_default.sh [STOP]     # STOP: steps of each run (default 250; 1000 ends the schedule)
#   SCHEDULE=3000 bash scripts/specialists_default.sh 3000   # the shipped model's length, in runs/specialists_3000
#
# Every run, the any-to-any model included, follows the same 1000-step schedule of configs/fourm_world64.py (same
# data order, batch 64, warmup, learning rate) and pauses at STOP (train.stop_at): one 4M model over all ten
# modalities and five single-task specialists (RGB tokens -> depth, normals, segmentation, boxes, caption), each
# with the same architecture and the same number of steps and samples. Then one table scores them side by side on
# the held-out world (runs/specialists/eval/results.md). Two runs at a time, one thread each: ~1 h in all at
# STOP=250; STOP=1000 (the whole schedule, the README's table) ~2 h, each run resuming where it stopped.
# (The shipped model's own first 250 steps are that same 4M run: it was resumed from there to 3000 steps.)
set -euo pipefail
cd "$(dirname "$0")/.."
STOP=${1:-250}
SCHEDULE=${SCHEDULE:-1000}
D=runs/default
S=runs/specialists
[ "$SCHEDULE" = 1000 ] || S=runs/specialists_$SCHEDULE
export OMP_NUM_THREADS=1 POLYMODAL_TOKENS=data/world64_tokens
mkdir -p "$S"
run() {  # run NAME RECIPE [env]
  polymodal train "$2" data.val_path=data/world64_val_tokens train.steps="$SCHEDULE" train.stop_at="$STOP" \
      train.eval_every=0 train.save_every=50 train.progress=false "train.out_dir=$S/$1" > "$S/$1.log" 2>&1
}
(run fourm configs/fourm_world64.py; POLYMODAL_SPECIALIST=normal run normal configs/specialist_world64.py
 POLYMODAL_SPECIALIST=det run det configs/specialist_world64.py) &
a=$!
(POLYMODAL_SPECIALIST=depth run depth configs/specialist_world64.py
 POLYMODAL_SPECIALIST=semseg run semseg configs/specialist_world64.py
 POLYMODAL_SPECIALIST=caption run caption configs/specialist_world64.py) &
b=$!
# A failed run stops the script (a plain `wait` would go on to score whatever release was there before).
wait $a || { echo "a run failed: see $S/*.log" >&2; wait $b || true; exit 1; }
wait $b || { echo "a run failed: see $S/*.log" >&2; exit 1; }
TOK="$D/tok_rgb/release $D/tok_depth/release $D/tok_normal/release $D/tok_semseg/release $D/tok_edges/release"
TOK="$TOK $D/tok_minilm_global/release"
CMP=()
for name in fourm depth normal semseg det caption; do
  polymodal bundle --model "$S/$name/release" --tokenizer $TOK --text-tokenizer "$D/tok_text" --out "$S/${name}_bundle"
  [ "$name" = fourm ] || CMP+=(--compare "$name=$S/${name}_bundle")
done
polymodal eval --model "$S/fourm_bundle" "${CMP[@]}" --data data/world64_val --n 200 \
    --tasks depth,normal,semseg,det,caption --out "$S/eval"
