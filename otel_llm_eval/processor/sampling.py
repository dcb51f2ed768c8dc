"""Deterministic judge sampling from the trace id: the same trace gets the same decision everywhere.

The decision compares the low 64 bits of the 128-bit trace id with `rate * 2**64`. W3C trace ids
are random in (at least) their low 56 bits, so this is a uniform draw that every process, in any
language, can reproduce without coordination. Pure functions, no I/O.
"""

from __future__ import annotations

import math

_MASK64 = (1 << 64) - 1
_FULL = 1 << 64


def threshold(rate: float | None) -> int:
    """`rate` in [0, 1] as a 64-bit threshold; invalid rates (NaN, None) mean 0."""
    if rate is None or not isinstance(rate, (int, float)) or math.isnan(rate) or rate <= 0:
        return 0
    if rate >= 1:
        return _FULL
    return int(rate * _FULL)


def sampled(trace_id: int, rate_threshold: int) -> bool:
    """True when the trace falls under the threshold (see `threshold`)."""
    return (trace_id & _MASK64) < rate_threshold


def should_sample(trace_id: int | str, rate: float | None) -> bool:
    """Convenience: trace id as int or 32-hex string."""
    if isinstance(trace_id, str):
        trace_id = int(trace_id, 16)
    return sampled(trace_id, threshold(rate))
