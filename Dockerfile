# icdcoder worker image (CPU by default). One image, every stage: `icdcoder worker STAGE`.
#   docker build -t icdcoder:0.1.0 .
#   docker build --build-arg FAISS=gpu -t icdcoder:0.1.0-gpu .   # FAISS on GPUs (run with GPUs)
FROM python:3.11-slim

# cpu: faiss-cpu (from the project's dependencies); gpu: faiss-gpu-cu12 in its place.
ARG FAISS=cpu

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HOME=/tmp \
    ICDCODER_CACHE_DIR=/opt/icdcoder/cache \
    ICDCODER_HTTP_PORT=8080

WORKDIR /app

# torch first, pinned, so nothing installed after it picks another build.
RUN pip install torch==2.13.0

COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY icdcoder ./icdcoder
RUN pip install . \
 && if [ "$FAISS" = "gpu" ]; then pip uninstall -y faiss-cpu && pip install "faiss-gpu-cu12>=1.8"; fi

# The FAISS index, built once into the image so pods start without building it.
RUN icdcoder index build && chmod -R a+rX /opt/icdcoder

USER 10001
EXPOSE 8080
ENTRYPOINT ["icdcoder"]
CMD ["worker", "segmenter"]
