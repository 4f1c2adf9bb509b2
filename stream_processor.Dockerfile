# The stream processor worker.
#   docker build -f stream_processor.Dockerfile -t stream-processor:0.2.0 .
# Lint: scripts/deploy-tools.sh, then .cache/tools/venv/bin/hadolint stream_processor.Dockerfile (tests/deployment).
#
# The base image is pinned to a Python patch release and Debian release. For byte-for-byte reproducible builds pin
# its digest as well, e.g. FROM python:3.12.12-slim-trixie@sha256:<digest> (the digest from
# `docker buildx imagetools inspect python:3.12.12-slim-trixie`), and let a bot (Renovate, Dependabot) bump both.
FROM python:3.12.12-slim-trixie

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# Runtime dependencies first (a layer that survives code changes); every version is pinned in requirements.txt.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY pyproject.toml README.md ./
COPY stream_processor ./stream_processor
COPY config ./config
# The package itself (its dependencies are above), and an unprivileged user with fixed ids 10001:10001, the ones
# the Kubernetes securityContext names.
RUN pip install --no-cache-dir --no-deps . \
    && groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin app
USER 10001:10001

# 8080: Prometheus /metrics; 8081: /health and /ready
EXPOSE 8080 8081

# For docker and compose (Kubernetes ignores it and uses the Deployment's probes). The slim image has no curl:
# Python's urllib; a 503 raises, so any answer but 200 fails the check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8081/health', timeout=4)"]

ENTRYPOINT ["stream-processor"]
CMD ["worker", "--config", "/app/config/streams-config.yaml"]
