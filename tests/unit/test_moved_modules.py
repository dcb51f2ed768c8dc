"""Old module paths of the sidecar's plugins stay importable (they are in users' configs and
docs) as aliases of the moved modules, with a DeprecationWarning naming the new path."""

from __future__ import annotations

import importlib
import subprocess
import sys

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
