"""docker-compose.yml (no docker engine here): it parses, every mounted path exists, images are
pinned, long-running services have healthchecks, data lives in named volumes, and the mounted
configs are the generated ones."""

from __future__ import annotations

import copy
import json
import re

import jsonschema
import yaml

from bundle_helpers import ROOT
from otel_llm_eval.bundle.collector import COLLECTOR_IMAGE
from otel_llm_eval.bundle.common import JOB_NAME

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
COMPOSE_SCHEMA = json.loads((ROOT / "tests" / "schema" / "compose.schema.json").read_text())


def test_compose_file_validates_against_the_compose_specification_schema():
    errors = list(jsonschema.Draft7Validator(COMPOSE_SCHEMA).iter_errors(COMPOSE))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])


def test_compose_schema_rejects_a_misspelled_service_key():
    broken = copy.deepcopy(COMPOSE)
    broken["services"]["sidecar"]["healtcheck"] = broken["services"]["sidecar"].pop("healthcheck")
    assert list(jsonschema.Draft7Validator(COMPOSE_SCHEMA).iter_errors(broken))


def test_compose_has_the_whole_stack():
    assert {"collector", "sidecar", "app", "prometheus", "alertmanager", "grafana"} <= set(SERVICES)


def test_every_bind_mounted_path_exists_and_named_volumes_are_declared():
    for name, svc in SERVICES.items():
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in COMPOSE["volumes"], f"{name}: named volume {source} is not declared"


def test_images_are_pinned_to_a_version_tag():
    for name, svc in SERVICES.items():
        if svc.get("build"):
            assert "image" not in svc, f"{name}: build and image together"
            continue
        image = svc["image"]
        tag = image.rsplit(":", 1)[1] if ":" in image else ""
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {image} is not pinned"
    assert SERVICES["collector"]["image"] == COLLECTOR_IMAGE


def test_long_running_services_have_healthchecks():
    # collector and jaeger images are distroless (no shell or wget to probe with); the app is a client
    for name in ("sidecar", "prometheus", "alertmanager", "grafana"):
        assert SERVICES[name]["healthcheck"]["test"][0] == "CMD", name


def test_sidecar_image_builds_from_the_dockerfile_with_the_sidecar_extra():
    assert SERVICES["sidecar"]["build"] == "."
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r'pip install "\.\[sidecar[,\]]', dockerfile)
    assert SERVICES["app"]["build"] == "."  # same Dockerfile, same image
    assert "examples/app.py" in SERVICES["app"]["entrypoint"]


def test_prometheus_loads_the_generated_rules_and_scrapes_the_sidecar_job():
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    (job,) = prom["scrape_configs"]
    assert job["job_name"] == JOB_NAME
    assert job["static_configs"][0]["targets"] == ["sidecar:9318"]
    mounts = SERVICES["prometheus"]["volumes"]
    assert "./alerts:/etc/prometheus/alerts:ro" in mounts
    for rule_file in prom["rule_files"]:
        assert (ROOT / "alerts" / rule_file.rsplit("/", 1)[1]).exists()
    assert prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]


def test_collector_mounts_the_routing_config_and_points_at_the_sidecar():
    assert "./processors/collector.yaml:/etc/otelcol-contrib/config.yaml:ro" in SERVICES["collector"]["volumes"]
    assert SERVICES["collector"]["environment"]["OTEL_LLM_EVAL_SIDECAR_ENDPOINT"] == "http://sidecar:9318"


def test_ports_are_published_on_loopback_only():
    for name, svc in SERVICES.items():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: {port}"


def test_promtool_accepts_the_compose_prometheus_config_with_its_rules(tmp_path):
    import subprocess

    from conftest import require_binary

    promtool = require_binary("promtool")
    text = (ROOT / "deploy" / "prometheus.yml").read_text()
    # the container path of the rules, pointed at the repository's alerts/ for the check
    (tmp_path / "prometheus.yml").write_text(text.replace("/etc/prometheus/alerts/", f"{ROOT / 'alerts'}/"))
    r = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 1 rule files found" in r.stdout
