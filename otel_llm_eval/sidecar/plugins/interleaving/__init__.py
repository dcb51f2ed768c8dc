"""Interleaving and pairwise comparisons with an always-valid preference test (docs/statistics.md)."""

from .plugin import CONFIG_DEFAULTS, INTERLEAVING_METRIC, InterleavingPlugin

__all__ = ["CONFIG_DEFAULTS", "INTERLEAVING_METRIC", "InterleavingPlugin"]
