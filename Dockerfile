# Qwen Mask Component: one image running supervisord (broker, uploader,
# workers, front end) as the unprivileged user `qmc`.
#
#   CPU (default):  docker build -t qwen-mask .
#   CUDA:           docker build -t qwen-mask:cuda \
#                     --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#                     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
#                   docker run --gpus all -e SCHP_DEVICE=cuda ...
#
# Build arguments:
#   BASE_IMAGE       any Debian/Ubuntu image with apt (both stages use its python3).
#   TORCH_INDEX_URL  where torch comes from. The default is PyTorch's CPU wheel index:
#                    PyPI's own Linux torch wheel pulls several GB of CUDA libraries.
#                    Empty = PyPI's default wheel (CUDA).
#   PIP_NO_INDEX     set to 1 for an offline build from wheelhouse/ alone.
#
# Optional build inputs (see docker/README.md; both ignored by git):
#   docker/wheelhouse/*.whl  wheels pip prefers to any index (e.g. the CPU torch wheel);
#                         a torch wheel there is installed instead of TORCH_INDEX_URL's.
#   docker/pip-ca.crt     CA bundle for a TLS-intercepting package proxy. Only the build
#                         stage sees it; the final image takes the venv, not the CA.
#
# Weights are not baked in: mount them and set SCHP_WEIGHTS (see README).
ARG BASE_IMAGE=debian:bookworm-slim

# ---- build stage: a venv with the pinned requirements ----------------------------
FROM ${BASE_IMAGE} AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_NO_INDEX=
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# docker/ always exists (its README), so this works without the optional inputs.
COPY docker/ /build/
COPY requirements.txt ./
RUN set -eu; \
    if [ -f /build/pip-ca.crt ]; then export PIP_CERT=/build/pip-ca.crt; fi; \
    python3 -m venv venv; \
    torch_pin="$(grep -E '^torch==' requirements.txt | cut -d' ' -f1)"; \
    if ls /build/wheelhouse/torch-*.whl >/dev/null 2>&1; then \
        venv/bin/pip install --no-index --no-deps --find-links /build/wheelhouse "$torch_pin"; \
    elif [ -n "$TORCH_INDEX_URL" ]; then \
        venv/bin/pip install --no-deps --index-url "$TORCH_INDEX_URL" "$torch_pin"; \
    fi; \
    venv/bin/pip install --find-links /build/wheelhouse -r requirements.txt; \
    venv/bin/python -c "import torch, zmq, tornado; print('torch', torch.__version__)"
# The code, in two steps rather than one COPY per folder (.dockerignore keeps the
# context to what is named here, docker/ and requirements.txt).
COPY . /ctx/
RUN cd /ctx && cp -a common frontend broker segworker uploader config.yaml supervisord.conf \
    start.sh /app/ && rm -rf /ctx

# ---- final stage: runtime libraries, the venv, the code --------------------------
# Few layers after the big COPY: each step there copies the whole image on storage
# drivers without layer sharing (vfs).
FROM ${BASE_IMAGE}
ENV PYTHONUNBUFFERED=1 \
    PATH=/app/venv/bin:$PATH \
    DEBIAN_FRONTEND=noninteractive
WORKDIR /app
EXPOSE 8003
# Settings come from the environment (MASK_ASSET_URL, MASK_COMPONENT_SECRET, ...).
CMD ["./start.sh"]
# libgl1/libglib2.0-0: opencv-contrib-python (pulled by mediapipe) links them.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libgl1 libglib2.0-0 ca-certificates curl \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && useradd --system --home-dir /app --shell /usr/sbin/nologin qmc
COPY --from=build /app /app
# cv2 and mediapipe load here (with the runtime libraries); -B writes no .pyc as root.
RUN python -B -c "import cv2, mediapipe, torch; print('torch', torch.__version__, 'cv2', cv2.__version__)" \
 && mkdir -p var && chown qmc var && chmod 700 var
USER qmc
# Mount a volume at /app/var to keep the journal, spool and logs across containers.
VOLUME ["/app/var"]
