"""GenAI log records joined to their LLM span: text that instrumentations send as logs.

openai-v2 with `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=event_only` (and the deprecated
per-message events of older instrumentations) put the prompt and completion in log records
carrying the LLM span's trace and span id, exported independently of the span. On the ingest
thread, `TextJoin` pairs them whatever the order:
- a span without text waits here up to SETTLE_SECONDS for its text; a log record that brings it
  runs the text checks under the call's labels; past the window the call counts in
  `llm_calls_without_text_total` (so that number is final SETTLE_SECONDS after the span arrived);
- a log record that arrives first waits for its span (bounded, oldest dropped).
Dict operations only: O(1) per call and per record.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

#: How long a span without text waits for a GenAI log record carrying its text. Both signals are
#: exported by batch processors (every 5 s by default for spans, 1 s for logs), so 10 s covers them.
SETTLE_SECONDS = 10.0


class TextJoin:
    """Waiting spans without text and early text, keyed by trace id hex + span id hex."""

    def __init__(self, max_entries: int = 50_000, settle_seconds: float = SETTLE_SECONDS):
        self.max_entries = max(1, int(max_entries))
        self.settle_seconds = float(settle_seconds)
        self.waiting: OrderedDict[str, tuple[str, str, float]] = OrderedDict()  # key -> (service, model, t)
        self.early: OrderedDict[str, tuple[Any, Any, Any]] = OrderedDict()     # key -> text
        #: service -> spans evicted from `waiting` past max_entries: without text, reported by settle
        self.evicted: dict[str, int] = {}

    def _evict_oldest(self) -> None:
        service = self.waiting.popitem(last=False)[1][0]
        self.evicted[service] = self.evicted.get(service, 0) + 1

    def span_without_text(self, key: str, service: str, model: str, now: float) -> tuple | None:
        """The (prompt, completion, finish reason) a log record brought before the span, else None
        (the span then waits)."""
        text = self.early.pop(key, None)
        if text is not None:
            return text
        self.waiting[key] = (service, model, now)
        if len(self.waiting) > self.max_entries:  # the oldest counts as without text now
            self._evict_oldest()
        return None

    def spans_without_text(self, keys: list[str], groups: list[tuple[str, str]], group_of: Any,
                           now: float) -> list[tuple[str, str, tuple]]:
        """`span_without_text` for a batch's calls, in order: keys[i] of (service, model)
        groups[group_of[i]]. Returns (service, model, text) of those whose text came first.

        Shortcut (tested equal to the call-by-call path): when no key is waiting or has early
        text already and the batch fits in the map, the keys are inserted with one C-level
        update and the oldest entries are evicted as the call-by-call path would evict them
        (first in, first out; one shared (service, model, now) tuple per group)."""
        waiting, early = self.waiting, self.early
        if len(keys) <= self.max_entries and (not early or early.keys().isdisjoint(keys)) \
                and waiting.keys().isdisjoint(keys):
            values = [(service, model, now) for service, model in groups]
            waiting.update(zip(keys, map(values.__getitem__, group_of)))
            while len(waiting) > self.max_entries:
                self._evict_oldest()
            return []
        out = []
        for key, g in zip(keys, group_of):
            service, model = groups[g]
            text = self.span_without_text(key, service, model, now)
            if text is not None:
                out.append((service, model, text))
        return out

    def text(self, key: str, text: tuple) -> tuple[str, str] | None:
        """(service, model) of the waiting span this text belongs to, else None (the text waits)."""
        got = self.waiting.pop(key, None)
        if got is not None:
            return got[0], got[1]
        self.early[key] = text
        if len(self.early) > self.max_entries:
            self.early.popitem(last=False)
        return None

    def settle(self, now: float) -> dict[str, int]:
        """Services -> calls that waited past the window without text (they leave the map), and
        those evicted early because more than max_entries were waiting."""
        out, self.evicted = self.evicted, {}
        waiting = self.waiting
        limit = now - self.settle_seconds
        pop = waiting.popitem
        while waiting:
            key, entry = pop(last=False)
            if entry[2] > limit:  # not yet: back to the front, where it was
                waiting[key] = entry
                waiting.move_to_end(key, last=False)
                break
            service = entry[0]
            out[service] = out.get(service, 0) + 1
        return out
