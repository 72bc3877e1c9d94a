#!/usr/bin/env bash
# Make the image's base locally, with no registry: Debian bookworm (minbase) with python3 and
# python3-venv, built by debootstrap from a Debian mirror and imported as a Docker image.
# Needs root, debootstrap and a running Docker engine. About a minute.
#
#   docker/base-image.sh [TAG]        (default: sparseg-base:bookworm, the Dockerfile's BASE_IMAGE)
set -euo pipefail
tag=${1:-sparseg-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
command -v debootstrap > /dev/null || { echo "base-image.sh: error: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv bookworm "$rootfs" "$mirror" > "$rootfs.log" 2>&1 \
    || { tail -5 "$rootfs.log" >&2; echo "base-image.sh: error: debootstrap failed (log: $rootfs.log)" >&2; exit 1; }
rm -f "$rootfs.log"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
tar -C "$rootfs" -c . | docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$tag" > /dev/null
echo "base image $tag: $(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1 / 1e6}')"
