#!/usr/bin/env bash
# Make an offline wheelhouse for ./build.sh --wheelhouse DIR: every wheel requirements.txt needs,
# for CPython 3.11 on x86-64 Linux (the base image's Python). Run where PyPI is reachable, carry DIR
# to the air-gapped machine.
#
#   docker/wheelhouse.sh DIR
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: docker/wheelhouse.sh DIR" >&2; exit 2; }
cd "$(dirname "$0")/.."
python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || { echo "wheelhouse.sh: error: python3 here is not 3.11, the image's Python" >&2; exit 1; }
python3 -m pip wheel --quiet --requirement requirements.txt --wheel-dir "$1"
echo "wheelhouse $1: $(ls "$1"/*.whl | wc -l) wheels, $(du -sh "$1" | cut -f1)"
