# SPARSeg grand-challenge algorithm image: /input (ADC + Z_ADC) -> /output/images/hie-lesion-segmentation/overlay.mha
#
# Build with ./build.sh (it checks model_weights/ and stages an optional offline wheelhouse).
# BASE_IMAGE: any Debian/Ubuntu image with python3 (3.11) and python3-venv; the default tag is made
# locally from Debian bookworm by docker/base-image.sh, so no registry is needed. With a registry,
# `./build.sh --base python:3.11-slim-bookworm` works too. CUDA comes from the torch wheels; the
# driver comes from the host with `docker run --gpus all`.
ARG BASE_IMAGE=sparseg-base:bookworm

# One stage: an offline wheelhouse is never a layer. build.sh --wheelhouse DIR serves DIR over HTTP on the
# host's loopback for the length of the build (docker build --network host) and passes its address here;
# without it pip installs from PyPI. pip precompiles the environment: the root file system is read-only at run
# time. (Copying a wheelhouse in, or a venv from a first stage, would cost its size again in layers.)
FROM ${BASE_IMAGE}
ARG WHEELHOUSE_URL=""
COPY requirements.txt /tmp/requirements.txt
RUN groupadd --gid 1000 user \
 && useradd --uid 1000 --gid user --no-create-home --home-dir /tmp --shell /usr/sbin/nologin user \
 && python3 -m venv /opt/venv \
 && if [ -n "$WHEELHOUSE_URL" ]; then \
        host=${WHEELHOUSE_URL#*://} && host=${host%%[:/]*} \
        && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links "$WHEELHOUSE_URL" \
            --trusted-host "$host" -r /tmp/requirements.txt; \
    else \
        /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt; \
    fi \
 && rm /tmp/requirements.txt

# The algorithm. Code and weights under /opt/app, owned by root, run as an unprivileged user.
COPY process.py /opt/app/process.py
COPY sparseg /opt/app/sparseg
COPY resources /opt/app/resources
# The checkpoints build.sh staged: model_weights/*.safetensors, or those named with --weights.
COPY build/model_weights /opt/app/model_weights
# The baked checkpoints' networks exported to OpenVINO (the CPU's engine) beside them (sparseg/derived.py): a CPU
# job then starts without importing segmentation-models-pytorch, timm and torchvision, and without exporting
# (see docs/performance.md). int8 models staged by build.sh are kept as they are.
RUN /opt/venv/bin/python -m compileall -q /opt/app/sparseg /opt/app/process.py > /dev/null \
 && cd /opt/app && /opt/venv/bin/python -m sparseg export model_weights/*.safetensors
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    TORCHINDUCTOR_CACHE_DIR=/tmp/torchinductor \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /opt/app
USER user
ENTRYPOINT ["python3", "/opt/app/process.py"]
