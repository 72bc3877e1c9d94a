#!/usr/bin/env bash
# Build the image, run it on every sample case in test/ exactly as grand-challenge does, and compare
# each output with the stored expected output.
#
#   ./test.sh [--no-build] [--tag TAG] [--min-dice D] [--model TARBALL] [--expected DIR] [build.sh options ...]
#
# --model TARBALL  mount this model tarball (sparseg package) unpacked at /opt/ml/model, as grand-challenge
#                  does with an uploaded model; the image then uses it instead of its baked-in weights
# --expected DIR   compare with DIR/<case>/images/... instead of test/<case>/expected/images/... (the masks
#                  `python process.py --weights ...` writes for the weights under test)
# Tolerance: the grid (size, spacing, origin, direction) must match exactly, and the mask voxel for
# voxel on CPU (Dice 1; the expected outputs come from process.py on CPU with the same pinned
# packages). With a GPU (mixed precision) the default is Dice >= 0.99. Exit 1 on any failure.
set -euo pipefail
cd "$(dirname "$0")"
tag=${SPARSEG_IMAGE:-sparseg:latest}
build=1
min_dice=""
model=""
expected=""
build_args=()
while [ $# -gt 0 ]; do
    case $1 in
        --no-build) build=0; shift ;;
        --tag) tag=$2; build_args+=(--tag "$2"); shift 2 ;;
        --min-dice) min_dice=$2; shift 2 ;;
        --model) model=$2; shift 2 ;;
        --expected) expected=$2; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) build_args+=("$1"); shift ;;
    esac
done
[ -z "$model" ] || [ -f "$model" ] || { echo "test.sh: error: $model: no such model tarball" >&2; exit 2; }
# The listing is read whole first: `tar | grep -q` fails under pipefail when grep stops tar early.
if [ -n "$model" ] && ! { listing=$(tar -tzf "$model" 2> /dev/null) && grep -q '\.safetensors$' <<< "$listing"; }; then
    echo "test.sh: error: $model: not a gzipped tarball holding a checkpoint (*.safetensors); make one with sparseg package" >&2
    exit 2
fi
[ -z "$expected" ] || [ -d "$expected" ] || { echo "test.sh: error: $expected: no such folder" >&2; exit 2; }
[ $build -eq 0 ] || ./build.sh "${build_args[@]}"

model_flags=()
if [ -n "$model" ]; then
    model_dir=$(mktemp -d)
    trap 'rm -rf "$model_dir"' EXIT
    tar -xzf "$model" -C "$model_dir"
    chmod -R a+rX "$model_dir"
    model_flags=(-v "$model_dir":/opt/ml/model:ro)
    echo "model: $model unpacked at /opt/ml/model"
fi

gpu=()
if command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi -L > /dev/null 2>&1; then
    gpu=(--gpus all)
    min_dice=${min_dice:-0.99}
fi
min_dice=${min_dice:-1}
source docker/common.sh
# The organisers' fixed flags, plus a read-only root with a fresh /tmp as on grand-challenge.
run_flags=(--rm "${ORGANISER_FLAGS[@]}" "${READ_ONLY_FLAGS[@]}" "${gpu[@]}")
mask=images/hie-lesion-segmentation/overlay.mha

failures=0
printf '%-22s %-14s %10s %12s %10s  %s\n' case size container_s inference_s peak_MiB result
for case_dir in test/*/; do
    case_dir=${case_dir%/}
    case_id=$(basename "$case_dir")
    volume=sparseg-test-output-$case_id-$$
    writable_volume "$volume" "$tag"
    log=$(mktemp)
    started=$(date +%s.%N)
    if docker run "${run_flags[@]}" "${model_flags[@]}" -v "$PWD/$case_dir/input":/input:ro -v "$volume":/output \
            "$tag" > "$log" 2>&1; then
        status=ok
    else
        status="container exited $?"
    fi
    seconds=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
    inference=$(job_seconds "$(cat "$log")")
    peak=$(job_peak_mib "$(cat "$log")")
    size=$(docker run --rm --network none -v "$PWD/$case_dir/input":/input:ro --entrypoint python3 "$tag" -c \
        "import glob; from sparseg.io import read_geometry; print('x'.join(map(str, read_geometry(glob.glob('/input/images/z-score-adc/*.mha')[0]).size_xyz)))")
    if [ "$status" = ok ] && [ -n "$model" ] && ! grep -q 'checkpoint: /opt/ml/model/' "$log"; then
        status="the job did not use the model at /opt/ml/model"
        sed 's/^/    /' "$log" >&2
    fi
    if [ "$status" = ok ]; then
        reference=$PWD/$case_dir/expected
        [ -z "$expected" ] || reference=$(cd "$expected" && pwd)/$case_id
        if result=$(docker run --rm --network none -v "$volume":/output:ro -v "$reference":/expected:ro \
                --entrypoint python3 "$tag" -m sparseg compare --min-dice "$min_dice" /output/$mask /expected/$mask 2>&1); then
            :
        else
            failures=$((failures + 1))
        fi
    else
        result=$status
        failures=$((failures + 1))
        sed 's/^/    /' "$log" >&2
    fi
    printf '%-22s %-14s %10.1f %12s %10s  %s\n' "$case_id" "$size" "$seconds" "${inference:--}" "${peak:--}" "$result"
    rm -f "$log"
    docker volume rm "$volume" > /dev/null
done
device=cpu; [ ${#gpu[@]} -eq 0 ] || device=gpu
if [ $failures -ne 0 ]; then
    echo "test.sh: FAILED: $failures case(s) on $device (tolerance: identical grid, Dice >= $min_dice)" >&2
    exit 1
fi
echo "test.sh: all sample cases match the expected output on $device (identical grid, Dice >= $min_dice)"
