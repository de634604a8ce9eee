#!/usr/bin/env bash
# The README's per-target figures on real faces: quantize a trained model (NNCF PTQ, calibrated on aligned
# CelebA photos), export it for every target, check parity and LFW accuracy in each runtime available here,
# and time int8 against fp32 in one interleaved run. Needs ../shared (LFW, CelebA) and a trained model.
#   benchmarks/deploy_lfw.sh runs/celeba-table3 runs/deploy
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:?usage: $0 MODEL_ARTIFACT [OUT]}
OUT=${2:-runs/deploy}
LFW=../shared/data/lfw
C=${COMPRESS:-.venv/bin/compress}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

$C evaluate --model "$MODEL" --lfw "$LFW" --json "$OUT/float-lfw.json"
$C quantize --model "$MODEL" --out "$OUT/int8" --calibration ../shared/data/celeba-299 --align \
            --calibration-images 256 --threads 1 --overwrite --no-progress
for spec in "onnx fp32 $MODEL" "onnx int8 $OUT/int8" "jetson-nano fp16 $MODEL" "jetson-orin-nano int8 $OUT/int8" \
            "intel-nuc fp16 $MODEL" "intel-nuc int8 $OUT/int8" "raspberry-pi-4 fp32 $MODEL" \
            "raspberry-pi-4 int8 $OUT/int8" "raspberry-pi-5 int8 $OUT/int8"; do
  set -- $spec
  $C export --target "$1" --precision "$2" --model "$3" --lfw "$LFW" --out "$OUT/exports/$1-$2" \
            --threads 1 --overwrite --no-progress
done
E=$OUT/exports
$C bench --threads 1 --seconds 2 --rounds 5 --json "$OUT/int8-vs-fp32.json" \
  --artifact "$E/intel-nuc-fp16" --artifact "$E/intel-nuc-int8" \
  --artifact "$E/raspberry-pi-4-fp32" --artifact "$E/raspberry-pi-4-int8" \
  --artifact "$E/onnx-fp32" --artifact "$E/onnx-int8"
