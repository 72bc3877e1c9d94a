#!/usr/bin/env bash
# Security and resource checks of a built image, with the organisers' flags:
#   1. the algorithm runs as an unprivileged user;
#   2. on a 256x256x64 synthetic case it runs with a read-only root file system and a tmpfs /tmp, under the
#      4 GB memory limit on CPU (prints the peak), with the baked-in weights and with a paper-sized network
#      (random weights) uploaded as grand-challenge does, in /opt/ml/model;
#   3. it writes nothing outside /output and /tmp (docker diff of a run with a writable root).
#
#   docker/hardening.sh [TAG]
set -euo pipefail
tag=${1:-sparseg:latest}
source "$(dirname "$0")/common.sh"
flags=("${ORGANISER_FLAGS[@]}")
fail() { echo "hardening.sh: FAILED: $1" >&2; exit 1; }
suffix=$$
volumes=(sparseg-hardening-input-$suffix sparseg-hardening-output-$suffix sparseg-hardening-model-$suffix)
container=sparseg-hardening-$suffix
cleanup() { docker rm -f "$container" > /dev/null 2>&1 || true; docker volume rm "${volumes[@]}" > /dev/null 2>&1 || true; }
trap cleanup EXIT
for volume in "${volumes[@]}"; do
    writable_volume "$volume" "$tag"
done
input=(-v "${volumes[0]}":/input:ro)
output=(-v "${volumes[1]}":/output)

uid=$(docker run --rm "${flags[@]}" --entrypoint id "$tag" -u)
[ "$uid" != 0 ] || fail "the image runs as root"
echo "runs as uid $uid"

docker run --rm --network none -v "${volumes[0]}":/input --entrypoint python3 "$tag" -m sparseg synth \
    --out /input --layout input --cases 1 --size 256 --depth 64 --seed 7 > /dev/null

docker run --rm --network none -v "${volumes[2]}":/model --entrypoint python3 "$tag" -c '
import torch
from pathlib import Path
from sparseg.config import load_run_config
from sparseg.model import build_model, save_checkpoint
config = load_run_config("/opt/app/resources/configs/paper.json")
torch.manual_seed(0)
save_checkpoint(Path("/model/paper-random.safetensors"), build_model(config.model, config.in_channels).eval(), config)
' 2> /dev/null

for weights in baked paper; do
    model=()
    [ "$weights" = baked ] || model=(-v "${volumes[2]}":/opt/ml/model:ro)
    log=$(docker run --rm "${flags[@]}" "${READ_ONLY_FLAGS[@]}" "${input[@]}" "${output[@]}" \
        "${model[@]}" "$tag" 2>&1) \
        || { echo "$log" >&2; fail "the 256x256x64 case ($weights weights) failed with a read-only root and the 4 GB limit"; }
    peak=$(job_peak_mib "$log")
    seconds=$(job_seconds "$log")
    echo "256x256x64 on CPU, $weights weights, read-only root, 4 GB limit: ${seconds} s per case, peak memory ${peak} MiB"
    [ "${peak:-99999}" -lt 4096 ] || fail "peak memory ${peak:-?} MiB is not under the 4 GB limit"
done

docker run --name "$container" "${flags[@]}" "${input[@]}" "${output[@]}" "$tag" > /dev/null 2>&1 \
    || fail "the run with a writable root failed"
# The mount points /input and /output themselves appear as added folders; nothing else may.
outside=$(docker diff "$container" | awk '{print $2}' | grep -v -E '^/tmp(/|$)|^/input$|^/output$' || true)
[ -z "$outside" ] || fail "wrote outside /output and /tmp: $(tr '\n' ' ' <<< "$outside")"
echo "writes nothing outside /output and /tmp"
echo "hardening.sh: all checks passed"
