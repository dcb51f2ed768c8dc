"""docs/sidecar.md's plugin table says, per plugin, which routes it serves and which SQLite tables it
owns: checked here against the default plugins themselves, so the table cannot drift."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from otel_llm_eval.sidecar.config import DEFAULT_PLUGINS
from otel_llm_eval.sidecar.core import load_plugins

DOC = Path(__file__).resolve().parents[2] / "docs" / "sidecar.md"


def table_rows() -> dict[str, tuple[list[str], list[str]]]:
    """plugin name -> (routes, tables) from the markdown table under "How the sidecar is built"."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"`[a-z_]+`", cells[0]) and cells[0] != "`plugin`":
            # "`analysis` in `/v1/experiments/{id}`" is the core's route a plugin adds to: not its own
            routes = [re.sub(r"\{[^}]*\}", "{}", r) for r in re.findall(r"(?<!in )`(/[^`]*)`", cells[2])
                      if "..." not in r]
            tables = re.findall(r"`([a-z_]+)`", cells[4])
            rows[cells[0].strip("`")] = (routes, tables)
    return rows


def test_the_table_has_a_row_for_every_default_plugin():
    assert sorted(table_rows()) == sorted(p.name for p in load_plugins(DEFAULT_PLUGINS))


class Ctx:
    def __init__(self, db: str):
        self.config = {}
        self.db_path = db

    def now(self):
        return 0.0


@pytest.mark.parametrize("plugin", load_plugins(DEFAULT_PLUGINS), ids=lambda p: p.name)
def test_a_plugin_serves_the_routes_and_owns_the_tables_the_doc_names(tmp_path, plugin):
    routes, tables = table_rows()[plugin.name]
    router = plugin.router()
    paths = {re.sub(r"\{[^}]*\}", "{}", r.path) for r in router.routes} if router is not None else set()
    assert set(routes) <= paths, sorted(paths)
    db = str(tmp_path / "state.db")
    plugin.attach(Ctx(db))
    conn = sqlite3.connect(db)
    plugin.load(conn)
    created = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    plugin.close()
    assert set(tables) <= created, sorted(created)
