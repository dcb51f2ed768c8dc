"""What an LLM call cost: a trustworthy cost attribute, else tokens x a price.

Prices come from, in order:
1. the config (`prices.models` inline, `prices.file` JSON; USD per million tokens): exact model
   name, then the longest known prefix (`gpt-4o-2024-08-06` prices as `gpt-4o`), after dropping a
   provider prefix (`openai/gpt-4o`, `models/gemini-2.0-flash`);
2. the `genai-prices` catalogue (Pydantic's, shipped in the package: no network at run time), by
   model and, when known, provider. Its per-token rates for the first token tier are memoized per
   (model, provider) in a bounded dict, so a lookup is a dict hit after the first call;
3. when `genai-prices` is not installed, the small table shipped here (data/prices.json).

Cost attributes (OpenLIT's `gen_ai.usage.cost`, Logfire's `operation.cost`, ...) win when they
are positive and finite. A cost of 0 with tokens > 0 and a known price is not trusted (OpenLIT
writes 0 when its own price download failed): the price is used. Negative and non-finite costs
are ignored. Thread-safe for readers; `cost_usd` never raises.
"""

from __future__ import annotations

import json
import logging
import math
from importlib import resources
from typing import Any, Mapping

log = logging.getLogger(__name__)

#: Span attributes that carry the call's cost in USD (OpenLIT, OpenLLMetry/Traceloop, Logfire, ours).
COST_ATTRIBUTES = ("gen_ai.usage.cost", "llm_eval.cost_usd", "gen_ai.cost", "llm.usage.cost", "operation.cost")

_COST_KEYS = frozenset(COST_ATTRIBUTES)

#: `gen_ai.provider.name` values -> genai-prices provider ids (others are tried as they are).
CATALOGUE_PROVIDERS = {
    "gcp.gemini": "google", "gcp.vertex_ai": "google", "gcp.gen_ai": "google", "aws.bedrock": "aws",
    "azure.ai.openai": "azure", "azure.ai.inference": "azure", "mistral_ai": "mistral", "x_ai": "x-ai",
}

#: and back, for the provider label of spans that name none
_GENAI_PROVIDERS = {"google": "gcp.gemini", "aws": "aws.bedrock", "azure": "azure.ai.openai",
                    "mistral": "mistral_ai", "x-ai": "x_ai"}

_MEMO_MAX = 4096
_MISS = object()


def shipped_prices() -> dict[str, dict[str, float]]:
    """The small fallback table (used only when `genai-prices` is not installed)."""
    text = resources.files("otel_llm_eval.sidecar").joinpath("data/prices.json").read_text("utf-8")
    return dict(json.loads(text)["models"])


def _catalogue() -> Any:
    try:
        import genai_prices  # noqa: PLC0415 - optional; 0.4 s to import, so only when prices are built
    except ImportError:
        return None
    return genai_prices


