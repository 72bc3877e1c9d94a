#!/usr/bin/env bash
# The GPU measurements, as one script for a machine with a CUDA GPU (Python with torch and the
# requirements importable; run from the repository root).
#
#   bench/gpu.sh [OUT]        (writes OUT/*.txt, default runs/gpu-bench)
#
# 1. process.py from process start to written mask on a 256x256x64 synthetic case, cold (first run)
#    and again, with the paper network (random weights) and with the demo weights;
# 2. the demo weights' mask on the GPU against the CPU mask of the same case (sparseg compare);
# 3. bench/inference.py on the GPU: warm seconds per case and peak GPU memory per speed setting;
# 4. bench/training.py on the GPU: paper model, batch 16, mixed precision.
# DEVICE, SIZE, DEPTH, CASES, REPEATS, BATCH, STEPS override the defaults (a quick dry run on the CPU:
# DEVICE=cpu SIZE=64 DEPTH=4 CASES=64x4 REPEATS=1 BATCH=2 STEPS=1 bench/gpu.sh).
set -uo pipefail
out=${1:-runs/gpu-bench}
device=${DEVICE:-cuda}
size=${SIZE:-256}
depth=${DEPTH:-64}
mkdir -p "$out"
work=$(mktemp -d)
python3 -m sparseg synth --out "$work/case" --layout input --cases 1 --size "$size" --depth "$depth" --seed 5 > /dev/null
(cd bench && python3 -c 'import sys, pathlib, common; common.paper_checkpoint(pathlib.Path(sys.argv[1]))' "$work")
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2> /dev/null || echo "no nvidia-smi"
    echo "case: ${size}x${size}x${depth} synthetic; device $device"
    for weights in "$work/paper-random.safetensors" model_weights/sparseg-demo.safetensors; do
        for run in cold again; do
            started=$(date +%s.%N)
            python3 process.py --input "$work/case" --output "$work/out-$run" --weights "$weights" --device "$device" > "$work/log" 2>&1
            status=$?
            seconds=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
            echo "process.py $(basename "$weights") $run: exit $status, ${seconds} s from process start to written mask; $(grep -o 'in [0-9.]* s; peak memory [0-9]* MiB' "$work/log")"
        done
    done
    python3 process.py --input "$work/case" --output "$work/out-cpu" --weights model_weights/sparseg-demo.safetensors --device cpu > /dev/null 2>&1
    echo "demo weights, GPU mask vs CPU mask on the same case:"
    python3 -m sparseg compare "$work/out-again/images/hie-lesion-segmentation/overlay.mha" \
        "$work/out-cpu/images/hie-lesion-segmentation/overlay.mha" --min-dice 0.999
} 2>&1 | tee "$out/process.txt"
python3 bench/inference.py --device "$device" --model paper --cases ${CASES:-256x64 128x24} --repeats "${REPEATS:-10}" 2>&1 | grep -v Warning | tee "$out/inference.txt"
[ "${SKIP_TRAINING:-0}" = 1 ] || python3 bench/training.py --device "$device" --model paper --batch "${BATCH:-16}" --steps "${STEPS:-20}" 2>&1 | grep -v Warning | tee "$out/training.txt"
rm -rf "$work"
