"""A/B experiments: per-unit statistics, SRM, always-valid verdicts, the decision, engagement and the
judge sample-rate plan (docs/statistics.md)."""

from .plugin import CONFIG_DEFAULTS, ExperimentsPlugin

__all__ = ["CONFIG_DEFAULTS", "ExperimentsPlugin"]
