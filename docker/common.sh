# Shared by test.sh and docker/hardening.sh (source it; it defines, it runs nothing).

# The organisers' fixed `docker run` flags (their reference test.sh).
ORGANISER_FLAGS=(--network none --cap-drop ALL --security-opt no-new-privileges --memory 4g --memory-swap 4g
                 --shm-size 128m --pids-limit 256)
# grand-challenge's read-only root with a fresh, writable /tmp.
READ_ONLY_FLAGS=(--read-only --tmpfs /tmp:rw,exec,size=1g)

# writable_volume NAME IMAGE: a Docker volume the image's unprivileged user can write (a new one is root-owned).
writable_volume() {
    docker volume create "$1" > /dev/null
    docker run --rm --user root -v "$1":/v --entrypoint chmod "$2" 777 /v
}

# job_seconds LOG, job_peak_mib LOG: what the container job logged about one case.
job_seconds() { grep -o 'in [0-9.]* s; peak memory' <<< "$1" | awk '{print $2}' || true; }
job_peak_mib() { grep -o 'peak memory [0-9]* MiB' <<< "$1" | awk '{print $3}' || true; }
