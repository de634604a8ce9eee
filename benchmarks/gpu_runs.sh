#!/usr/bin/env bash
# The real-face training runs that a CPU affords only one at a time, as one script for a lent GPU machine
# (one NVIDIA H200 here; any CUDA GPU does, slower or faster). Needs gpu/ (benchmarks/gpu_snapshot.py) and
# runs/table2-32-pruned (benchmarks/prune_vs_scratch.sh, third arm) beside the repository, and python3 with
# torch, onnxruntime, numpy, pillow, click and tqdm; nothing is installed. All runs share the GPU at once,
# each in its own process (the network is small enough that one process leaves most of the GPU idle).
# LFW is not evaluated here (the aligned LFW images would not travel): benchmarks/gpu_collect.py does it on
# the host from what this script packs into $OUT.
# Measured on one H200 (15 device minutes in all): 9 processes at once ran at ~800 img/s each, 4 at ~1,500, so
# the 80-epoch runs need more than one 10-minute call: the first (DEADLINE=500) stopped them near epoch 70 and a
# second call of this script on the still-warm machine resumed and finished them (at most 8 files come back
# from such a machine, 16 MiB each: an unfinished Table 2 checkpoint is larger, so it stays there).
#   DEADLINE=480 OUT=/tmp/gpu-out bash benchmarks/gpu_runs.sh
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 COMPRESS_TEACHER_CACHE=$PWD/gpu/teacher-cache
OUT=${OUT:-/tmp/gpu-out}
DEADLINE=${DEADLINE:-480}  # seconds; a run still going then is stopped and its checkpoint packed (resumable)
mkdir -p "$OUT" runs/gpu-logs
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, onnxruntime; print('torch', torch.__version__, torch.cuda.get_device_name(), '| onnxruntime', onnxruntime.__version__)"

G=gpu/recipes
pids=()
job() {  # name, then the compress arguments
    local name=$1; shift
    timeout "$DEADLINE" python3 -m compress.cli "$@" --no-progress >>"runs/gpu-logs/$name.log" 2>&1 &
    pids+=($!)
}
train_job() {  # name, then train arguments: a finished run is kept, a stopped one resumed (a second call of
    local name=$1; shift  # this script on a still-warm machine finishes what the deadline cut off)
    local out=runs/gpu-$name
    if [ -f "$out/manifest.json" ]; then return; fi
    if [ -f "$out/checkpoint.pt" ]; then job "$name" train --resume "$out" --out "$out"
    else job "$name" train "$@" --out "$out"; fi
}
running() { for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
for v in arcface_w-N1 arcface_w-N2 arcface_w-N3 arcface softmax; do  # the ablation at the recipe's 24 epochs
    [ -f "runs/gpu-ablation-24ep/$v/manifest.json" ] || \
        job "ablation-$v" ablation --recipe $G/gpu-celeba-table3.toml --out runs/gpu-ablation-24ep --variant "$v"
done
# Fine-tune length from the pruned Table 2 (the CPU recipe is 35 epochs), the distillation weight, scratch runs.
for e in 20 35 80; do train_job "t2p-ft$e-dw500" --recipe $G/gpu-table2-pruned-ft.toml --epochs $e; done
train_job t2p-ft80-dw1000 --recipe $G/gpu-table2-pruned-ft.toml --epochs 80 --distill-weight 1000
train_job t3-80-dw500 --recipe $G/gpu-celeba-table3.toml --epochs 80 --distill-weight 500
train_job t2-80-dw500 --recipe $G/gpu-celeba-table2.toml --epochs 80 --distill-weight 500

t0=$SECONDS; shown=0
while running; do
    sleep 5
    [ $((SECONDS - shown)) -lt 60 ] && continue
    shown=$SECONDS
    echo "--- $((SECONDS - t0)) s: $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader)"
    for f in runs/gpu-logs/*.log; do
        printf '%-28s %s\n' "$(basename "$f" .log)" "$(grep -E 'epoch [0-9]+/|Error|error' "$f" | tail -1)"
    done
done
echo "all runs ended after $((SECONDS - t0)) s"
grep -l -E "Traceback|^error" runs/gpu-logs/*.log | while read -r f; do echo "== $f"; tail -5 "$f"; done

# Pack: a finished run's model.pt + manifest.json, an unfinished one's checkpoint.pt (resume it elsewhere).
pack() {  # archive name, run folders
    local name=$1; shift
    local files=()
    for d in "$@"; do
        [ -d "$d" ] || continue
        if [ -f "$d/manifest.json" ]; then files+=("$d/model.pt" "$d/manifest.json")
        elif [ -f "$d/checkpoint.pt" ]; then files+=("$d/checkpoint.pt"); fi
    done
    [ ${#files[@]} -gt 0 ] && tar -cf "$OUT/$name.tar" "${files[@]}"
}
pack ablation runs/gpu-ablation-24ep/*
for r in t2p-ft20-dw500 t2p-ft35-dw500 t2p-ft80-dw500 t2p-ft80-dw1000 t3-80-dw500 t2-80-dw500; do pack "$r" "runs/gpu-$r"; done
tar -cf "$OUT/logs.tar" runs/gpu-logs
ls -la "$OUT"
