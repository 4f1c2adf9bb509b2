# The stream processor worker. Build: docker build -f stream_processor.Dockerfile -t stream-processor .
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app

COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY pyproject.toml README.md ./
COPY stream_processor ./stream_processor
COPY config ./config
RUN pip install --no-cache-dir --no-deps . && useradd --uid 10001 --no-create-home app
USER 10001

# 8080: Prometheus /metrics; 8081: /health and /ready
EXPOSE 8080 8081
ENTRYPOINT ["stream-processor"]
CMD ["worker", "--config", "/app/config/streams-config.yaml"]
