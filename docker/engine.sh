#!/usr/bin/env bash
# Make sure a Docker engine answers: install docker.io (and debootstrap, for docker/base-image.sh) with
# apt when they are missing, then start dockerd in the background. Needs root on Debian/Ubuntu.
# Prints the PID of a dockerd it started (nothing when one was already running).
set -euo pipefail
if docker info > /dev/null 2>&1; then
    exit 0
fi
if ! command -v dockerd > /dev/null || ! command -v debootstrap > /dev/null; then
    echo "engine.sh: installing docker.io and debootstrap" >&2
    apt-get update -qq > /dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap > /dev/null
fi
log=${DOCKERD_LOG:-/tmp/dockerd.log}
setsid dockerd > "$log" 2>&1 < /dev/null &
pid=$!
for _ in $(seq 60); do
    if docker info > /dev/null 2>&1; then
        echo "$pid"
        exit 0
    fi
    sleep 1
done
tail -20 "$log" >&2
echo "engine.sh: error: dockerd did not answer within 60 s (log: $log)" >&2
exit 1
