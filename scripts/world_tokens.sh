#!/usr/bin/env bash
# The default world and its tokens, made with the shipped tokenizers (no tokenizer training): what
# scripts/specialists_default.sh and configs/fourm_world64.py read, in ~30 min on 2 cores (measured: world 24 min,
# tokens 7 min) instead of the ~1.5 h of
# scripts/train_default.sh's first stages.
#
#   bash scripts/world_tokens.sh      # data/world64 (50,000 scenes), data/world64_val (512), and their tokens
#
# Every stage resumes when rerun. The shipped tokenizers are float16 copies of the ones the default model was
# trained with, so a few borderline patches get another code than in that model's own training tokens.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
W=src/polymodal/weights/default/tokenizers
polymodal data synth --out data/world64_val --n 512 --res 64 --seed 1 --shard-size 256 --text-embeddings
polymodal data synth --out data/world64 --n 50000 --res 64 --workers 2 --text-embeddings
T="rgb=$W/tok_rgb_64 depth=$W/tok_depth_64 normal=$W/tok_normal_64 semseg=$W/tok_semseg_64"
T="$T canny_edge=$W/tok_canny_edge_64 minilm_global=$W/tok_minilm_global"
T="$T caption=$W/text det=$W/text metadata=$W/text color_palette=$W/text"
polymodal data tokenize data/world64_val --tokenizer $T --out data/world64_val_tokens
polymodal data tokenize data/world64 --tokenizer $T --out data/world64_tokens --workers 2
