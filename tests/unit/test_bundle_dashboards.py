"""Generated Grafana dashboards: golden summary, JSON Schema from @grafana/schema, PromQL parses
with promtool, lint rules (ids, grid, units, datasource, $__rate_interval), catalog names."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess

import jsonschema
import pytest
import yaml

from bundle_helpers import ROOT, promql_metric_names
from conftest import require_binary
from otel_llm_eval import catalog
from otel_llm_eval.bundle import dashboards

DASH_DIR = ROOT / "dashboards"
SCHEMA = json.loads((ROOT / "tests" / "schema" / "dashboard.schema.json").read_text())
GOLDEN = ROOT / "tests" / "golden" / "bundle_dashboards.json"
DATASOURCES = DASH_DIR / "provisioning" / "datasources" / "otel-llm-eval.yaml"


def _dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASH_DIR.glob("*.json"))}


def _panels(d: dict) -> list[dict]:
    return [p for p in d["panels"] if p["type"] != "row"]


def _queries():
    for name, d in _dashboards().items():
        for p in _panels(d):
            for t in p["targets"]:
                yield name, p, t


def summary() -> dict:
    """What a reviewer should see change: per dashboard, its variables and every panel's query."""
    out = {}
    for name, d in _dashboards().items():
        out[name] = {
            "uid": d["uid"], "title": d["title"],
            "variables": [v["name"] for v in d["templating"]["list"]],
            "panels": [{"title": p["title"], "type": p["type"], "unit": p["fieldConfig"]["defaults"].get("unit"),
                        "exprs": [t["expr"] for t in p["targets"]]} for p in _panels(d)],
        }
    return out


def test_dashboards_match_the_golden_summary():
    """Regenerate with UPDATE_GOLDEN=1 after an intended change, and review the diff."""
    current = json.dumps(summary(), indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(current)
    assert GOLDEN.read_text() == current


def test_the_five_dashboards_exist_with_stable_uids_from_their_file_names():
    ds = _dashboards()
    assert set(ds) == {"llm-overview.json", "llm-experiments.json", "llm-drift-anomalies.json",
                       "llm-human-review.json", "llm-offline.json"}
    for name, d in ds.items():
        assert d["uid"] == f"otel-llm-eval-{name[:-5]}"[:40]
        assert len(d["uid"]) <= 40


def test_overview_has_the_four_seed_sections_and_service_model_provider_variables():
    d = _dashboards()["llm-overview.json"]
    rows = [p["title"] for p in d["panels"] if p["type"] == "row"]
    assert rows[:4] == ["Quality", "Performance", "Cost", "Usage"]
    assert [v["name"] for v in d["templating"]["list"]] == ["service", "model", "provider"]


@pytest.mark.parametrize("name", sorted(_dashboards()))
def test_dashboard_validates_against_the_grafana_schema(name):
    errors = sorted(jsonschema.Draft7Validator(SCHEMA).iter_errors(_dashboards()[name]), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])


BROKEN = [
    ("a string datasource is rejected", lambda d: _panels(d)[0].__setitem__("datasource", "Prometheus")),
    ("grafanalib's empty-string thresholds are rejected",
     lambda d: _panels(d)[0]["fieldConfig"]["defaults"]["thresholds"].__setitem__("steps", "")),
    ("a gridPos without width is rejected", lambda d: _panels(d)[0]["gridPos"].pop("w")),
    ("a non-numeric panel id is rejected", lambda d: _panels(d)[0].__setitem__("id", "one")),
]


@pytest.mark.parametrize("mutate", [m for _, m in BROKEN], ids=[b[0] for b in BROKEN])
def test_schema_rejects_broken_dashboards(mutate):
    d = copy.deepcopy(_dashboards()["llm-overview.json"])
    mutate(d)
    assert list(jsonschema.Draft7Validator(SCHEMA).iter_errors(d))


def _as_rule_expr(expr: str) -> str:
    text = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h")
    return re.sub(r"\$\{?\w+\}?", "x", text)


def test_every_panel_query_parses_with_promtool(tmp_path):
    promtool = require_binary("promtool")
    rules = [{"record": f"panel:q{i}", "expr": _as_rule_expr(t["expr"])} for i, (_, _, t) in enumerate(_queries())]
    path = tmp_path / "panels.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    r = subprocess.run([promtool, "check", "rules", "--lint=none", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(rules)} rules found" in r.stdout


