# Qwen Mask Component: one image running supervisord (broker, uploader,
# workers, front end).
#
#   CPU (default):  docker build -t qwen-mask .
#   CUDA:           docker build -t qwen-mask:cuda \
#                     --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#                     --build-arg TORCH_INDEX_URL=<the PyTorch wheel index for your CUDA> .
#                   docker run --gpus all -e SCHP_DEVICE=cuda ...
#
# Weights are not baked in: mount them and set SCHP_WEIGHTS (see README).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG TORCH_INDEX_URL=""
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/app/venv/bin:$PATH

# libgl1/libglib2.0-0: opencv-contrib-python (pulled by mediapipe) links them.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-pip libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt ./
RUN python3 -m venv venv \
 && if [ -n "$TORCH_INDEX_URL" ]; then venv/bin/pip install --extra-index-url "$TORCH_INDEX_URL" -r requirements.txt; \
    else venv/bin/pip install -r requirements.txt; fi

COPY common ./common
COPY frontend ./frontend
COPY broker ./broker
COPY segworker ./segworker
COPY uploader ./uploader
COPY config.yaml supervisord.conf start.sh ./

RUN useradd --system --home /app qmc && mkdir -p var && chown -R qmc /app/var
USER qmc
EXPOSE 8003
# Settings come from the environment (MASK_ASSET_URL, MASK_COMPONENT_SECRET, ...).
CMD ["./start.sh"]
