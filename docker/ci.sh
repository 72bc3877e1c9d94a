#!/usr/bin/env bash
# The container check CI runs after the Python tests: start a Docker engine, make the base image
# (debootstrap) and an offline wheelhouse, build the image from that wheelhouse, run ./test.sh on the
# sample cases with the organisers' flags, walk the participant's path (synthetic release -> sparseg cv
# -> sparseg package -> the image with the tarball at /opt/ml/model, and an image baked with
# build.sh --weights), segment ADC-only scans with an atlas in the image, check the hardening, and remove
# everything it made.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=sparseg:ci
baked=sparseg:ci-baked
wheelhouse=build/ci-wheelhouse
path=build/ci-path
started=$(date +%s)
engine_pid=$(docker/engine.sh)
# Each step names the free disk where the image layers go, and a sampler keeps the least seen, printed at the
# end: the first thing to read when a build fails for space (docs/container.md gives the sizes).
docker_root=$(docker info --format '{{.DockerRootDir}}')
free_gb() { df --output=avail -B1G "$docker_root" | tail -1 | tr -d ' '; }
disk_log=$(mktemp)
( while true; do free_gb >> "$disk_log"; sleep 5; done ) &
sampler_pid=$!

cleanup() {
    docker rmi -f "$tag" "$baked" sparseg-base:bookworm > /dev/null 2>&1 || true
    docker container prune -f > /dev/null 2>&1 || true
    docker image prune -f > /dev/null 2>&1 || true
    docker builder prune -af > /dev/null 2>&1 || true
    rm -rf "$wheelhouse" "$path" build/model_weights
    if [ -n "$engine_pid" ]; then kill "$engine_pid" 2> /dev/null || true; fi
    kill "$sampler_pid" 2> /dev/null || true
    echo "least free disk during the container check: $(sort -n "$disk_log" | head -1) GB"
    rm -f "$disk_log"
}
trap cleanup EXIT

step() { echo "== $1 ($(( $(date +%s) - started )) s; $(free_gb) GB free)"; }
step "wheelhouse"
docker/wheelhouse.sh "$wheelhouse"
step "build (offline, from the wheelhouse) and the sample cases"
./test.sh --tag "$tag" --wheelhouse "$wheelhouse"
step "the image's torch is built for CUDA 12 (drivers from 525 on: docs/container.md, Which CUDA)"
cuda=$(docker run --rm --network none --entrypoint python3 "$tag" -c 'import torch; print(torch.__version__, torch.version.cuda)')
echo "image: torch $cuda; $(docker image inspect "$tag" --format '{{.Size}}' | awk '{printf "%.2f GB", $1 / 1e9}')"
case "${cuda#* }" in 12.*) ;; *) echo "ci.sh: FAILED: the image's torch is built for CUDA ${cuda#* }, not 12.x" >&2; exit 1 ;; esac
step "participant's path: synthetic release, cross-validation, model tarball (resources/configs/smoke.json)"
.venv/bin/sparseg synth --out "$path/release" --cases 4 --seed 3 --size 64 --depth 8
.venv/bin/sparseg cv --data "$path/release" --config resources/configs/smoke.json --out "$path/cv" --device cpu
folds=("$path"/cv/fold*/final.safetensors)
.venv/bin/sparseg package --weights "${folds[@]}" --out "$path/model.tar.gz"
make expected WEIGHTS="${folds[*]}" EXPECTED="$path/expected"  # what the Python entry point writes with them
step "the image with the model tarball at /opt/ml/model"
./test.sh --no-build --tag "$tag" --model "$path/model.tar.gz" --expected "$path/expected"
step "an image baked with build.sh --weights"
./test.sh --tag "$baked" --wheelhouse "$wheelhouse" --weights "${folds[@]}" --expected "$path/expected"
step "own scans: ADC alone and an atlas, sparseg predict --atlas in the image"
docker/own-scans.sh "$tag" "$path/own-scans"
step "hardening"
docker/hardening.sh "$tag"
step "done"
