"""The config schema: derived from the defaults dicts, every problem in one message, a did-you-mean
for unknown keys, env tokens kept as written, and the generated reference kept up to date."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_llm_eval.sidecar import config_schema
from otel_llm_eval.sidecar.config import ConfigError, env_overrides, load_config, schema_defaults

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("case,overrides,expected", [
    ("a typo in a core key", {"server": {"prot": 9000}}, "server.prot: unknown key (did you mean 'server.port'?)"),
    ("a typo in a section name", {"analyses": {"alpha": 0.1}}, "analyses: unknown section (did you mean 'analysis'?)"),
    ("a string where a plugin expects a number", {"analysis": {"alpha": "high"}},
     "analysis.alpha: must be a number in (0, 1), got 'high'"),
    ("a nested plugin key of the wrong type", {"analysis": {"judge": {"min_rate": [1]}}},
     "analysis.judge.min_rate: must be a number"),
    ("a bool where an integer is needed", {"ingest": {"workers": True}}, "ingest.workers: must be an integer"),
    ("an infinite number", {"state": {"flush_interval_seconds": float("inf")}}, "state.flush_interval_seconds"),
    ("a token that YAML read as a number", {"server": {"auth_token": 123}}, "server.auth_token: must be a string"),
    ("a typo inside a plugin section", {"review": {"sampling": {"random_rat": 0.1}}},
     "review.sampling.random_rat: unknown key (did you mean 'review.sampling.random_rate'?)"),
    ("an out-of-range edge limit", {"ingest": {"limits": {"max_tokens": -1}}}, "ingest.limits.max_tokens"),
])
def test_each_kind_of_config_mistake_is_named_with_its_key(case, overrides, expected):
    with pytest.raises(ConfigError) as e:
        load_config(environ={}, overrides=overrides)
    assert expected in str(e.value)


def test_every_problem_is_listed_in_one_message():
    with pytest.raises(ConfigError) as e:
        load_config(environ={}, overrides={"server": {"prot": 1, "port": "x"}, "analyses": {},
                                           "analysis": {"alpha": "high"}})
    text = str(e.value)
    assert "4 problems" in text
    for key in ("server.prot", "server.port", "analyses", "analysis.alpha"):
        assert key in text


def test_a_key_added_to_a_plugins_defaults_is_known_and_typed_without_touching_the_schema():
    class NewPlugin:
        name = "judge_cascade"
        CONFIG_DEFAULTS = {"threshold": 0.5, "stages": {"cheap": {"model": "m", "max_calls": 10}}}

    defaults = schema_defaults({}, [NewPlugin()])
    assert config_schema.validate_schema({"judge_cascade": {"stages": {"cheap": {"max_calls": 3}}}}, defaults) == []
    assert config_schema.validate_schema({"judge_cascade": {"stages": {"cheap": {"max_calls": "3"}}}}, defaults) == [
        "judge_cascade.stages.cheap.max_calls: must be an integer, got '3'"]
    assert "did you mean 'judge_cascade.threshold'" in config_schema.validate_schema(
        {"judge_cascade": {"treshold": 1}}, defaults)[0]


@pytest.mark.parametrize("raw", ["0123", "1e3", "true", "null", "[a]", "  padded "])
def test_a_token_from_the_environment_is_the_string_as_written(raw):
    assert env_overrides({"OTEL_LLM_EVAL_SERVER__AUTH_TOKEN": raw}) == {"server": {"auth_token": raw}}
    cfg = load_config(environ={"OTEL_LLM_EVAL_SERVER__AUTH_TOKEN": raw})
    assert cfg["server"]["auth_token"] == raw


def test_the_configuration_reference_is_generated_from_the_schema_and_up_to_date():
    expected = config_schema.reference_markdown(config_schema.default_sections()) + "\n"
    doc = ROOT / "docs" / "configuration.md"
    assert doc.read_text() == expected, (
        "docs/configuration.md is stale: run `python -m otel_llm_eval.sidecar.config_schema docs/configuration.md`")
    assert "DO NOT EDIT" in expected.splitlines()[0]
    for key in ("`port`", "`limits.max_tokens`", "`alpha`", "`sampling.random_rate`", "`max_pairs`"):
        assert key in expected
