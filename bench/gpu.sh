#!/usr/bin/env bash
# The GPU measurements, as one script for a machine with a CUDA GPU (Python with torch and the
# requirements importable; run from the repository root).
#
#   bench/gpu.sh [OUT]        (writes OUT/*.txt, default runs/gpu-bench)
#
# 1. process.py from process start to written mask on a 256x256x64 synthetic case, first run and
#    again, with the paper network (random weights) and with the demo weights, on torch (the network
#    rebuilt from the checkpoint: no file is derived for torch, see sparseg/derived.py) and, with
#    DEVICE=cpu, on OpenVINO from its export (the CPU's default engine, `sparseg export` as in the image);
# 2. masks: the demo weights' mask on DEVICE against the CPU's default;
# 3. the Log-Hausdorff distance fields on the GPU against scipy's;
# 4. bench/inference.py on the GPU: warm seconds per case and peak GPU memory per speed setting;
# 5. bench/batch.py on the GPU: cases per second with the background reader against reading in turn;
# 6. bench/training.py on the GPU: paper model, batch 16, mixed precision, distance fields on the GPU
#    and on the host, with a profile of one step.
# DEVICE, SIZE, DEPTH, CASES, REPEATS, BATCH, STEPS override the defaults; CASE=DIR (an /input folder,
# e.g. test/MGHNICU_901-VISIT_01/input) replaces the synthetic case in 1-2. SKIP_INFERENCE=1 and
# SKIP_TRAINING=1 leave out 4-5 and 6 (a quick dry run on the CPU:
# DEVICE=cpu SIZE=64 DEPTH=4 CASES=64x4 REPEATS=1 BATCH=2 STEPS=1 bench/gpu.sh).
set -uo pipefail
out=${1:-runs/gpu-bench}
device=${DEVICE:-cuda}
size=${SIZE:-256}
depth=${DEPTH:-64}
mkdir -p "$out"
work=$(mktemp -d)
mask=images/hie-lesion-segmentation/overlay.mha
if [ -n "${CASE:-}" ]; then
    cp -r "$CASE" "$work/case"
else
    python3 -m sparseg synth --out "$work/case" --layout input --cases 1 --size "$size" --depth "$depth" --seed 5 > /dev/null
fi
mkdir -p "$work/weights"
(cd bench && python3 -c 'import sys, pathlib, common; common.paper_checkpoint(pathlib.Path(sys.argv[1]))' "$work/weights")
cp model_weights/sparseg-demo.safetensors "$work/weights/"
python3 -m sparseg export "$work"/weights/*.safetensors 2>&1 | grep -v Warning
engines=(torch)
[ "$device" = cpu ] && engines=(torch openvino)
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2> /dev/null || echo "no nvidia-smi"
    python3 -c 'import torch; print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, GPU usable: {torch.cuda.is_available()}")'
    echo "case: ${CASE:-${size}x${size}x${depth} synthetic}; device $device"
    python3 -c 'import time; t = time.perf_counter(); import torch; print(f"import torch alone: {time.perf_counter() - t:.2f} s")'
    for weights in paper-random sparseg-demo; do
        for engine in "${engines[@]}"; do
            for run in first again; do
                started=$(date +%s.%N)
                python3 process.py --input "$work/case" --output "$work/out-$weights-$engine-$run" \
                    --weights "$work/weights/$weights.safetensors" --device "$device" --engine "$engine" \
                    > "$work/log" 2>&1
                status=$?
                seconds=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
                echo "process.py $weights $engine $run: exit $status, ${seconds} s from process start to written mask; $(grep -o 'in [0-9.]* s; peak memory [0-9]* MiB' "$work/log")"
            done
        done
    done
    python3 process.py --input "$work/case" --output "$work/out-cpu" --weights "$work/weights/sparseg-demo.safetensors" --device cpu > /dev/null 2>&1
    echo "demo weights, $device torch mask vs the CPU default's mask on the same case:"
    python3 -m sparseg compare "$work/out-sparseg-demo-torch-again/$mask" "$work/out-cpu/$mask" --min-dice 0.999
    python3 - "$device" <<'PY'
import sys, numpy as np, torch
from scipy import ndimage
from sparseg.losses import distance_field, torch_distance_field
masks = ndimage.binary_dilation(np.random.default_rng(0).random((16, 1, 256, 256)) < 0.002, iterations=4)
masks = torch.from_numpy(masks)
gpu = torch_distance_field(masks.to(sys.argv[1])).cpu()
print(f"distance fields on {sys.argv[1]} vs scipy, 16 masks of 256x256: max |difference| {float((gpu - distance_field(masks)).abs().max()):.2g} px")
PY
} 2>&1 | tee "$out/process.txt"
[ "${SKIP_INFERENCE:-0}" = 1 ] || python3 bench/inference.py --device "$device" --model paper --cases ${CASES:-256x64 128x24} --repeats "${REPEATS:-10}" 2>&1 | grep -v Warning | tee "$out/inference.txt"
[ "${SKIP_INFERENCE:-0}" = 1 ] || python3 bench/batch.py --device "$device" --weights "$work/weights/paper-random.safetensors" 2>&1 | grep -v Warning | tee "$out/batch.txt"
[ "${SKIP_TRAINING:-0}" = 1 ] || python3 bench/training.py --device "$device" --model paper --batch "${BATCH:-16}" --steps "${STEPS:-20}" --profile 2>&1 | grep -v Warning | tee "$out/training.txt"
rm -rf "$work"
