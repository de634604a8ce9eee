#!/usr/bin/env bash
# Issue 26 item 3: MobileFaceNet -> prune to a MAC budget (Taylor importance on CelebA-299 faces) -> distil
# from the unpruned teacher (profiles/mfn-distill.toml: CelebA-299 + LFW-unpaired + UTKFace + AsianFaces,
# LFW leakage filter, cached teacher views) -> LFW 10-fold with flip. One budget per call, resumable (finished
# steps are kept; `compress train --resume` continues a run from its checkpoint):
#   BUDGET=57M bash benchmarks/mfn_chain.sh          (also 113.5M, 18.1M; DEVICE=cuda on a GPU)
# EPOCHS overrides the recipe's epochs; MIN_KEEP floors every derived width (prune --min-keep); POLICY sets the
# augmentation (mirror: the cached teacher views are exact targets, and it trains ~2x faster than light on a CPU);
# POLISH=N continues the distilled run N more epochs with mirror augmentation at POLISH_LR (ft-BUDGET-polish).
# Each step's wall time is printed; images/s is in the run's manifest.
set -euo pipefail
cd "$(dirname "$0")/.."
C=${COMPRESS:-.venv/bin/compress}
BUDGET=${BUDGET:-57M}
DEVICE=${DEVICE:-cpu}
T=${THREADS:-0}
TEACHER=${TEACHER:-../shared/models/mobilefacenet-teacher/MobileFaceNet.onnx}
R=runs/mfn-chain
EXTRA=()
[ -n "${EPOCHS:-}" ] && EXTRA+=(--epochs "$EPOCHS")
[ -n "${POLICY:-}" ] && EXTRA+=(--augment-policy "$POLICY")
KEEP=()
[ -n "${MIN_KEEP:-}" ] && KEEP=(--min-keep "$MIN_KEEP")
start=$(date +%s)
step() { echo "[$(( $(date +%s) - start )) s] $*"; }
mkdir -p "$R"
[ -f "$R/pruned-$BUDGET/manifest.json" ] || { step "1. prune to $BUDGET MACs"; $C prune --model "$TEACHER" \
    --macs "$BUDGET" "${KEEP[@]}" --allocation importance --data ../shared/data/celeba-299 --align --out "$R/pruned-$BUDGET" \
    --no-progress; }
WHERE=(--out "$R/ft-$BUDGET")  # an interrupted run continues from its checkpoint
[ -d "$R/ft-$BUDGET" ] && [ ! -f "$R/ft-$BUDGET/model.pt" ] && WHERE=(--resume "$R/ft-$BUDGET" --out "$R/ft-$BUDGET")
[ -f "$R/ft-$BUDGET/model.pt" ] || { step "2. distil"; $C train --recipe mfn-distill --init-model "$R/pruned-$BUDGET" \
    --teacher "$TEACHER" --device "$DEVICE" --threads "$T" "${EXTRA[@]}" "${WHERE[@]}" --no-progress; }
LAST=ft-$BUDGET
if [ -n "${POLISH:-}" ]; then
  LAST=ft-$BUDGET-polish
  WHERE=(--out "$R/$LAST")
  [ -d "$R/$LAST" ] && [ ! -f "$R/$LAST/model.pt" ] && WHERE=(--resume "$R/$LAST" --out "$R/$LAST")
  [ -f "$R/$LAST/model.pt" ] || { step "2b. polish"; $C train --recipe mfn-distill --init-model "$R/ft-$BUDGET" \
      --teacher "$TEACHER" --device "$DEVICE" --threads "$T" --epochs "$POLISH" --augment-policy mirror \
      --lr "${POLISH_LR:-0.0005}" "${WHERE[@]}" --no-progress; }
fi
[ -f "$R/lfw-$LAST.json" ] || { step "3. LFW"; $C evaluate --model "$R/$LAST" --lfw ../shared/data/lfw \
    --json "$R/lfw-$LAST.json"; }
step "done: $R/$LAST (schedule $R/pruned-$BUDGET/schedule.toml), LFW $R/lfw-$LAST.json"
