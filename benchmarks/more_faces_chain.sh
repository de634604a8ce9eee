#!/usr/bin/env bash
# Issue 14's whole real-face chain from one data snapshot: Table 2 distilled on all the faces -> Taylor pruning
# to Table 3 -> fine-tune -> LFW (View 2, 10-fold, in each run's manifest). One command, GPU or CPU:
#   DEVICE=cuda bash benchmarks/more_faces_chain.sh        (DEVICE=cpu for a machine without a GPU)
# The snapshot is written once where ../shared is (aligned, leakage-filtered faces + aligned LFW pairs, WebP):
#   compress data snapshot --recipe more-faces-ft-both --out runs/more-faces.npz
# A GPU machine gets the repository plus the snapshot and the teacher (carry runs/more-faces.npz and
# runs/teacher/, a copy of ../shared/models/mobilefacenet-teacher; TEACHER points at it). Finished steps are
# kept, so a second call continues after an interruption. NOT YET RUN on a GPU: its wall time is unmeasured.
set -euo pipefail
cd "$(dirname "$0")/.."
C=${COMPRESS:-.venv/bin/compress}
SNAP=${SNAP:-runs/more-faces.npz}
DATA=runs/more-faces-data  # the recipes more-faces-chain-* read this folder
R=runs/more-faces-chain
DEVICE=${DEVICE:-cuda}
TEACHER=${TEACHER:-../shared/models/mobilefacenet-teacher/MobileFaceNet.onnx}
T=${THREADS:-0}
EPOCHS=()  # SMOKE=1: one epoch each, to check the chain end to end on a tiny snapshot
[ -n "${SMOKE:-}" ] && EPOCHS=(--epochs 1)
start=$(date +%s)
step() { echo "[$(( $(date +%s) - start )) s] $*"; }
[ -f "$DATA/snapshot.json" ] || { step "unpack $SNAP"; $C data unpack "$SNAP" "$DATA"; }
[ -f "$R/table2/manifest.json" ] || { step "1. Table 2"; $C train --recipe more-faces-chain-table2 \
    --teacher "$TEACHER" --device "$DEVICE" --threads "$T" "${EPOCHS[@]}" --out "$R/table2" --no-progress; }
[ -f "$R/pruned/manifest.json" ] || { step "2. prune to Table 3"; $C prune --model "$R/table2" --schedule table3 \
    --criterion taylor --steps 3 --finetune-steps 40 --data "$DATA/train" --out "$R/pruned" --no-progress; }
[ -f "$R/table3/manifest.json" ] || { step "3. fine-tune"; $C train --recipe more-faces-chain-ft \
    --teacher "$TEACHER" --device "$DEVICE" --threads "$T" "${EPOCHS[@]}" --out "$R/table3" --no-progress; }
step "done: LFW in $R/table2/manifest.json and $R/table3/manifest.json (metrics.lfw)"
