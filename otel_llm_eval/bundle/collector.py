"""OpenTelemetry Collector (contrib) configurations under processors/.

Pure data, no I/O. Three files:

- `collector.yaml`: one Collector in front of one sidecar. Receives OTLP, sends every span to the
  tracing backend, and routes LLM spans (and evaluation/feedback spans) plus GenAI log records to
  the sidecar with the routing connector.
- `collector-loadbalancing.yaml`: the gateway tier for several sidecars. The load-balancing exporter
  hashes `service.name` onto tier-2 Collectors, so each sidecar sees whole services and its
  experiment statistics are complete. The exporter speaks OTLP/gRPC only and the sidecar speaks
  OTLP/HTTP, hence the second tier.
- `collector-sidecar-agent.yaml`: the tier-2 Collector that runs next to each sidecar (OTLP/gRPC in,
  OTLP/HTTP to the sidecar on localhost).

Endpoints come from environment variables with defaults (`${env:NAME:-default}`), so the same
files work in docker compose and elsewhere.
"""

from __future__ import annotations

from typing import Any

#: Pinned image these configs are written for. Needs the routing connector's span context (v0.114+),
#: and the load-balancing exporter's `load_balancing` name and `routing_key: service` for logs
#: (contrib PR #46241, 2026; older releases hash logs by trace id whatever routing_key says).
COLLECTOR_IMAGE = "otel/opentelemetry-collector-contrib:0.154.0"

SIDECAR_ENDPOINT = "${env:OTEL_LLM_EVAL_SIDECAR_ENDPOINT:-http://sidecar:9318}"
TRACING_ENDPOINT = "${env:TRACING_BACKEND_ENDPOINT:-jaeger:4317}"

#: OTTL conditions (span context) that mark a span the sidecar evaluates: LLM calls from every
#: instrumentation family the sidecar normalizes, plus evaluation and feedback spans.
GENAI_SPAN_CONDITIONS: tuple[str, ...] = (
    'attributes["gen_ai.operation.name"] != nil',
    'attributes["gen_ai.evaluation.name"] != nil',
    'attributes["gen_ai.request.model"] != nil',
    'attributes["gen_ai.system"] != nil',
    'attributes["llm.request.type"] != nil',
    'attributes["openinference.span.kind"] == "LLM"',
    'attributes["langfuse.observation.type"] == "generation"',
)

#: OTTL conditions (log context) for GenAI log records: evaluation results and message events.
GENAI_LOG_CONDITIONS: tuple[str, ...] = (
    'attributes["gen_ai.evaluation.name"] != nil',
    'attributes["gen_ai.operation.name"] != nil',
    'attributes["event.name"] != nil and IsMatch(attributes["event.name"], "^gen_ai\\\\.")',
)


def _any(conditions: tuple[str, ...]) -> str:
    return " or ".join(f"({c})" for c in conditions)


def _common_processors() -> dict[str, Any]:
    return {
        "memory_limiter": {"check_interval": "1s", "limit_percentage": 80, "spike_limit_percentage": 20},
        "batch": {"send_batch_size": 512, "send_batch_max_size": 1024, "timeout": "1s"},
    }


def _otlp_receiver() -> dict[str, Any]:
    return {"otlp": {"protocols": {
        "grpc": {"endpoint": "0.0.0.0:4317"},
        "http": {"endpoint": "0.0.0.0:4318"},
    }}}


def _sidecar_exporter() -> dict[str, Any]:
    # otlphttp appends /v1/traces and /v1/logs; retries honour the sidecar's 429/503 Retry-After.
    return {"otlphttp/sidecar": {
        "endpoint": SIDECAR_ENDPOINT,
        "compression": "gzip",
        "retry_on_failure": {"enabled": True, "max_elapsed_time": "300s"},
        "sending_queue": {"enabled": True, "queue_size": 5000},
    }}


