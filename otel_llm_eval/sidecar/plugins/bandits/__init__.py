"""Bandits: adaptive traffic allocation from the rewards per arm (docs/statistics.md)."""

from .plugin import CONFIG_DEFAULTS, BanditsPlugin

__all__ = ["CONFIG_DEFAULTS", "BanditsPlugin"]
