"""Small helpers shared by the stats modules."""

from __future__ import annotations

import math


def finite(x: float | None) -> float | None:
    """`x` as a float when it is a finite number, else None (never NaN/Inf downstream)."""
    if x is None:
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def clamp_p(p: float | None) -> float | None:
    """A p-value clipped into [0, 1]; None stays None."""
    p = finite(p)
    if p is None:
        return None
    return min(1.0, max(0.0, p))