def routing_config() -> dict[str, Any]:
    """Collector in front of one sidecar: all spans to tracing, GenAI spans and logs to the sidecar."""
    return {
        "receivers": _otlp_receiver(),
        "processors": _common_processors(),
        "connectors": {
            "routing/traces": {
                "default_pipelines": ["traces/backend"],
                "error_mode": "ignore",
                # A matched span goes only to the listed pipelines, so the backend is listed too.
                "table": [{"context": "span", "condition": _any(GENAI_SPAN_CONDITIONS),
                           "pipelines": ["traces/backend", "traces/sidecar"]}],
            },
            # No default pipeline: other log records are not the sidecar's business and are dropped
            # here (add a default pipeline to forward them to your log backend).
            "routing/logs": {
                "error_mode": "ignore",
                "table": [{"context": "log", "condition": _any(GENAI_LOG_CONDITIONS),
                           "pipelines": ["logs/sidecar"]}],
            },
        },
        "exporters": {
            "otlp/tracing": {"endpoint": TRACING_ENDPOINT, "tls": {"insecure": True}},
            **_sidecar_exporter(),
        },
        "extensions": {"health_check": {"endpoint": "0.0.0.0:13133"}},
        "service": {
            "extensions": ["health_check"],
            "pipelines": {
                "traces/in": {"receivers": ["otlp"], "processors": ["memory_limiter"],
                              "exporters": ["routing/traces"]},
                "traces/backend": {"receivers": ["routing/traces"], "processors": ["batch"],
                                   "exporters": ["otlp/tracing"]},
                "traces/sidecar": {"receivers": ["routing/traces"], "processors": ["batch"],
                                   "exporters": ["otlphttp/sidecar"]},
                "logs/in": {"receivers": ["otlp"], "processors": ["memory_limiter"],
                            "exporters": ["routing/logs"]},
                "logs/sidecar": {"receivers": ["routing/logs"], "processors": ["batch"],
                                 "exporters": ["otlphttp/sidecar"]},
            },
        },
    }


def loadbalancing_config() -> dict[str, Any]:
    """Gateway for N sidecars: GenAI spans and logs sharded by service.name, all spans to tracing."""
    cfg = routing_config()
    lb_exporter = {
        "routing_key": "service",
        "protocol": {"otlp": {"tls": {"insecure": True}, "timeout": "5s",
                              "retry_on_failure": {"enabled": True, "max_elapsed_time": "300s"},
                              "sending_queue": {"enabled": True, "queue_size": 5000}}},
        # Static list for the example; use the dns or k8s resolver where sidecars scale.
        "resolver": {"static": {"hostnames": [
            "${env:OTEL_LLM_EVAL_SIDECAR_COLLECTOR_0:-sidecar-collector-0:4317}",
            "${env:OTEL_LLM_EVAL_SIDECAR_COLLECTOR_1:-sidecar-collector-1:4317}",
        ]}},
    }
    del cfg["exporters"]["otlphttp/sidecar"]
    cfg["exporters"]["load_balancing/sidecars"] = lb_exporter
    pipelines = cfg["service"]["pipelines"]
    pipelines["traces/sidecar"]["exporters"] = ["load_balancing/sidecars"]
    pipelines["logs/sidecar"]["exporters"] = ["load_balancing/sidecars"]
    return cfg


def sidecar_agent_config() -> dict[str, Any]:
    """Tier-2 Collector next to each sidecar: OTLP/gRPC from the gateway, OTLP/HTTP to the sidecar."""
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "0.0.0.0:4317"}}}},
        "processors": _common_processors(),
        "exporters": {"otlphttp/sidecar": {
            **_sidecar_exporter()["otlphttp/sidecar"],
            "endpoint": "${env:OTEL_LLM_EVAL_SIDECAR_ENDPOINT:-http://127.0.0.1:9318}",
        }},
        "extensions": {"health_check": {"endpoint": "0.0.0.0:13133"}},
        "service": {
            "extensions": ["health_check"],
            "pipelines": {
                "traces": {"receivers": ["otlp"], "processors": ["memory_limiter", "batch"],
                           "exporters": ["otlphttp/sidecar"]},
                "logs": {"receivers": ["otlp"], "processors": ["memory_limiter", "batch"],
                         "exporters": ["otlphttp/sidecar"]},
            },
        },
    }


def render() -> dict[str, str]:
    from otel_llm_eval.bundle.common import dump_yaml

    img = f"Written for {COLLECTOR_IMAGE}."
    return {
        "processors/collector.yaml": dump_yaml(routing_config(), header=(
            "OTel Collector: every span to the tracing backend; LLM, evaluation and feedback spans and\n"
            "GenAI log records also to the otel-llm-eval sidecar (routing connector). " + img)),
        "processors/collector-loadbalancing.yaml": dump_yaml(loadbalancing_config(), header=(
            "OTel Collector gateway for several sidecars: GenAI spans and logs sharded by service.name\n"
            "(load-balancing exporter, OTLP/gRPC) onto one collector-sidecar-agent per sidecar. " + img)),
        "processors/collector-sidecar-agent.yaml": dump_yaml(sidecar_agent_config(), header=(
            "OTel Collector next to each sidecar in the load-balanced setup: OTLP/gRPC in, OTLP/HTTP\n"
            "to the sidecar. " + img)),
    }
