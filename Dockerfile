# otel-llm-eval sidecar image (also runs examples/app.py in docker-compose).
#   docker build -t otel-llm-eval:local .
FROM python:3.11.10-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# Dependencies first (cached while only sources change); the exporter extra is for the example app.
COPY pyproject.toml README.md ./
COPY otel_llm_eval ./otel_llm_eval
RUN pip install ".[sidecar,exporter]"
COPY examples ./examples

RUN useradd --system --uid 10001 --home-dir /data otel && mkdir -p /data && chown otel /data
USER otel
VOLUME ["/data"]
EXPOSE 9318

HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9318/healthz', timeout=2)"

ENTRYPOINT ["otel-llm-eval"]
CMD ["sidecar", "--host", "0.0.0.0", "--port", "9318", "--db", "/data/otel-llm-eval.db"]
