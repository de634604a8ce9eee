#!/usr/bin/env bash
# Issue 4's LFW table: Table 2 trained -> pruned to Table 3 (no fine-tune) -> fine-tuned, against Table 3
# trained from scratch with the same budget in images seen (24 epochs of the 7,452-image CelebA + unpaired-LFW
# set): Table 2 for 12 epochs, 3 Taylor pruning steps with 40 fine-tuning steps each (~1 epoch), then 11 epochs
# of the celeba-table3 recipe from the pruned weights. Needs ../shared. About 100 CPU minutes on 2 cores.
# A second, 48-epoch budget: the same pruned network fine-tuned for 35 epochs, against 48 epochs from scratch.
# A third arm: Table 2 trained 20 epochs more (32 in all) before the same pruning and 35-epoch fine-tune, with
# distillation weight 50, 500 and 5000, and weight 500 with online teacher views + mixup (the best model;
# reports/prune/table2-32ep-to-table3.*; about 200 more CPU minutes).
#   benchmarks/prune_vs_scratch.sh            (reuses finished runs; the scratch run defaults to reports/lfw)
set -euo pipefail
cd "$(dirname "$0")/.."
C=${COMPRESS:-.venv/bin/compress}
PY=${PYTHON:-.venv/bin/python}
LFW=../shared/data/lfw
# Scratch runs at the two budgets: `compress train --recipe celeba-table3 [--epochs 48] --out runs/celeba-table3`
SCRATCH=${SCRATCH:-reports/lfw/celeba-table3.json reports/lfw/celeba-table3-48ep.json}

[ -f runs/celeba-table2/manifest.json ] || $C train --recipe celeba-table2 --epochs 12 --out runs/celeba-table2 --no-progress
[ -f runs/table2-oneshot/manifest.json ] || $C prune --model runs/celeba-table2 --schedule table3 --criterion taylor \
    --data ../shared/data/celeba-299 --align --lfw "$LFW" --out runs/table2-oneshot --no-progress   # no fine-tune at all
[ -f runs/table2-pruned/manifest.json ] || $C prune --model runs/celeba-table2 --schedule table3 --criterion taylor \
    --steps 3 --finetune-steps 40 --data ../shared/data/celeba-299 --align --lfw "$LFW" --out runs/table2-pruned --no-progress
[ -f runs/table2-pruned-ft/manifest.json ] || $C train --recipe celeba-table3 --init-model runs/table2-pruned --epochs 11 \
    --out runs/table2-pruned-ft --no-progress
# the 48-epoch budget: 12 (Table 2) + ~1 (pruning) + 35
[ -f runs/table2-pruned-ft35/manifest.json ] || $C train --recipe celeba-table3 --init-model runs/table2-pruned --epochs 35 \
    --out runs/table2-pruned-ft35 --no-progress
$PY benchmarks/prune_table.py --table2 runs/celeba-table2 --oneshot runs/table2-oneshot --pruned runs/table2-pruned --finetuned runs/table2-pruned-ft \
    runs/table2-pruned-ft35 --scratch $SCRATCH --out reports/prune

# the third arm: a better-trained Table 2 (12 + 20 epochs, cosine schedule restarted) -> the same pruning -> 35 epochs
[ -f runs/celeba-table2-32/manifest.json ] || $C train --recipe celeba-table2 --init-model runs/celeba-table2 --epochs 20 \
    --out runs/celeba-table2-32 --no-progress
[ -f runs/table2-32-pruned/manifest.json ] || $C prune --model runs/celeba-table2-32 --schedule table3 --criterion taylor \
    --steps 3 --finetune-steps 40 --data ../shared/data/celeba-299 --align --lfw "$LFW" --out runs/table2-32-pruned --no-progress
[ -f runs/table2-32-pruned-ft35/manifest.json ] || $C train --recipe celeba-table3 --init-model runs/table2-32-pruned \
    --epochs 35 --out runs/table2-32-pruned-ft35 --no-progress
# the same fine-tune with a 10x heavier distillation term (profiles/table2-pruned-ft.toml): the best Table 3 model
[ -f runs/table2-32-pruned-ft35-dw500/manifest.json ] || $C train --recipe table2-pruned-ft \
    --out runs/table2-32-pruned-ft35-dw500 --no-progress
[ -f runs/table2-32-pruned-ft35-dw5000/manifest.json ] || $C train --recipe table2-pruned-ft --distill-weight 5000 \
    --out runs/table2-32-pruned-ft35-dw5000 --no-progress
# the weight-500 fine-tune with online teacher views + 20% mixup (profiles/table2-pruned-ft-online.toml): the best
[ -f runs/table2-32-pruned-ft35-online/manifest.json ] || $C train --recipe table2-pruned-ft-online \
    --out runs/table2-32-pruned-ft35-online --no-progress
$PY benchmarks/prune_table.py --table2 runs/celeba-table2-32 --pruned runs/table2-32-pruned \
    --finetuned runs/table2-32-pruned-ft35 runs/table2-32-pruned-ft35-dw500 runs/table2-32-pruned-ft35-dw5000 \
    runs/table2-32-pruned-ft35-online --scratch reports/lfw/celeba-table3-48ep.json \
    --out reports/prune --name table2-32ep-to-table3