class PriceTable:
    """Per-model input/output prices; `cost_usd(...)` never raises.

    models: configured prices (USD per million tokens) that win over the catalogue.
    catalogue: True to consult `genai-prices` (the default source), False for `models` only."""

    def __init__(self, models: Mapping[str, Mapping[str, float]], catalogue: bool = False):
        self._models: dict[str, tuple[float, float]] = {}
        for name, p in models.items():
            try:
                self._models[name.lower()] = (float(p.get("input_per_million", 0.0)) / 1e6,
                                              float(p.get("output_per_million", 0.0)) / 1e6)
            except (AttributeError, TypeError, ValueError):
                raise ValueError(f"prices: model {name!r} needs numeric input_per_million/output_per_million")
        # longest first, so gpt-4o-mini wins over gpt-4o for "gpt-4o-mini-2024-07-18"
        self._prefixes = sorted(self._models, key=len, reverse=True)
        self._memo: dict[tuple[str, str | None], tuple[float, float] | None] = {}
        self._providers: dict[str, str | None] = {}  # model -> catalogue provider (GenAI spelling)
        self._catalogue = _catalogue() if catalogue else None

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "PriceTable":
        """Config overrides over the `genai-prices` catalogue (over the shipped table without it)."""
        catalogue = _catalogue() is not None
        models: dict[str, Any] = {} if catalogue else shipped_prices()
        if not catalogue:
            log.warning("genai-prices is not installed: costs come from the small shipped price table "
                        "(pip install 'otel-llm-eval[sidecar]')")
        path = cfg.get("file")
        if path:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            models.update(data.get("models", data))
        models.update(cfg.get("models") or {})
        return cls(models, catalogue=catalogue)

    def price(self, model: str | None, provider: str | None = None) -> tuple[float, float] | None:
        """(usd per input token, usd per output token) or None for an unknown model."""
        if not model:
            return None
        memo_key = (model, provider)
        hit = self._memo.get(memo_key, _MISS)
        if hit is not _MISS:
            return hit  # type: ignore[return-value]
        key = model.lower().rsplit("/", 1)[-1]
        found = self._models.get(key)
        if found is None:
            for prefix in self._prefixes:
                if key.startswith(prefix) and (len(key) == len(prefix) or key[len(prefix)] in "-:@."):
                    found = self._models[prefix]
                    break
        if found is None and self._catalogue is not None:
            found = self._from_catalogue(key, provider)
        if len(self._memo) >= _MEMO_MAX:
            self._memo.clear()  # bounded: odd model names must not grow memory
        self._memo[memo_key] = found
        return found

    def provider_of(self, model: str | None) -> str | None:
        """The provider the catalogue knows `model` from, in the `gen_ai.provider.name` spelling
        (for spans that name no provider, e.g. Langfuse's); None when unknown. Memoized."""
        if not model or self._catalogue is None:
            return None
        hit = self._providers.get(model, _MISS)
        if hit is not _MISS:
            return hit  # type: ignore[return-value]
        found = None
        try:
            gp = self._catalogue
            found = gp.calc_price(gp.Usage(input_tokens=1), model.lower().rsplit("/", 1)[-1]).provider.id
            found = _GENAI_PROVIDERS.get(found, found)
        except Exception:
            found = None
        if len(self._providers) >= _MEMO_MAX:
            self._providers.clear()
        self._providers[model] = found
        return found

    def _from_catalogue(self, model: str, provider: str | None) -> tuple[float, float] | None:
        gp = self._catalogue
        pid = CATALOGUE_PROVIDERS.get(provider or "", provider) if provider else None
        for provider_id in ((pid, None) if pid else (None,)):
            try:
                per_input = gp.calc_price(gp.Usage(input_tokens=1_000_000, output_tokens=0), model,
                                          provider_id=provider_id)
                per_output = gp.calc_price(gp.Usage(input_tokens=0, output_tokens=1_000_000), model,
                                           provider_id=provider_id)
                return float(per_input.total_price) / 1e6, float(per_output.total_price) / 1e6
            except Exception:  # LookupError for unknown models/providers; anything else: unknown too
                continue
        return None

    def cost_usd(self, model: str | None, input_tokens: int | None, output_tokens: int | None,
                 attributes: Mapping[str, Any] | None = None, provider: str | None = None) -> float | None:
        """A positive cost attribute, else tokens x price; a zero attribute only when no price
        is known for calls with tokens; None when nothing is known."""
        attr_cost = None
        # one C-level test skips the loop for spans without a cost attribute (most of them)
        if attributes and not attributes.keys().isdisjoint(_COST_KEYS):
            for key in COST_ATTRIBUTES:
                value = attributes.get(key)
                if value is not None and not isinstance(value, bool):
                    try:
                        v = float(value)
                    except (TypeError, ValueError):
                        continue
                    if math.isfinite(v) and v >= 0:
                        if v > 0:
                            return v
                        attr_cost = 0.0
        if not input_tokens and not output_tokens:
            if attr_cost is not None:
                return attr_cost
            if input_tokens is None and output_tokens is None:
                return None
        try:
            p = self.price(model, provider)
        except Exception:
            p = None
        if p is None:
            return attr_cost
        return (input_tokens or 0) * p[0] + (output_tokens or 0) * p[1]
