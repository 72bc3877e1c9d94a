#!/usr/bin/env bash
# The container check CI runs after the Python tests: start a Docker engine, make the base image
# (debootstrap) and an offline wheelhouse, build the image from that wheelhouse, run ./test.sh on the
# sample cases with the organisers' flags, check the hardening, and remove everything it made.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=sparseg:ci
wheelhouse=build/ci-wheelhouse
started=$(date +%s)
engine_pid=$(docker/engine.sh)

cleanup() {
    docker rmi -f "$tag" sparseg-base:bookworm > /dev/null 2>&1 || true
    docker container prune -f > /dev/null 2>&1 || true
    docker image prune -f > /dev/null 2>&1 || true
    docker builder prune -af > /dev/null 2>&1 || true
    rm -rf "$wheelhouse" build/wheelhouse
    if [ -n "$engine_pid" ]; then kill "$engine_pid" 2> /dev/null || true; fi
}
trap cleanup EXIT

step() { echo "== $1 ($(( $(date +%s) - started )) s)"; }
step "wheelhouse"
docker/wheelhouse.sh "$wheelhouse"
step "build (offline, from the wheelhouse) and the sample cases"
./test.sh --tag "$tag" --wheelhouse "$wheelhouse"
step "hardening"
docker/hardening.sh "$tag"
step "done"
