"""Old module paths of the sidecar's plugins stay importable (they are in users' configs and
docs) as aliases of the moved modules, with a DeprecationWarning naming the new path."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

from otel_llm_eval.sidecar._moved import MOVED, new_name


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_an_old_path_imports_the_moved_module_itself_with_a_warning(old, new):
    code = (f"import warnings, importlib; warnings.simplefilter('error', DeprecationWarning)\n"
            f"import {new} as new_mod\n"
            f"try:\n    importlib.import_module({old!r})\nexcept DeprecationWarning as w:\n    print('warned:', w)\n"
            f"warnings.simplefilter('ignore')\n"
            f"assert importlib.import_module({old!r}) is new_mod\nprint('same')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"warned: {old} moved to {new}" in out.stdout and out.stdout.rstrip().endswith("same")


def test_a_submodule_of_a_moved_package_is_the_same_module_not_a_second_copy():
    new = importlib.import_module("otel_llm_eval.sidecar.plugins.judge.budget")
    with pytest.warns(DeprecationWarning):
        old = importlib.import_module("otel_llm_eval.sidecar.judge.budget")
    assert old is new and old.Budget is new.Budget


@pytest.mark.parametrize("name, expected", [
    ("otel_llm_eval.sidecar.review", "otel_llm_eval.sidecar.plugins.review.plugin"),
    ("otel_llm_eval.sidecar.judge.pool", "otel_llm_eval.sidecar.plugins.judge.pool"),
    ("otel_llm_eval.sidecar.reviewer", None),
    ("otel_llm_eval.sidecar.state", None),
], ids=["a moved module", "a submodule of a moved package", "a name sharing a prefix", "a module that stayed"])
def test_new_name_maps_only_moved_modules(name, expected):
    assert new_name(name) == expected


def test_a_config_naming_the_old_analysis_plugin_loads_the_five_it_became_with_a_warning(tmp_path, caplog):
    from otel_llm_eval.sidecar.config import load_config
    from otel_llm_eval.sidecar.core import load_plugins

    old = ["otel_llm_eval.sidecar.analysis:AnalysisPlugin", "otel_llm_eval.sidecar.review:ReviewPlugin"]
    cfg = load_config(overrides={"plugins": old, "analysis": {"drift": {"slot_seconds": 300}}}, environ={})
    with caplog.at_level("WARNING"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the review alias (tested above)
        plugins = load_plugins(cfg["plugins"])
    assert [p.name for p in plugins] == ["experiments", "bandits", "interleaving", "drift", "anomalies", "review"]
    assert "was split into" in caplog.text


def test_state_written_by_the_single_analysis_plugin_is_restored_by_the_plugins_it_became(tmp_path):
    """Same tables, same rows: the always-valid tests' running minimum goes to the experiments
    plugin, the interleaving rows (metric __interleaving__) to the interleaving plugin."""
    import sqlite3

    from otel_llm_eval.sidecar.plugins.experiments import ExperimentsPlugin
    from otel_llm_eval.sidecar.plugins.interleaving import InterleavingPlugin

    conn = sqlite3.connect(str(tmp_path / "old.db"))
    conn.executescript("""
        CREATE TABLE analysis_sequential (experiment TEXT, metric TEXT, variant TEXT, p REAL, lower REAL,
            upper REAL, level REAL, restarts INTEGER DEFAULT 0, PRIMARY KEY (experiment, metric, variant));
        INSERT INTO analysis_sequential VALUES ('exp', 'quality', 'b', 0.2, -0.1, 0.3, 0.025, 1);
        INSERT INTO analysis_sequential VALUES ('pair', '__interleaving__', 'b', 0.01, 0.6, 0.6, 0.05, 0);
        CREATE TABLE analysis_names (kind TEXT, name TEXT, PRIMARY KEY (kind, name));
        INSERT INTO analysis_names VALUES ('judge', 'quality');
    """)
    experiments, interleaving = ExperimentsPlugin(), InterleavingPlugin()
    experiments.load(conn)
    interleaving.load(conn)
    assert list(experiments.running) == [("exp", "quality", "b")] and experiments.running[("exp", "quality", "b")].restarts == 1
    assert list(interleaving.running) == [("pair", "__interleaving__", "b")]
    assert experiments.names.judge == {"quality"}
    experiments.flush(conn)
    interleaving.flush(conn)
    assert conn.execute("SELECT COUNT(*) FROM analysis_sequential").fetchone() == (2,)
