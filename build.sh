#!/usr/bin/env bash
# Build the algorithm image.
#
#   ./build.sh [--tag TAG] [--wheelhouse DIR] [--base IMAGE] [--weights CKPT ...]
#
# --wheelhouse DIR  install Python packages from DIR only (offline; make it with docker/wheelhouse.sh); DIR is
#                   served on 127.0.0.1:8765 during the build (SPARSEG_WHEELHOUSE_PORT moves it)
# --base IMAGE      base image; default: python:3.11-slim-bookworm where it is present or can be pulled, else
#                   sparseg-base:bookworm (Debian bookworm made locally by docker/base-image.sh with debootstrap,
#                   as root: for machines without a registry); --base local asks for that one
# --weights CKPT .. the checkpoint(s) to bake in, e.g. runs/cv/fold*/final.safetensors (each named after
#                   its folder: fold0-final.safetensors); default: model_weights/*.safetensors
# The build stops if there is no checkpoint; the image averages every checkpoint it bakes in.
set -euo pipefail
caller=$PWD
cd "$(dirname "$0")"
# A path given relative to where build.sh was called from, from here.
from_caller() { case $1 in /*) echo "$1" ;; *) echo "$caller/$1" ;; esac; }
tag=${SPARSEG_IMAGE:-sparseg:latest}
base=auto
registry_base=python:3.11-slim-bookworm
local_base=sparseg-base:bookworm
wheelhouse=""
weights=()
while [ $# -gt 0 ]; do
    case $1 in
        --tag|--wheelhouse|--base)
            if [ $# -lt 2 ] || [ -z "$2" ]; then
                echo "build.sh: error: $1 needs a value (see ./build.sh --help)" >&2
                exit 2
            fi
            case $1 in --tag) tag=$2 ;; --wheelhouse) wheelhouse=$(from_caller "$2") ;; --base) base=$2 ;; esac
            shift 2 ;;
        --weights) shift; while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do weights+=("$(from_caller "$1")"); shift; done ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "build.sh: error: unknown argument $1 (see ./build.sh --help)" >&2; exit 2 ;;
    esac
done

shopt -s nullglob
named=1
if [ ${#weights[@]} -eq 0 ]; then
    named=0
    weights=(model_weights/*.safetensors)
fi
if [ ${#weights[@]} -eq 0 ]; then
    echo "build.sh: error: no checkpoint (*.safetensors) in model_weights/: train one (README, 'Submit to BONBID-HIE') and pass it with --weights" >&2
    exit 1
fi
# Stage the checkpoints (and their .json) under distinct names: fold folders all call theirs final.safetensors.
rm -rf build/model_weights
mkdir -p build/model_weights
for index in "${!weights[@]}"; do
    checkpoint=${weights[$index]}
    [ -f "$checkpoint" ] || { echo "build.sh: error: $checkpoint: no such checkpoint" >&2; exit 1; }
    # The metadata header sits at the start of a safetensors file; a synthetic-data run is flagged there.
    if head -c 1048576 "$checkpoint" | grep -ac 'synthetic\\": true' > /dev/null; then
        echo "build.sh: WARNING: $checkpoint was trained on synthetic data: for demos and tests only, not for real scans" >&2
    fi
    name=$(basename "$checkpoint")
    [ $named -eq 0 ] || name="$(basename "$(cd "$(dirname "$checkpoint")" && pwd)")-$name"
    [ ! -e "build/model_weights/$name" ] || name="$index-$name"
    cp "$checkpoint" "build/model_weights/$name"
    [ ! -f "${checkpoint%.safetensors}.json" ] || cp "${checkpoint%.safetensors}.json" "build/model_weights/${name%.safetensors}.json"
    # Its int8 model (sparseg quantize), if any; the image checks its stamp before running it with --precision int8.
    for part in xml bin json; do
        [ ! -f "${checkpoint%.safetensors}.int8.$part" ] || cp "${checkpoint%.safetensors}.int8.$part" "build/model_weights/${name%.safetensors}.int8.$part"
    done
    chmod a+r build/model_weights/*  # the image's unprivileged user reads them
    echo "baking in $checkpoint as model_weights/$name"
done

# An offline wheelhouse is served over HTTP on loopback for the length of the build, so the wheels are never
# copied into the build context or a layer (that cost their 4 GB twice more on disk). The port is fixed (the
# environment layer's cache key holds the address, so a second build reuses it); SPARSEG_WHEELHOUSE_PORT moves it.
wheelhouse_args=()
server_pid=""
trap '[ -z "$server_pid" ] || { kill "$server_pid" 2> /dev/null; wait "$server_pid" 2> /dev/null; } || true' EXIT
if [ -n "$wheelhouse" ]; then
    wheels=("$wheelhouse"/*.whl)
    [ ${#wheels[@]} -gt 0 ] || { echo "build.sh: error: no wheels (*.whl) in $wheelhouse" >&2; exit 1; }
    port=${SPARSEG_WHEELHOUSE_PORT:-8765}
    if ! [[ $port =~ ^[0-9]{1,5}$ ]] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
        echo "build.sh: error: SPARSEG_WHEELHOUSE_PORT must be a port number from 1 to 65535, not '$port'" >&2
        exit 2
    fi
    url=http://127.0.0.1:$port/
    # The server says "ready" only once it holds the port itself, so another server already there (an earlier
    # build's, say) is an error here, never the source of the wheels.
    ready=$(mktemp)
    python3 -c 'import functools, http.server, sys
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), functools.partial(
    http.server.SimpleHTTPRequestHandler, directory=sys.argv[2]))
print("ready", flush=True)
server.serve_forever()' "$port" "$wheelhouse" > "$ready" 2> /dev/null &
    server_pid=$!
    for _ in $(seq 100); do
        grep -q ready "$ready" && break
        kill -0 "$server_pid" 2> /dev/null || break
        sleep 0.1
    done
    if ! grep -q ready "$ready" || ! kill -0 "$server_pid" 2> /dev/null; then
        rm -f "$ready"
        echo "build.sh: error: cannot serve the wheelhouse $wheelhouse on 127.0.0.1:$port (port in use?" \
             "set SPARSEG_WHEELHOUSE_PORT to a free one)" >&2
        exit 1
    fi
    rm -f "$ready"
    wheelhouse_args=(--network host --build-arg WHEELHOUSE_URL="$url")
    echo "offline build from $wheelhouse (${#wheels[@]} wheels, served on $url)"
fi

# The base: the registry's python image where it can be had, else a Debian bookworm made here (no registry needed).
make_local_base() {
    if [ "$(id -u)" != 0 ] || ! command -v debootstrap > /dev/null; then
        echo "build.sh: error: no base image: $registry_base cannot be pulled (no registry reachable?) and" \
             "$local_base cannot be made here (docker/base-image.sh needs root and debootstrap). Either pull" \
             "$registry_base where a registry is reachable (docker pull, or docker load of a saved copy), or run" \
             "./build.sh as root with debootstrap installed (apt-get install debootstrap)" >&2
        exit 1
    fi
    echo "making the base image $local_base from Debian bookworm with docker/base-image.sh"
    docker/base-image.sh "$local_base"
}
if [ "$base" = local ]; then
    base=$local_base
fi
if [ "$base" = auto ]; then
    if docker image inspect "$registry_base" > /dev/null 2>&1 \
            || timeout "${SPARSEG_PULL_TIMEOUT:-120}" docker pull --quiet "$registry_base" > /dev/null 2>&1; then
        base=$registry_base
    else
        base=$local_base
        docker image inspect "$base" > /dev/null 2>&1 || make_local_base
    fi
elif [ "$base" = "$local_base" ] && ! docker image inspect "$base" > /dev/null 2>&1; then
    make_local_base
fi
echo "base image: $base"

started=$(date +%s)
docker build --force-rm "${wheelhouse_args[@]}" --build-arg BASE_IMAGE="$base" --tag "$tag" .
rm -rf build/model_weights
size=$(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.2f GB", $1 / 1e9}')
echo "built $tag in $(( $(date +%s) - started )) s; image size $size"
