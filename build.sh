#!/usr/bin/env bash
# Build the algorithm image.
#
#   ./build.sh [--tag TAG] [--wheelhouse DIR] [--base IMAGE]
#
# --wheelhouse DIR  install Python packages from DIR only (offline; make it with docker/wheelhouse.sh)
# --base IMAGE      base image (default sparseg-base:bookworm, made by docker/base-image.sh if missing)
# The image bakes in the checkpoint(s) in model_weights/; the build stops if there are none.
set -euo pipefail
cd "$(dirname "$0")"
tag=${SPARSEG_IMAGE:-sparseg:latest}
base=sparseg-base:bookworm
wheelhouse=""
while [ $# -gt 0 ]; do
    case $1 in
        --tag) tag=$2; shift 2 ;;
        --wheelhouse) wheelhouse=$2; shift 2 ;;
        --base) base=$2; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "build.sh: error: unknown argument $1 (see ./build.sh --help)" >&2; exit 2 ;;
    esac
done

shopt -s nullglob
checkpoints=(model_weights/*.safetensors)
if [ ${#checkpoints[@]} -eq 0 ]; then
    echo "build.sh: error: no checkpoint (*.safetensors) in model_weights/: train one (README, 'Submit to BONBID-HIE') and copy it there" >&2
    exit 1
fi
for checkpoint in "${checkpoints[@]}"; do
    # The metadata header sits at the start of a safetensors file; a synthetic-data run is flagged there.
    if head -c 1048576 "$checkpoint" | grep -ac 'synthetic\\": true' > /dev/null; then
        echo "build.sh: WARNING: $checkpoint was trained on synthetic data: for demos and tests only, not for real scans" >&2
    fi
done

rm -rf build/wheelhouse
mkdir -p build/wheelhouse
if [ -n "$wheelhouse" ]; then
    wheels=("$wheelhouse"/*.whl)
    [ ${#wheels[@]} -gt 0 ] || { echo "build.sh: error: no wheels (*.whl) in $wheelhouse" >&2; exit 1; }
    # Hard links when on the same file system (instant), copies otherwise.
    cp -l "${wheels[@]}" build/wheelhouse/ 2> /dev/null || cp "${wheels[@]}" build/wheelhouse/
    echo "offline build from $wheelhouse (${#wheels[@]} wheels)"
fi

# The default base is made locally (no registry needed); any other is pulled by docker build.
if [ "$base" = sparseg-base:bookworm ] && ! docker image inspect "$base" > /dev/null 2>&1; then
    echo "base image $base not found: making it with docker/base-image.sh"
    docker/base-image.sh "$base"
fi

started=$(date +%s)
docker build --force-rm --build-arg BASE_IMAGE="$base" --tag "$tag" .
rm -rf build/wheelhouse
size=$(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.2f GB", $1 / 1e9}')
echo "built $tag in $(( $(date +%s) - started )) s; image size $size"
