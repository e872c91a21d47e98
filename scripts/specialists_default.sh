#!/usr/bin/env bash
# The specialist baselines of the default model at equal compute, on a 2-core CPU.
#
#   bash scripts/specialists_default.sh [STOP]     # STOP: steps of each run (default 250; 1000 ends the schedule)
#   SCHEDULE=3000 FOURM=shipped bash scripts/specialists_default.sh 3000   # beside the shipped model itself
#   TASKS="semseg caption" ...                      # only these specialists (default: all five)
#
# Needs the world's tokens: scripts/train_default.sh, or scripts/world_tokens.sh (the shipped tokenizers, ~30 min).
# Every run follows the same SCHEDULE-step schedule of configs/fourm_world64.py (default 1000; same data order,
# batch 64, warmup, learning rate) and pauses at STOP (train.stop_at): one 4M model over all ten modalities and
# five single-task specialists (RGB tokens -> depth, normals, segmentation, boxes, caption), each with the same
# architecture and the same number of steps and samples. FOURM=shipped trains no 4M model and scores the shipped
# one (3000 steps of that recipe; its first 250 followed the 1000-step schedule) instead. Then one table scores
# them side by side on 200 held-out scenes with 95% intervals and paired gaps ($S/eval/results.md). Two runs at a
# time, one thread each: ~1 h in all at STOP=250; STOP=1000 ~2 h; every run resumes where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
STOP=${1:-250}
SCHEDULE=${SCHEDULE:-1000}
TASKS=${TASKS:-"depth normal semseg det caption"}
FOURM=${FOURM:-train}
D=runs/default
S=runs/specialists
[ "$SCHEDULE" = 1000 ] || S=runs/specialists_$SCHEDULE
export OMP_NUM_THREADS=1 POLYMODAL_TOKENS=data/world64_tokens
mkdir -p "$S"
run() {  # run NAME RECIPE
  polymodal train "$2" data.val_path=data/world64_val_tokens train.steps="$SCHEDULE" train.stop_at="$STOP" \
      train.eval_every=0 train.save_every=50 train.progress=false "train.out_dir=$S/$1" > "$S/$1.log" 2>&1
}
spec() { POLYMODAL_SPECIALIST=$1 run "$1" configs/specialist_world64.py; }
# Two lanes: the 4M run (when trained) heads the first; specialists alternate between them.
lane_a=() lane_b=()
[ "$FOURM" = shipped ] || lane_a+=(fourm)
for t in $TASKS; do
  if [ ${#lane_a[@]} -le ${#lane_b[@]} ]; then lane_a+=("$t"); else lane_b+=("$t"); fi
done
go() { for name in "$@"; do if [ "$name" = fourm ]; then run fourm configs/fourm_world64.py; else spec "$name"; fi; done; }
(go "${lane_a[@]}") & a=$!
(go "${lane_b[@]}") & b=$!
# A failed run stops the script (a plain `wait` would go on to score whatever release was there before).
wait $a || { echo "a run failed: see $S/*.log" >&2; wait $b || true; exit 1; }
wait $b || { echo "a run failed: see $S/*.log" >&2; exit 1; }
# Bundles take the tokenizers the tokens were made with: the trained ones when scripts/train_default.sh made them,
# else the shipped ones (scripts/world_tokens.sh).
if [ -f "$D/tok_rgb/release/model.safetensors" ]; then
  TOK="$D/tok_rgb/release $D/tok_depth/release $D/tok_normal/release $D/tok_semseg/release $D/tok_edges/release"
  TOK="$TOK $D/tok_minilm_global/release"; TEXT="$D/tok_text"
else
  W=src/polymodal/weights/default/tokenizers
  TOK="$W/tok_rgb_64 $W/tok_depth_64 $W/tok_normal_64 $W/tok_semseg_64 $W/tok_canny_edge_64 $W/tok_minilm_global"
  TEXT="$W/text"
fi
CMP=() EVAL_TASKS=()
for name in $TASKS; do
  polymodal bundle --model "$S/$name/release" --tokenizer $TOK --text-tokenizer "$TEXT" --out "$S/${name}_bundle"
  CMP+=(--compare "$name=$S/${name}_bundle"); EVAL_TASKS+=("$name")
done
MODEL=src/polymodal/weights/default
if [ "$FOURM" != shipped ]; then
  polymodal bundle --model "$S/fourm/release" --tokenizer $TOK --text-tokenizer "$TEXT" --out "$S/fourm_bundle"
  MODEL="$S/fourm_bundle"
fi
polymodal eval --model "$MODEL" "${CMP[@]}" --data data/world64_val --n 200 --bootstrap 500 \
    --tasks "$(IFS=,; echo "${EVAL_TASKS[*]}")" --out "$S/eval"
