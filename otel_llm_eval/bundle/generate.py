"""Render every bundle file, write them, and compare them with what is on disk.

`render_all()` is pure (no I/O) and deterministic: the same catalog gives byte-identical files.
`write()` and `stale()` touch only the paths `render_all()` names, plus generated leftovers (files
under the bundle's directories that carry the DO NOT EDIT marker but are no longer generated).
"""

from __future__ import annotations

from pathlib import Path

from otel_llm_eval.bundle.common import DO_NOT_EDIT, dump_yaml

#: Directories the bundle owns; leftovers carrying DO_NOT_EDIT in them are reported as stale.
GENERATED_DIRS = ("dashboards", "alerts", "processors", "deploy")


def render_all() -> dict[str, str]:
    """Every generated file: relative path -> text."""
    from otel_llm_eval.bundle import alerts

    files: dict[str, str] = {
        f"alerts/{alerts.RULES_FILE}": dump_yaml(
            alerts.rule_groups(),
            header="Prometheus recording and alert rules for otel-llm-eval. Runbooks: docs/runbooks.md"),
        f"alerts/{alerts.RULES_TEST_FILE}": dump_yaml(
            alerts.rule_tests(), header="promtool unit tests: promtool test rules alerts/" + alerts.RULES_TEST_FILE),
        "alerts/alertmanager.yml": dump_yaml(
            alerts.alertmanager_config(),
            header="Alertmanager routing by severity. Replace the placeholder webhook receivers."),
    }
    for extra in _optional_generators():
        files.update(extra())
    return dict(sorted(files.items()))


def _optional_generators():
    from otel_llm_eval.bundle import collector, dashboards, deploy, docs

    return (dashboards.render, collector.render, deploy.render, docs.render)


def write(out_dir: Path, files: dict[str, str]) -> list[str]:
    """Write files that differ; delete generated leftovers. Returns the changed relative paths."""
    changed = []
    for rel, text in files.items():
        path = out_dir / rel
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        changed.append(rel)
    for rel in _leftovers(out_dir, files):
        (out_dir / rel).unlink()
        changed.append(rel)
    return changed


def stale(out_dir: Path, files: dict[str, str]) -> list[tuple[str, str]]:
    """(relative path, reason) for every file that is missing, differs, or is a generated leftover."""
    problems = []
    for rel, text in files.items():
        path = out_dir / rel
        if not path.exists():
            problems.append((rel, "missing"))
        elif path.read_text(encoding="utf-8") != text:
            problems.append((rel, "differs from the generated output"))
    problems += [(rel, "generated earlier but no longer produced") for rel in _leftovers(out_dir, files)]
    return problems


def _leftovers(out_dir: Path, files: dict[str, str]) -> list[str]:
    found = []
    for d in GENERATED_DIRS:
        root = out_dir / d
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(out_dir).as_posix()
            if path.is_file() and rel not in files and _is_generated(path):
                found.append(rel)
    return found


def _is_generated(path: Path) -> bool:
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[:4096]
    except OSError:
        return False
    return DO_NOT_EDIT in head
