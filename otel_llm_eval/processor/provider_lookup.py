"""Which SDK TracerProvider a span processor was added to (there is no public API for it).

Evaluation and feedback spans must go through the same pipeline (exporters, resource) as the
spans they evaluate. An app that builds its own `TracerProvider` and never calls
`trace.set_tracer_provider` would otherwise have them sent to the global no-op provider and lose
them without a word. `attached_provider(processor)` answers from the global provider when it is
the one, else by following the references the SDK keeps (provider -> multi span processor ->
tuple of processors): one walk of the garbage collector's referrers, done once per processor,
off the hot path. Returns None when it cannot tell (the caller then warns once).
"""

from __future__ import annotations

import gc
from typing import Any

from opentelemetry import trace


def _holds(provider: Any, processor: Any) -> bool:
    multi = getattr(provider, "_active_span_processor", None)
    return processor in (getattr(multi, "_span_processors", None) or ())


def attached_provider(processor: Any) -> Any:
    """The SDK TracerProvider `processor` was added to, or None. Never raises."""
    try:
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:  # pragma: no cover - the SDK is a dependency
        return None
    try:
        glob = trace.get_tracer_provider()
        if isinstance(glob, TracerProvider) and _holds(glob, processor):
            return glob
        for tup in gc.get_referrers(processor):
            if not isinstance(tup, tuple):
                continue
            for multi in gc.get_referrers(tup):
                if getattr(multi, "_span_processors", None) is not tup:
                    continue
                for owner in gc.get_referrers(multi):
                    if isinstance(owner, TracerProvider) and _holds(owner, processor):
                        return owner
                    if isinstance(owner, dict) and owner.get("_active_span_processor") is multi:
                        for obj in gc.get_referrers(owner):  # the provider whose __dict__ this is
                            if isinstance(obj, TracerProvider) and _holds(obj, processor):
                                return obj
    except Exception:  # noqa: BLE001 - a lookup must never break the app
        return None
    return None
