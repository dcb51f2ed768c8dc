"""Collector configs under processors/: a structural check with PyYAML (no collector binary
validates offline): every pipeline entry is defined, connectors are used as exporter and receiver,
routing targets exist, memory_limiter comes first and batch is present."""

from __future__ import annotations

import copy

import pytest
import yaml

from bundle_helpers import ROOT

PROC = ROOT / "processors"
FILES = sorted(p.name for p in PROC.glob("*.yaml"))
KNOWN = {
    "receivers": {"otlp"},
    "processors": {"memory_limiter", "batch"},
    "exporters": {"otlp", "otlphttp", "load_balancing"},
    "connectors": {"routing"},
    "extensions": {"health_check"},
}


def _load(name: str) -> dict:
    return yaml.safe_load((PROC / name).read_text())


def structural_problems(cfg: dict) -> list[str]:
    """Everything a collector would refuse at startup that a structural check can see."""
    problems = []
    for section, types in KNOWN.items():
        for cid in cfg.get(section) or {}:
            if cid.split("/")[0] not in types:
                problems.append(f"{section}: unknown component type {cid}")
    pipelines = cfg["service"]["pipelines"]
    connectors = set(cfg.get("connectors") or {})
    used_as_exporter, used_as_receiver = set(), set()
    for pname, p in pipelines.items():
        signal = pname.split("/")[0]
        if signal not in ("traces", "logs", "metrics"):
            problems.append(f"pipeline {pname}: unknown signal")
        for r in p.get("receivers", []):
            if r in connectors:
                used_as_receiver.add(r)
            elif r not in (cfg.get("receivers") or {}):
                problems.append(f"pipeline {pname}: receiver {r} is not defined")
        for e in p.get("exporters", []):
            if e in connectors:
                used_as_exporter.add(e)
            elif e not in (cfg.get("exporters") or {}):
                problems.append(f"pipeline {pname}: exporter {e} is not defined")
        for proc in p.get("processors", []):
            if proc not in (cfg.get("processors") or {}):
                problems.append(f"pipeline {pname}: processor {proc} is not defined")
        if not p.get("receivers") or not p.get("exporters"):
            problems.append(f"pipeline {pname}: needs receivers and exporters")
    for c in connectors:
        if c not in used_as_exporter or c not in used_as_receiver:
            problems.append(f"connector {c} must be used as an exporter and as a receiver")
    for cid, c in (cfg.get("connectors") or {}).items():
        targets = list(c.get("default_pipelines", []))
        for route in c.get("table", []):
            targets += route["pipelines"]
            if not (route.get("condition") or route.get("statement")):
                problems.append(f"{cid}: a route without condition")
        for t in targets:
            if t not in pipelines:
                problems.append(f"{cid}: routes to undefined pipeline {t}")
            elif cid not in pipelines[t].get("receivers", []):
                problems.append(f"{cid}: pipeline {t} does not receive from it")
    for ext in cfg["service"].get("extensions", []):
        if ext not in (cfg.get("extensions") or {}):
            problems.append(f"extension {ext} is not defined")
    return problems


def test_the_three_collector_configs_exist():
    assert FILES == ["collector-loadbalancing.yaml", "collector-sidecar-agent.yaml", "collector.yaml"]


@pytest.mark.parametrize("name", FILES)
def test_collector_config_is_structurally_valid(name):
    assert structural_problems(_load(name)) == []


@pytest.mark.parametrize("name", FILES)
def test_every_pipeline_limits_memory_first_and_batches_before_exporting(name):
    cfg = _load(name)
    for pname, p in cfg["service"]["pipelines"].items():
        procs = p.get("processors", [])
        from_receiver = any(r in (cfg.get("receivers") or {}) for r in p["receivers"])
        if from_receiver:
            assert procs[:1] == ["memory_limiter"], pname
        to_exporter = any(e in (cfg.get("exporters") or {}) for e in p["exporters"])
        if to_exporter:
            assert "batch" in procs, pname


BROKEN = [
    ("an undefined exporter", lambda c: c["service"]["pipelines"]["traces/sidecar"]["exporters"].append("otlp/missing"),
     "exporter otlp/missing is not defined"),
    ("a route to a missing pipeline", lambda c: c["connectors"]["routing/traces"]["table"][0]["pipelines"].append("traces/nope"),
     "routes to undefined pipeline traces/nope"),
    ("a connector used on one side only", lambda c: c["service"]["pipelines"].pop("logs/in"),
     "connector routing/logs must be used as an exporter and as a receiver"),
    ("an undefined processor", lambda c: c["service"]["pipelines"]["traces/in"]["processors"].append("filter/x"),
     "processor filter/x is not defined"),
]


@pytest.mark.parametrize("mutate,problem", [(m, p) for _, m, p in BROKEN], ids=[b[0] for b in BROKEN])
def test_structural_check_catches(mutate, problem):
    cfg = copy.deepcopy(_load("collector.yaml"))
    mutate(cfg)
    assert any(problem in p for p in structural_problems(cfg)), structural_problems(cfg)


def test_all_spans_reach_the_tracing_backend_and_genai_spans_and_logs_also_reach_the_sidecar():
    cfg = _load("collector.yaml")
    routing = cfg["connectors"]["routing/traces"]
    assert routing["default_pipelines"] == ["traces/backend"]
    (route,) = routing["table"]
    assert route["context"] == "span"
    assert set(route["pipelines"]) == {"traces/backend", "traces/sidecar"}
    assert 'attributes["gen_ai.operation.name"] != nil' in route["condition"]
    assert 'attributes["gen_ai.evaluation.name"] != nil' in route["condition"]
    pipes = cfg["service"]["pipelines"]
    assert pipes["traces/backend"]["exporters"] == ["otlp/tracing"]
    assert pipes["traces/sidecar"]["exporters"] == ["otlphttp/sidecar"]
    assert pipes["logs/sidecar"]["exporters"] == ["otlphttp/sidecar"]
    assert cfg["exporters"]["otlphttp/sidecar"]["endpoint"].endswith("http://sidecar:9318}")


def test_loadbalancing_variant_shards_by_service_name_over_several_sidecar_collectors():
    cfg = _load("collector-loadbalancing.yaml")
    lb = cfg["exporters"]["load_balancing/sidecars"]
    assert lb["routing_key"] == "service"
    assert "otlp" in lb["protocol"]
    assert len(lb["resolver"]["static"]["hostnames"]) >= 2
    pipes = cfg["service"]["pipelines"]
    assert pipes["traces/sidecar"]["exporters"] == ["load_balancing/sidecars"]
    assert pipes["logs/sidecar"]["exporters"] == ["load_balancing/sidecars"]
    assert pipes["traces/backend"]["exporters"] == ["otlp/tracing"]
    agent = _load("collector-sidecar-agent.yaml")
    assert set(agent["receivers"]["otlp"]["protocols"]) == {"grpc"}  # what the load-balancer speaks
