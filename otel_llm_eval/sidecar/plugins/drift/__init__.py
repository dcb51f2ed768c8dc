"""Data drift and concept drift per service (docs/statistics.md)."""

from .plugin import CONFIG_DEFAULTS, DriftPlugin, DriftSummarizer

__all__ = ["CONFIG_DEFAULTS", "DriftPlugin", "DriftSummarizer"]
