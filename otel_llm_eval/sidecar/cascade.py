"""The evaluation cascade's shared rules, used by layer 2 (the judge plugin) and layer 3 (human
review): a trace's sample fraction and whether a judge passed a call. Pure: no I/O, no state.

Both layers decide on the trace id alone (a salted sha256, never Python's salted `hash()`), so the
same trace gets the same decision in every process and after a restart, and a salt per layer keeps
the layers' samples independent of each other.
"""

from __future__ import annotations

import hashlib
import math


def trace_fraction(trace_id: str, salt: str = "review") -> float:
    """A uniform number in [0, 1) determined by the trace id alone.

    Salted so review sampling is independent of the judge's own trace-id sampling.
    """
    digest = hashlib.sha256(f"{salt}:{trace_id.lower()}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def judge_passed(score: float | None, label: str | None, pass_score: float) -> bool | None:
    """Did the judge pass the call? Its label when it says pass/fail, else score >= pass_score;
    None when the evaluation carries neither (an error)."""
    if label in ("pass", "fail"):
        return label == "pass"
    if score is None or not math.isfinite(score):
        return None
    return score >= pass_score
