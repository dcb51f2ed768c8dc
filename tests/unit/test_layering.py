"""The house's import rules, read from the source: offline and sidecar never import each other
(what both need lives in otel_llm_eval.records), and the pure layers import no room above them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "otel_llm_eval"


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved), at any depth."""
    module = ".".join(path.relative_to(PKG.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.add(name)
            out.update(f"{name}.{a.name}" for a in node.names)
    return out


def imports_of(room: str) -> dict[str, set[str]]:
    return {str(p.relative_to(PKG)): imported_modules(p) for p in (PKG / room).rglob("*.py")}


@pytest.mark.parametrize("room, forbidden", [
    ("offline", "otel_llm_eval.sidecar"),
    ("sidecar", "otel_llm_eval.offline"),
    ("records", "otel_llm_eval.sidecar"),
    ("records", "otel_llm_eval.offline"),
    ("stats", "otel_llm_eval.sidecar"),
    ("stats", "otel_llm_eval.processor"),
    ("processor", "otel_llm_eval.sidecar"),
], ids=["offline never imports the sidecar", "the sidecar never imports offline",
        "records import no sidecar", "records import no offline tool", "statistics import no sidecar",
        "statistics import no processor", "the in-app processor imports no sidecar"])
def test_rooms_import_only_downward(room, forbidden):
    bad = {f: sorted(m for m in mods if m == forbidden or m.startswith(forbidden + "."))
           for f, mods in imports_of(room).items()}
    assert not {f: m for f, m in bad.items() if m}


PLUGINS = PKG / "sidecar" / "plugins"
CAPABILITIES = sorted(p.name for p in PLUGINS.iterdir() if p.is_dir() and (p / "__init__.py").exists())


def test_the_plugins_package_holds_one_package_per_capability():
    assert CAPABILITIES == ["anomalies", "bandits", "drift", "experiments", "interleaving", "judge", "offline",
                            "review"]


@pytest.mark.parametrize("capability", CAPABILITIES)
def test_a_plugin_package_imports_no_other_plugin_package(capability):
    """Plugins meet through the contract (ctx.plugin(name)), never through each other's modules."""
    others = tuple(f"otel_llm_eval.sidecar.plugins.{c}" for c in CAPABILITIES if c != capability)
    bad = {f: sorted(m for m in mods if m.startswith(others))
           for f, mods in imports_of(f"sidecar/plugins/{capability}").items()}
    assert not {f: m for f, m in bad.items() if m}


@pytest.mark.parametrize("room", ["sidecar/ingest", "sidecar"], ids=["the ingest pipeline", "the sidecar core"])
def test_the_core_and_ingest_import_only_the_plugin_contract(room):
    """The core loads plugins by name from the config; it never imports a capability package."""
    packages = tuple(f"otel_llm_eval.sidecar.plugins.{c}" for c in CAPABILITIES)
    files = {f: mods for f, mods in imports_of(room).items() if not f.startswith("sidecar/plugins/")}
    bad = {f: sorted(m for m in mods if m.startswith(packages)) for f, mods in files.items()}
    assert not {f: m for f, m in bad.items() if m}


def test_no_plugin_class_grows_past_400_lines():
    """A capability that needs more is two capabilities (or has helpers in its package)."""
    sizes = {}
    for path in PLUGINS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                sizes[f"{path.relative_to(PKG)}:{node.name}"] = node.end_lineno - node.lineno + 1
    assert sizes and not {k: n for k, n in sizes.items() if n > 400}


def test_the_review_routes_do_not_import_the_review_plugin():
    """api.py builds the routes over what it is handed; what both need lives in labeling.py and page.py."""
    mods = imported_modules(PLUGINS / "review" / "api.py")
    plugin = "otel_llm_eval.sidecar.plugins.review.plugin"
    assert not sorted(m for m in mods if m == plugin or m.startswith(plugin + "."))
