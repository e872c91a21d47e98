#!/usr/bin/env bash
# Reproduce the shipped default model (src/polymodal/weights/default) from nothing, on a 2-core CPU.
#
#   bash scripts/train_default.sh [STEPS]          # STEPS: 4M training steps (default 3000, as shipped)
#
# Every stage resumes when rerun (datasets, tokenizers and the 4M run checkpoint atomically). Time on 2 shared
# cores (2026-11-29): world 30 min, six tokenizers 2 x 25 min in parallel, text vocabulary 1 min, tokenization
# 10 min, 4M training 2.0-2.4 s/step with two threads on otherwise idle cores (3.2 s/step with one), evaluation
# 3 min. Threads: one per process while stages run side by side (two threads per process collapse when another
# process competes for the cores), two for the 4M training, which runs alone.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-3000}
D=runs/default
export OMP_NUM_THREADS=1
mkdir -p "$D"
polymodal data synth --out data/world64 --n 50000 --res 64 --workers 2 --text-embeddings
polymodal data synth --out data/world64_val --n 512 --res 64 --seed 1 --shard-size 256 --text-embeddings
tok() { [ -f "$D/tok_$1/release/model.safetensors" ] || polymodal tokenizer train "configs/tokenizer_$1_world64.py" \
          data.path=data/world64 train.steps=3000 "train.out_dir=$D/tok_$1" train.progress=false; }
(tok rgb; tok normal; tok edges) & (tok depth; tok semseg; tok minilm_global) & wait
python - <<'PY'
from polymodal.data.world.store import iter_samples
with open("runs/default/captions.txt", "w") as f:
    for i, s in enumerate(iter_samples("data/world64", modalities=["caption"])):
        f.write(s["caption"].replace("\n", " ") + "\n")
PY
[ -f "$D/tok_text/tokenizer.json" ] || polymodal tokenizer train-text --corpus "$D/captions.txt" --vocab-size 4600 \
    --out "$D/tok_text" --quiet
T="rgb=$D/tok_rgb/release depth=$D/tok_depth/release normal=$D/tok_normal/release semseg=$D/tok_semseg/release"
T="$T canny_edge=$D/tok_edges/release minilm_global=$D/tok_minilm_global/release caption=$D/tok_text"
T="$T det=$D/tok_text metadata=$D/tok_text color_palette=$D/tok_text"
polymodal data tokenize data/world64_val --tokenizer $T --out data/world64_val_tokens
polymodal data tokenize data/world64 --tokenizer $T --out data/world64_tokens --workers 2
OMP_NUM_THREADS=2 POLYMODAL_TOKENS=data/world64_tokens polymodal train configs/fourm_world64.py data.val_path=data/world64_val_tokens \
    train.steps="$STEPS" train.eval_every=250
polymodal bundle --model runs/fourm_world64/release --tokenizer $D/tok_{rgb,depth,normal,semseg,edges,minilm_global}/release \
    --text-tokenizer "$D/tok_text" --out src/polymodal/weights/default --half
polymodal eval --model src/polymodal/weights/default --data data/world64_val --n 200 --ceiling --examples 2 \
    --out "$D/eval"
