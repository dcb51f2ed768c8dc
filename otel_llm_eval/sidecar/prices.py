"""Price table: what an LLM call cost, from span attributes when present, else from token prices.

Shipped defaults (data/prices.json, USD per million tokens) cover common OpenAI, Anthropic,
Google and Mistral models; `prices.file` and `prices.models` in the config override them.
Lookup: exact model name, then the longest known prefix (dated snapshots such as
`gpt-4o-2024-08-06` price as `gpt-4o`), after dropping a provider prefix (`openai/gpt-4o`,
`models/gemini-2.0-flash`). Lookups are memoized in a bounded dict. Thread-safe for readers.
"""

from __future__ import annotations

import json
import math
from importlib import resources
from typing import Any, Mapping

#: Span attributes that carry the call's cost in USD (OpenLIT, OpenLLMetry/Traceloop, ours).
COST_ATTRIBUTES = ("gen_ai.usage.cost", "llm_eval.cost_usd", "gen_ai.cost", "llm.usage.cost")

_MEMO_MAX = 4096


def shipped_prices() -> dict[str, dict[str, float]]:
    text = resources.files("otel_llm_eval.sidecar").joinpath("data/prices.json").read_text("utf-8")
    return dict(json.loads(text)["models"])


class PriceTable:
    """Per-model input/output prices; `cost_usd(...)` never raises."""

    def __init__(self, models: Mapping[str, Mapping[str, float]]):
        self._models: dict[str, tuple[float, float]] = {}
        for name, p in models.items():
            try:
                self._models[name.lower()] = (float(p.get("input_per_million", 0.0)) / 1e6,
                                              float(p.get("output_per_million", 0.0)) / 1e6)
            except (AttributeError, TypeError, ValueError):
                raise ValueError(f"prices: model {name!r} needs numeric input_per_million/output_per_million")
        # longest first, so gpt-4o-mini wins over gpt-4o for "gpt-4o-mini-2024-07-18"
        self._prefixes = sorted(self._models, key=len, reverse=True)
        self._memo: dict[str, tuple[float, float] | None] = {}

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "PriceTable":
        models = shipped_prices()
        path = cfg.get("file")
        if path:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            models.update(data.get("models", data))
        models.update(cfg.get("models") or {})
        return cls(models)

    def price(self, model: str | None) -> tuple[float, float] | None:
        """(usd per input token, usd per output token) or None for an unknown model."""
        if not model:
            return None
        hit = self._memo.get(model, False)
        if hit is not False:
            return hit  # type: ignore[return-value]
        key = model.lower().rsplit("/", 1)[-1]
        found = self._models.get(key)
        if found is None:
            for prefix in self._prefixes:
                if key.startswith(prefix) and (len(key) == len(prefix) or key[len(prefix)] in "-:@."):
                    found = self._models[prefix]
                    break
        if len(self._memo) >= _MEMO_MAX:
            self._memo.clear()  # bounded: odd model names must not grow memory
        self._memo[model] = found
        return found

    def cost_usd(self, model: str | None, input_tokens: int | None, output_tokens: int | None,
                 attributes: Mapping[str, Any] | None = None) -> float | None:
        """Cost from a cost attribute when present and valid, else tokens x price; None if unknown."""
        if attributes:
            for key in COST_ATTRIBUTES:
                value = attributes.get(key)
                if value is not None and not isinstance(value, bool):
                    try:
                        v = float(value)
                    except (TypeError, ValueError):
                        continue
                    if math.isfinite(v) and v >= 0:
                        return v
        if input_tokens is None and output_tokens is None:
            return None
        p = self.price(model)
        if p is None:
            return None
        return (input_tokens or 0) * p[0] + (output_tokens or 0) * p[1]
