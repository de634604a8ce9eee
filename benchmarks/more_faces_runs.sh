#!/usr/bin/env bash
# Issue 14's data table on CPU: fine-tune zoo:table3 with each data change (control = the data it was trained
# on; + UTKFace; + AsianFaces; both) for the same ~75 k images, LFW leakage filter on, then a second seed of a
# row, and AsianFaces' identities in the margin loss. Two lanes of one thread each. Needs ../shared. Finished runs are kept (a second call continues).
#   bash benchmarks/more_faces_runs.sh            then   python benchmarks/more_faces_table.py
set -uo pipefail
cd "$(dirname "$0")/.."
C=${COMPRESS:-.venv/bin/compress}
export OMP_NUM_THREADS=1
run() {  # recipe, out, extra args
    local recipe=$1 out=$2; shift 2
    [ -f "$out/manifest.json" ] && return 0
    if [ -f "$out/checkpoint.pt" ]; then $C train --resume "$out" --out "$out" --threads 1 --no-progress
    else $C train --recipe "$recipe" --out "$out" --threads 1 --no-progress "$@"; fi
}
lane() { for spec in "$@"; do run $spec > "runs/logs/$(basename "${spec#* }").log" 2>&1; done; }
mkdir -p runs/logs
LANE_A=${LANE_A:-"more-faces-ft runs/more-faces-ft;more-faces-ft-utk runs/more-faces-ft-utk"}
LANE_B=${LANE_B:-"more-faces-ft-both runs/more-faces-ft-both;more-faces-ft-asian runs/more-faces-ft-asian;more-faces-ft-asian-labels runs/more-faces-ft-asian-labels"}
IFS=';' read -ra A <<< "$LANE_A"; IFS=';' read -ra B <<< "$LANE_B"
lane "${A[@]}" & lane "${B[@]}" & wait
