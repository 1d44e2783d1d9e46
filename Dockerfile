# Two images from one file: `api` (no torch: the API installs and runs without it) and `worker` (torch and the
# engine). TORCH_INDEX picks the torch build: the CPU wheels by default; build the GPU worker with
# --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124
FROM python:3.11-slim AS api
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PRUNESCOPE_HOME=/data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY backend backend
COPY worker worker
COPY prunescope prunescope
COPY frontend frontend
RUN pip install --no-cache-dir -e . \
 && useradd --create-home --uid 1000 prunescope && mkdir -p /data && chown prunescope /data
USER prunescope
VOLUME /data
EXPOSE 8000
CMD ["prunescope", "api", "--host", "0.0.0.0"]

FROM api AS worker
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
USER root
RUN pip install --no-cache-dir --extra-index-url "$TORCH_INDEX" -e '.[worker]'
USER prunescope
CMD ["prunescope", "worker", "--queues", "cpu"]
