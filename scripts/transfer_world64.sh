#!/usr/bin/env bash
# Transfer measured on the built-in world: a new output modality (SAM edges) learned from the shipped default
# model by full fine-tuning and by LoRA, against a specialist from scratch, at equal steps; then what the
# fine-tuned models forgot of the default model's tasks. Every stage resumes when rerun (world shards, tokenizer
# and 4M runs checkpoint; curve rows already written are kept).
#
#   bash scripts/transfer_world64.sh [STEPS] [STOP_AT]   # STEPS: schedule length (200); STOP_AT: pause there
#                                                         # (0: run to STEPS); rerun with a larger one to go on
#
# Times and figures measured: docs/transfer.md (README, "Fine-tune", in short).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-200}
STOP=${2:-0}
N_TRAIN=${N_TRAIN:-6000}
N_EVAL=${N_EVAL:-100}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
W=src/polymodal/weights/default/tokenizers
TOK=runs/tok_sam_edge_world64
L=runs/transfer/logs
mkdir -p "$L"
t() { local name=$1; shift; local t0=$SECONDS; "$@"; echo "$name: $((SECONDS - t0)) s" | tee -a "$L/times.txt"; }

# 1. The world (train seed 0, held-out seed 1) and the new modality's tokenizer (the Canny recipe on SAM edges).
t synth_val polymodal data synth --out data/world64_val --n 256 --res 64 --seed 1 --shard-size 256 --text-embeddings
t synth_train polymodal data synth --out data/world64 --n "$N_TRAIN" --res 64 --workers 2 --text-embeddings
[ -f "$TOK/release/model.safetensors" ] || t tokenizer polymodal tokenizer train \
    configs/tokenizer_sam_edge_world64.py "train.out_dir=$TOK" train.progress=false

# 2. Tokens: the shipped tokenizers for the default model's modalities, the new one for sam_edge.
T="rgb=$W/tok_rgb_64 depth=$W/tok_depth_64 normal=$W/tok_normal_64 semseg=$W/tok_semseg_64"
T="$T canny_edge=$W/tok_canny_edge_64 minilm_global=$W/tok_minilm_global sam_edge=$TOK/release"
T="$T caption=$W/text det=$W/text metadata=$W/text color_palette=$W/text"
t tokens_val polymodal data tokenize data/world64_val --tokenizer $T --out data/world64_sam_val_tokens --quiet
# The first 3000 scenes (6 shards): 200 steps of 16 see 3200 samples, about one pass.
t tokens_train polymodal data tokenize "data/world64/shard-00000{0..5}.tar" --tokenizer $T \
    --out data/world64_sam_tokens --workers 2 --quiet

# 3. Three runs, the same steps and batches, side by side (one thread each).
for kind in full lora scratch; do
  POLYMODAL_TRANSFER=$kind POLYMODAL_TOKENS=data/world64_sam_tokens t "train_$kind" polymodal train \
      configs/transfer_world64.py train.steps="$STEPS" train.stop_at="$STOP" train.progress=false \
      > "$L/train_$kind.log" 2>&1 &
done
wait
# 3b. The fine-tuning recipe itself (configs/finetune_world64.py: 4M-21's mixture over every domain, the new one
#     an output), at the same steps, batch and peak learning rate: fine-tuning with the old tasks replayed.
POLYMODAL_TOKENS=data/world64_sam_tokens t train_full_mix polymodal train configs/finetune_world64.py \
    train.steps="$STEPS" train.stop_at="$STOP" train.batch_size=16 optim.base_lr=0.032 \
    train.out_dir=runs/transfer/full_mix train.save_every=25 train.keep_last=20 train.eval_every=0 \
    train.progress=false > "$L/train_full_mix.log" 2>&1

# 4. The new modality's metric on held-out scenes at every checkpoint.
TOKS="$(ls -d $W/*) $TOK/release"
for kind in full lora scratch full_mix; do
  t "curve_$kind" python -m polymodal.eval.transfer curve "runs/transfer/$kind" --tokenizer $TOKS \
      --data data/world64_val --n "$N_EVAL" --out "runs/transfer/$kind/curve.json" \
      --ceiling runs/transfer/ceiling.json
done
python -m polymodal.eval.transfer plot runs/transfer/{full,lora,scratch,full_mix}/curve.json --out docs/transfer_curves.png \
    --ceiling runs/transfer/ceiling.json --title "RGB -> SAM edges, 100 held-out scenes"

# 5. What is forgotten: the default model's tasks before and after (bundles of the fine-tuned releases).
[ -n "$STOP" ] && [ "$STOP" != 0 ] && exit 0   # paused runs have no release yet
for kind in full lora full_mix; do
  [ -f "runs/transfer/${kind}_bundle/pipeline.json" ] || polymodal bundle --model "runs/transfer/$kind/release" \
      --tokenizer $(ls -d $W/tok_*) "$TOK/release" --text-tokenizer $W/text --out "runs/transfer/${kind}_bundle"
done
[ -f runs/transfer/eval/results.json ] || t eval polymodal eval --data data/world64_val \
    --tasks depth,normal,semseg,caption --n "$N_EVAL" --bootstrap 200 --compare full=runs/transfer/full_bundle \
    --compare lora=runs/transfer/lora_bundle --out runs/transfer/eval --quiet
[ -f runs/transfer/eval_mix/results.json ] || t eval_mix polymodal eval --data data/world64_val \
    --tasks depth,normal,semseg,caption --n "$N_EVAL" --bootstrap 200 --compare full_mix=runs/transfer/full_mix_bundle \
    --out runs/transfer/eval_mix --quiet
du -b runs/transfer/lora/release/adapters/* | tee -a "$L/times.txt"

# 6. A new input modality: SAM edges given beside RGB for segmentation, against RGB alone (fine-tuned from the
#    default model, INPUT_STEPS each: 100 and 300 measured), scored on the same held-out scenes.
INPUT_STEPS=${INPUT_STEPS:-300}
for kind in with without; do
  POLYMODAL_INPUT=$kind POLYMODAL_TOKENS=data/world64_sam_tokens t "train_input${INPUT_STEPS}_$kind" polymodal train \
      configs/transfer_input_world64.py train.steps="$INPUT_STEPS" train.progress=false \
      "train.out_dir=runs/transfer/input${INPUT_STEPS}_$kind" > "$L/train_input${INPUT_STEPS}_$kind.log" 2>&1 &
done
wait
[ -f "runs/transfer/input$INPUT_STEPS.json" ] || t "eval_input$INPUT_STEPS" python -m polymodal.eval.transfer given \
    input_with="runs/transfer/input${INPUT_STEPS}_with/release" \
    input_without="runs/transfer/input${INPUT_STEPS}_without/release" \
    default=src/polymodal/weights/default/model --tokenizer $TOKS --data data/world64_val --n "$N_EVAL" \
    --out "runs/transfer/input$INPUT_STEPS.json"
