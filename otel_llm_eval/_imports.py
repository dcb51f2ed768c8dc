"""Resolve `module:attr` strings from configuration (judges, custom checks) to callables.

Standard library only: the in-app path (zero-code attach) uses it too.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def load_callable(spec: str, what: str) -> Callable[..., Any]:
    """Import `module:attr` and return it; ValueError naming `what` and `spec` when it cannot."""
    module, sep, attr = str(spec).partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"{what} {spec!r} must look like 'module:attr'")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{what} {spec!r} cannot be loaded: {exc}") from None
    if not callable(obj):
        raise ValueError(f"{what} {spec!r} is not callable")
    return obj
