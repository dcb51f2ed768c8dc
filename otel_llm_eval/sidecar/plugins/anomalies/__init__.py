"""Anomalies in latency, errors, cost, judge scores and feedback per service (docs/statistics.md)."""

from .plugin import CONFIG_DEFAULTS, AnomaliesPlugin, AnomalySummarizer

__all__ = ["CONFIG_DEFAULTS", "AnomaliesPlugin", "AnomalySummarizer"]
