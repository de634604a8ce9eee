#!/usr/bin/env bash
# Issue 26 item 3: MobileFaceNet -> prune to a MAC budget (Taylor importance on CelebA-299 faces) -> distil
# from the unpruned teacher (profiles/mfn-distill.toml: CelebA-299 + LFW-unpaired + UTKFace + AsianFaces,
# LFW leakage filter, cached teacher views) -> LFW 10-fold with flip. One budget per call, resumable (finished
# steps are kept; `compress train --resume` continues a run from its checkpoint):
#   BUDGET=57M bash benchmarks/mfn_chain.sh          (also 113.5M, 18.1M; DEVICE=cuda on a GPU)
# EPOCHS overrides the recipe's epochs; MIN_KEEP floors every derived width (prune --min-keep); POLICY sets the
# augmentation (mirror: the cached teacher views are exact targets, and it trains ~2x faster than light on a CPU);
# POLISH=N[,N2...] continues the distilled run N more epochs with mirror augmentation at POLISH_LR
# (ft-BUDGET-polish), then N2 more from that (ft-BUDGET-polish-r2; a warm restart of the cosine schedule), ...
# Each step's wall time is printed; images/s is in the run's manifest.
set -euo pipefail
cd "$(dirname "$0")/.."
C=${COMPRESS:-.venv/bin/compress}
BUDGET=${BUDGET:-57M}
DEVICE=${DEVICE:-cpu}
T=${THREADS:-0}
TEACHER=${TEACHER:-../shared/models/mobilefacenet-teacher/MobileFaceNet.onnx}
# SOURCE: the network pruned (default the teacher); pruning an already pruned and distilled network (iterative,
# e.g. SOURCE=zoo:mfn-113m BUDGET=57M) needs its own TAG, which names the run folders instead of BUDGET.
SOURCE=${SOURCE:-$TEACHER}
TAG=${TAG:-$BUDGET}
R=runs/mfn-chain
EXTRA=()
[ -n "${EPOCHS:-}" ] && EXTRA+=(--epochs "$EPOCHS")
[ -n "${POLICY:-}" ] && EXTRA+=(--augment-policy "$POLICY")
KEEP=()
[ -n "${MIN_KEEP:-}" ] && KEEP=(--min-keep "$MIN_KEEP")
start=$(date +%s)
step() { echo "[$(( $(date +%s) - start )) s] $*"; }
mkdir -p "$R"
[ -f "$R/pruned-$TAG/manifest.json" ] || { step "1. prune $SOURCE to $BUDGET MACs"; $C prune --model "$SOURCE" \
    --macs "$BUDGET" "${KEEP[@]}" --allocation importance --data ../shared/data/celeba-299 --align --out "$R/pruned-$TAG" \
    --no-progress; }
# train NAME ARGS...: runs/mfn-chain/NAME, skipped when finished; an interrupted run continues from its checkpoint
train() {
  local name=$1; shift
  [ -f "$R/$name/model.pt" ] && { step "$name: done before"; return 0; }
  local where=(--out "$R/$name")
  [ -d "$R/$name" ] && where=(--resume "$R/$name" --out "$R/$name")
  step "$name: train $*"
  $C train --recipe mfn-distill --teacher "$TEACHER" --device "$DEVICE" --threads "$T" "$@" "${where[@]}" --no-progress
}
train "ft-$TAG" --init-model "$R/pruned-$TAG" "${EXTRA[@]}"
LAST=ft-$TAG
# POLISH=2,6: round 1 (ft-B-polish) 2 epochs from the distilled run, round 2 (ft-B-polish-r2) 6 from round 1, ...
round=0
P=${POLISH:-}
for epochs in ${P//,/ }; do
  round=$((round + 1)); name=ft-$TAG-polish; [ "$round" -gt 1 ] && name=$name-r$round
  train "$name" --init-model "$R/$LAST" --epochs "$epochs" --augment-policy mirror --lr "${POLISH_LR:-0.0005}"
  LAST=$name
done
# The run's own LFW evaluation (train's eval_lfw: View 2, 10-fold, flip) is the chain's record.
[ -f "$R/lfw-$LAST.json" ] || "$(dirname "$C")/python" -c 'import json,sys; m=json.load(open(sys.argv[1])); \
json.dump(m["metrics"]["lfw"], open(sys.argv[2], "w"), indent=2)' "$R/$LAST/manifest.json" "$R/lfw-$LAST.json"
step "done: $R/$LAST (schedule $R/pruned-$TAG/schedule.toml), LFW $R/lfw-$LAST.json"