def test_promtool_parse_check_catches_a_broken_query(tmp_path):
    promtool = require_binary("promtool")
    path = tmp_path / "bad.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "p", "rules": [
        {"record": "panel:bad", "expr": _as_rule_expr("sum(rate(llm_requests_total[$__rate_interval])")}]}]}))
    r = subprocess.run([promtool, "check", "rules", "--lint=none", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1


def test_every_panel_query_names_only_catalog_metrics():
    for name, panel, target in _queries():
        unknown = promql_metric_names(target["expr"]) - catalog.series_names()
        assert not unknown, f"{name} / {panel['title']}: {unknown}"
    for name, d in _dashboards().items():
        for var in d["templating"]["list"]:
            assert promql_metric_names(re.sub(r"label_values\((.*),\s*\w+\)", r"\1", var["definition"])) <= \
                catalog.series_names(), var


def test_lint_panel_ids_are_unique_and_panels_fit_the_grid_without_overlap():
    for name, d in _dashboards().items():
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), name
        cells = set()
        for p in d["panels"]:
            g = p["gridPos"]
            assert 0 < g["w"] <= 24 and g["x"] + g["w"] <= 24 and g["h"] > 0, (name, p["title"])
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not cells & mine, f"{name}: {p['title']} overlaps another panel"
            cells |= mine


def test_lint_every_panel_and_query_uses_the_provisioned_datasource_uid():
    provisioned = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]
    ref = {"type": provisioned["type"], "uid": provisioned["uid"]}
    for name, d in _dashboards().items():
        assert "${DS_" not in json.dumps(d) and "__inputs" not in d, name
        for p in _panels(d):
            assert p["datasource"] == ref, (name, p["title"])
            assert all(t["datasource"] == ref for t in p["targets"]), (name, p["title"])
        for var in d["templating"]["list"]:
            assert var["datasource"] == ref


def test_lint_every_panel_sets_a_unit_description_and_title():
    for name, d in _dashboards().items():
        for p in _panels(d):
            assert p["fieldConfig"]["defaults"].get("unit"), (name, p["title"])
            assert p.get("description") and p.get("title"), (name, p.get("title"))


def test_lint_rate_and_irate_use_rate_interval():
    for name, panel, target in _queries():
        for fn, window in re.findall(r"\b(i?rate)\([^\[]*\[([^\]]+)\]", target["expr"]):
            assert window == "$__rate_interval", f"{name} / {panel['title']}: {fn}(...[{window}])"


def test_lint_catches_a_rate_with_a_fixed_window():
    bad = "sum(rate(llm_requests_total[5m]))"
    assert re.findall(r"\b(i?rate)\([^\[]*\[([^\]]+)\]", bad) == [("rate", "5m")]


def test_variables_use_all_with_a_regex_all_value_and_a_current_selection():
    for name, d in _dashboards().items():
        for var in d["templating"]["list"]:
            assert var["includeAll"] and var["multi"] and var["allValue"] == ".*"
            assert var["current"]["value"] == ["$__all"], name


def test_dashboard_provisioning_points_at_where_compose_mounts_the_json():
    provider = yaml.safe_load((DASH_DIR / "provisioning" / "dashboards" / "otel-llm-eval.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == dashboards.GRAFANA_DASHBOARDS_PATH
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./dashboards:{dashboards.GRAFANA_DASHBOARDS_PATH}:ro" in mounts


def test_lint_tables_keep_their_value_columns_and_name_them():
    for name, d in _dashboards().items():
        for p in _panels(d):
            if p["type"] != "table":
                continue
            organize = next(t["options"] for t in p["transformations"] if t["id"] == "organize")
            hidden = {k for k, v in organize["excludeByName"].items() if v}
            state_filter = len(p["targets"]) == 1 and p["targets"][0]["expr"].rstrip().endswith("== 1")
            if not state_filter:  # a `== 1` state table shows its labels; its value is always 1
                assert hidden == {"Time"}, (name, p["title"])
                assert len(organize["renameByName"]) == len(p["targets"]), (name, p["title"])
            assert all(t["instant"] and t["format"] == "table" for t in p["targets"]), (name, p["title"])


def test_provisioning_files_have_what_grafana_requires():
    ds = yaml.safe_load(DATASOURCES.read_text())
    assert ds["apiVersion"] == 1
    (source,) = ds["datasources"]
    assert {"name", "type", "access", "url", "uid"} <= set(source)
    assert source["type"] == "prometheus" and source["access"] == "proxy"
    assert source["url"] == "$PROMETHEUS_URL"  # Grafana expands env vars in provisioning files
    providers = yaml.safe_load((DASH_DIR / "provisioning" / "dashboards" / "otel-llm-eval.yaml").read_text())
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["name"] and provider["options"]["path"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["grafana"]
    assert compose["environment"]["PROMETHEUS_URL"].startswith("http://prometheus:")
