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

    def span_without_text(self, key: str, service: str, model: str, now: float) -> tuple | None:
        """The (prompt, completion, finish reason) a log record brought before the span, else None
        (the span then waits)."""
        text = self.early.pop(key, None)
        if text is not None:
            return text
        self.waiting[key] = (service, model, now)
        if len(self.waiting) > self.max_entries:  # the oldest counts as without text now
            self.waiting.popitem(last=False)
        return None

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
        """Services -> calls that waited past the window without text (they leave the map)."""
        out: dict[str, int] = {}
        waiting = self.waiting
        limit = now - self.settle_seconds
        while waiting:
            key, (service, _model, t) = next(iter(waiting.items()))
            if t > limit:
                break
            waiting.popitem(last=False)
            out[service] = out.get(service, 0) + 1
        return out
