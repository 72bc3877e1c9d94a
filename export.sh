#!/usr/bin/env bash
# Save the algorithm image as a .tar.gz for upload to grand-challenge.
#
#   ./export.sh [--tag TAG] [--out FILE]      (default: sparseg.tar.gz)
set -euo pipefail
cd "$(dirname "$0")"
tag=${SPARSEG_IMAGE:-sparseg:latest}
out=sparseg.tar.gz
while [ $# -gt 0 ]; do
    case $1 in
        --tag) tag=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
        *) echo "export.sh: error: unknown argument $1" >&2; exit 2 ;;
    esac
done
docker image inspect "$tag" > /dev/null 2>&1 || { echo "export.sh: error: no image $tag: run ./build.sh first" >&2; exit 1; }
compress=gzip
command -v pigz > /dev/null && compress=pigz
started=$(date +%s)
# Written under a temporary name and renamed, so a failed export leaves no truncated archive.
trap 'rm -f "$out.partial"' EXIT
docker save "$tag" | $compress -c > "$out.partial"
mv "$out.partial" "$out"
echo "exported $tag to $out: $(du -h "$out" | cut -f1) in $(( $(date +%s) - started )) s"
