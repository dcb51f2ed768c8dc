"""Schemathesis against the sidecar's generated OpenAPI spec: no 5xx, responses match the schema."""

from __future__ import annotations

import tempfile

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from otel_llm_eval.sidecar.api import create_app
from otel_llm_eval.sidecar.server import build

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# Built at import (schemathesis reads the schema at collection); stopped by the module fixture.
_DIR = tempfile.TemporaryDirectory(prefix="sidecar-openapi-")
# the in-process client calls itself "testserver": allow that Host name (guard.py)
_SIDECAR = build({"state": {"db_path": f"{_DIR.name}/s.db"}, "plugins": [],
                  "server": {"allowed_hosts": ["testserver"]}}, plugins=[], environ={})
_APP = create_app(_SIDECAR)
schema = schemathesis.openapi.from_asgi("/openapi.json", _APP)


@pytest.fixture(scope="module", autouse=True)
def _running_sidecar():
    _SIDECAR.start()
    try:
        yield
    finally:
        _SIDECAR.stop()
        _DIR.cleanup()


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_json_route_answers_within_its_schema_and_never_with_a_server_error(case):
    case.call_and_validate()
