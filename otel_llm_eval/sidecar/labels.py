"""Bounded label values: each label keeps at most `cap` distinct values; the rest fold into `other`.

Caps come from `catalog.DEFAULT_LABEL_CAPS`, overridden by config `labels.caps`. Every fold is
counted per label name (published as `llm_eval_label_overflow_total{reason=<label>}`), so an
operator sees when a cap is too small. Values are also cut to MAX_VALUE_CHARS. Thread-safe.
"""

from __future__ import annotations

import threading
from typing import Mapping

from ..catalog import DEFAULT_LABEL_CAPS, OVERFLOW_VALUE

MAX_VALUE_CHARS = 128
_UNCAPPED_DEFAULT = 100
#: values remembered per label as "already folded" for scrape-time calls (beyond: not counted again)
MAX_FOLDED_REMEMBERED = 10_000


class LabelBounder:
    def __init__(self, caps: Mapping[str, int] | None = None):
        self.caps = dict(DEFAULT_LABEL_CAPS)
        self.caps.update(caps or {})
        self._seen: dict[str, set[str]] = {}
        self.overflow: dict[str, int] = {}
        self._folded: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def bound(self, label: str, value: object, n: int | None = 1) -> str:
        """`value` as a label value, or `other` when the label's cap is reached by other values.

        n: how many observations the fold stands for (a batch's calls with this value), added to
        the overflow count; 0 when the same value was already bounded for them. None: a read (a
        scrape building its families): a fold is counted once per distinct value, the first time,
        so scraping unchanged data never grows `llm_eval_label_overflow_total`."""
        v = "" if value is None else str(value)
        if len(v) > MAX_VALUE_CHARS:
            v = v[:MAX_VALUE_CHARS]
        seen = self._seen.get(label)
        if seen is not None and v in seen:  # fast path without the lock (sets only grow)
            return v
        with self._lock:
            seen = self._seen.setdefault(label, set())
            if v in seen or v == "" or v == OVERFLOW_VALUE:
                return v
            if len(seen) >= self.caps.get(label, _UNCAPPED_DEFAULT):
                if n is None:
                    folded = self._folded.setdefault(label, set())
                    if v not in folded and len(folded) < MAX_FOLDED_REMEMBERED:
                        folded.add(v)
                        self.overflow[label] = self.overflow.get(label, 0) + 1
                else:
                    self.overflow[label] = self.overflow.get(label, 0) + n
                return OVERFLOW_VALUE
            seen.add(v)
            return v

    def remember(self, label: str, value: str) -> None:
        """Re-admit a value restored from state (after a restart) without counting an overflow."""
        if value in ("", OVERFLOW_VALUE):
            return
        with self._lock:
            seen = self._seen.setdefault(label, set())
            if len(seen) < self.caps.get(label, _UNCAPPED_DEFAULT):
                seen.add(value)

    def overflow_snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.overflow)
