"""Offline results in the sidecar: benchmark scores and regression-gate runs pushed by the offline
tools (`otel-llm-eval bench export --push`, `regress --push`), for the dashboards. Config section
`offline`; docs/offline.md.
"""

from .plugin import CONFIG_DEFAULTS, OfflinePlugin, PayloadError

__all__ = ["CONFIG_DEFAULTS", "OfflinePlugin", "PayloadError"]
