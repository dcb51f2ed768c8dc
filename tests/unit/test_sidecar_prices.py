"""Cost: a trustworthy cost attribute, else tokens x price (config overrides over genai-prices)."""

from __future__ import annotations

import math
import socket

import pytest

from otel_llm_eval.sidecar.ingest.prices import PriceTable

TABLE = PriceTable.from_config({"models": {"my-model": {"input_per_million": 1.0, "output_per_million": 2.0},
                                           "gpt-4o-mini": {"input_per_million": 10.0, "output_per_million": 10.0}}})


@pytest.mark.parametrize("case,model,provider,tokens,attrs,expected", [
    ("a model only the genai-prices catalogue knows is priced", "deepseek-chat", None, (1_000_000, 0), {}, 0.27),
    ("the catalogue prices a model by provider when one is given", "grok-3", "x_ai", (0, 1_000_000), {}, 15.0),
    ("a config price wins over the catalogue", "gpt-4o-mini", "openai", (1_000_000, 0), {}, 10.0),
    ("a cost of 0 with tokens and a known price is not trusted (OpenLIT without its price list)",
     "deepseek-chat", None, (1_000_000, 0), {"gen_ai.usage.cost": 0.0}, 0.27),
    ("a cost of 0 with tokens and no known price stays 0", "no-such-model", None, (10, 10), {"gen_ai.usage.cost": 0}, 0.0),
    ("a cost of 0 without tokens is 0", "deepseek-chat", None, (None, None), {"gen_ai.usage.cost": 0.0}, 0.0),
    ("a positive cost attribute wins", "deepseek-chat", None, (1_000_000, 0), {"gen_ai.usage.cost": 0.5}, 0.5),
    ("a negative cost attribute is ignored", "deepseek-chat", None, (1_000_000, 0), {"gen_ai.usage.cost": -3.0}, 0.27),
    ("a non-finite cost attribute is ignored", "deepseek-chat", None, (1_000_000, 0), {"gen_ai.usage.cost": math.inf}, 0.27),
    ("a NaN cost attribute is ignored", "my-model", None, (1_000_000, 0), {"gen_ai.usage.cost": math.nan}, 1.0),
    ("Logfire's operation.cost is read", "no-such-model", None, (10, 10), {"operation.cost": 7.2e-06}, 7.2e-06),
    ("an unknown model without a cost attribute has no cost", "no-such-model", None, (10, 10), {}, None),
])
def test_cost_rules(case, model, provider, tokens, attrs, expected):
    got = TABLE.cost_usd(model, *tokens, attrs, provider)
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_prices_are_computed_without_the_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("no network at run time")
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    table = PriceTable.from_config({})
    assert table.cost_usd("claude-3-5-haiku-latest", 1_000_000, 1_000_000, None, "anthropic") == pytest.approx(4.8)
