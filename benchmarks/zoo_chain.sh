#!/usr/bin/env bash
# The command chain that produced the zoo's real-face weights (compress/zoo/table2 and table3), on CPU.
# Needs ../shared (CelebA-299, LFW, the MobileFaceNet teacher). Reuses finished runs, so a second call after an
# interruption continues where it stopped. Then `python benchmarks/zoo_build.py` copies the weights into the
# zoo, scores them on LFW and writes their records. Measured: 128 min wall on 2 CPU cores (AMD EPYC) for the
# four steps (Table 2 12 + 20 epochs ~70 min, pruning ~3 min, the 35-epoch online fine-tune ~55 min).
set -euo pipefail
cd "$(dirname "$0")/.."
C=${COMPRESS:-.venv/bin/compress}
T=${THREADS:-0}
# 1. Table 2, 12 epochs of the celeba-table2 recipe
[ -f runs/celeba-table2/manifest.json ] || $C train --recipe celeba-table2 --epochs 12 --threads "$T" \
    --out runs/celeba-table2 --no-progress
# 2. the same network 20 epochs more (cosine schedule restarted from the recipe's lr): zoo:table2
[ -f runs/celeba-table2-32/manifest.json ] || $C train --recipe celeba-table2 --init-model runs/celeba-table2 \
    --epochs 20 --threads "$T" --out runs/celeba-table2-32 --no-progress
# 3. Taylor pruning to Table 3 in 3 steps, 40 distillation steps after each
[ -f runs/table2-32-pruned/manifest.json ] || $C prune --model runs/celeba-table2-32 --schedule table3 \
    --criterion taylor --steps 3 --finetune-steps 40 --data ../shared/data/celeba-299 --align \
    --out runs/table2-32-pruned --no-progress
# 4. 35-epoch fine-tune, distillation weight 500, online teacher views + 20% mixup: zoo:table3
[ -f runs/table2-32-pruned-ft35-online/manifest.json ] || $C train --recipe table2-pruned-ft-online \
    --threads "$T" --out runs/table2-32-pruned-ft35-online --no-progress
