"""Module paths that moved when the sidecar became a core plus plugin packages, kept importable.

Plugin paths are part of users' configs (`plugins: [otel_llm_eval.sidecar.review:ReviewPlugin]`)
and `read_labels` is documented API, so each old path keeps working as an alias of the module it
moved to (the same module object, never a second copy) and warns once with the new path. The
analysis plugin became five plugins: core.load_plugins expands its old spec (ANALYSIS_SPLIT).
Remove an alias no sooner than two minor releases after its move.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from typing import Any

#: old module path -> new module path (submodules of a moved package follow their package)
MOVED = {
    "otel_llm_eval.sidecar.review": "otel_llm_eval.sidecar.plugins.review.plugin",
    "otel_llm_eval.sidecar.review_api": "otel_llm_eval.sidecar.plugins.review.api",
    "otel_llm_eval.sidecar.review_sampling": "otel_llm_eval.sidecar.plugins.review.sampling",
    "otel_llm_eval.sidecar.review_analysis": "otel_llm_eval.sidecar.plugins.review.analysis",
    "otel_llm_eval.sidecar.offline_plugin": "otel_llm_eval.sidecar.plugins.offline.plugin",
    "otel_llm_eval.sidecar.judge": "otel_llm_eval.sidecar.plugins.judge",
}


def new_name(fullname: str) -> str | None:
    """Where the module `fullname` lives now, or None when it did not move."""
    for old, new in MOVED.items():
        if fullname == old or fullname.startswith(old + "."):
            return new + fullname[len(old):]
    return None


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec: Any) -> Any:
        return importlib.import_module(self.target)

    def exec_module(self, module: Any) -> None:
        pass  # the target ran when it was imported


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Resolves an old module path to its new module, with a DeprecationWarning."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        new = new_name(fullname)
        if new is None:
            return None
        warnings.warn(f"{fullname} moved to {new}; the old path will be removed", DeprecationWarning, stacklevel=2)
        return importlib.util.spec_from_loader(fullname, _Alias(new))


def install() -> None:
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedModuleFinder())  # before PathFinder: it would load a second copy
