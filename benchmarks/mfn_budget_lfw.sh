#!/usr/bin/env bash
# Issue 26 item 2: importance-guided vs uniform allocation at 113.5M and 57M MACs on the imported MobileFaceNet
# teacher, no fine-tuning, LFW 10-fold with flip through the project's aligner. Results: reports/mfn/*.json.
# Usage: benchmarks/mfn_budget_lfw.sh [RUNS_DIR]   (from the repository root, ../shared present)
set -euo pipefail
RUNS=${1:-runs/mfn-budget}
SHARED=../shared
TEACHER=$SHARED/models/mobilefacenet-teacher/MobileFaceNet.onnx
FACES=$SHARED/data/celeba-299   # labelled faces for the Taylor importance (margin loss at class centres)
C="nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/compress"
mkdir -p "$RUNS" reports/mfn
for budget in ${BUDGETS:-57M 113.5M}; do
  for alloc in importance uniform; do
    out=$RUNS/$alloc-$budget
    [ -f "$out/model.pt" ] || $C prune --model "$TEACHER" --macs "$budget" --allocation "$alloc" \
        --data "$FACES" --align --out "$out" --no-progress
    [ -f "reports/mfn/lfw-$alloc-$budget.json" ] || $C evaluate --model "$out" --lfw "$SHARED/data/lfw" \
        --json "reports/mfn/lfw-$alloc-$budget.json"
    cp "$out/schedule.toml" "reports/mfn/schedule-$alloc-$budget.toml"
    cp "$out/manifest.json" "reports/mfn/prune-$alloc-$budget.json"
  done
done
