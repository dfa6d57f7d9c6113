# syntax=docker/dockerfile:1
# icdcoder image: one image for every stage and the store worker (`icdcoder worker STAGE`), the
# HTTP API (`icdcoder serve`) and the schema upgrade (`icdcoder db upgrade`); see deploy/README.md.
#   docker build -t icdcoder:0.1.0 .                                  # CPU (default)
#   docker build --build-arg VARIANT=gpu -t icdcoder:0.1.0-gpu .      # CUDA torch + faiss-gpu-cu12
# Nothing is downloaded at run time: the embedding model ships in a Python package and the
# built-in pack's FAISS index is built here, into /opt/icdcoder/cache.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# cpu: torch from the PyTorch CPU wheel index (no CUDA wheels) and faiss-cpu;
# gpu: torch from PyPI (CUDA wheels) and faiss-gpu-cu12 in place of faiss-cpu.
ARG VARIANT=cpu
ARG TORCH_VERSION=2.13.0
ARG FAISS_GPU_VERSION=1.14.1.post1
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HOME=/tmp \
    ICDCODER_CACHE_DIR=/opt/icdcoder/cache
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN python -m venv /opt/venv
# torch first, pinned, so nothing installed after it picks another build.
RUN case "$VARIANT" in \
      cpu) pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu ;; \
      gpu) pip install --no-cache-dir "torch==${TORCH_VERSION}" ;; \
      *) echo "VARIANT must be cpu or gpu, not $VARIANT" >&2; exit 1 ;; \
    esac
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY icdcoder ./icdcoder
# pip check before the swap: the project's metadata names faiss-cpu, which gpu then replaces.
RUN pip install --no-cache-dir . \
 && pip check \
 && if [ "$VARIANT" = gpu ]; then \
      pip uninstall -y faiss-cpu && pip install --no-cache-dir "faiss-gpu-cu12==${FAISS_GPU_VERSION}"; \
    fi
# The built-in pack's index (and the parsed catalogue, and on cpu the int8 query encoder), so
# pods using it start without building it; gpu also gets the flat index FAISS-GPU searches. A
# mounted pack should carry its own (icdcoder pack build --vectors).
RUN icdcoder index build \
 && if [ "$VARIANT" = gpu ]; then \
      ICDCODER_RETRIEVER__ENCODER=torch ICDCODER_RETRIEVER__INDEX=flat icdcoder index build; \
    fi \
 && chmod -R a+rX /opt/icdcoder

FROM ${PYTHON_IMAGE}
ARG VARIANT=cpu
LABEL org.opencontainers.image.title="icdcoder" \
      org.opencontainers.image.description="ICD-10-CM coding workers on Redis streams and an HTTP API (${VARIANT})" \
      org.opencontainers.image.licenses="Apache-2.0"
# uid 10001 with a passwd entry (getpass.getuser() in torch needs one); HOME=/tmp, which pods
# mount as an emptyDir under readOnlyRootFilesystem.
# /var/cache/icdcoder: the writable cache a mounted pack needs (a Compose named volume starts as
# a copy of it, owned by the worker; in Kubernetes an emptyDir).
RUN groupadd --gid 10001 icdcoder \
 && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin icdcoder \
 && install -d -o 10001 -g 10001 -m 0755 /var/cache/icdcoder
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HOME=/tmp \
    ICDCODER_CACHE_DIR=/opt/icdcoder/cache \
    ICDCODER_HTTP__PORT=8080
COPY --from=build /opt/venv /opt/venv
# Read-only for the worker: owned by root, readable by everyone.
COPY --from=build /opt/icdcoder /opt/icdcoder
USER 10001
EXPOSE 8080
ENTRYPOINT ["icdcoder"]
CMD ["worker", "segmenter"]
