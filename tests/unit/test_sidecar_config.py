"""Sidecar config: defaults, YAML file, env overrides, plugin sections, refusal to bind without a token."""

from __future__ import annotations

import pytest

from otel_llm_eval.sidecar.config import DEFAULTS, ConfigError, env_overrides, load_config, merge_plugin_defaults


def test_defaults_bind_loopback_on_9318_with_a_one_second_flush():
    cfg = load_config(environ={})
    assert cfg["server"]["host"] == "127.0.0.1"
    assert cfg["server"]["port"] == 9318
    assert cfg["state"]["flush_interval_seconds"] == 1.0
    assert cfg["plugins"] == DEFAULTS["plugins"]


def test_yaml_file_overrides_defaults_and_environment_overrides_the_file(tmp_path):
    path = tmp_path / "eval.yaml"
    path.write_text("state:\n  flush_interval_seconds: 2.5\nlabels:\n  caps: {model: 3}\n")
    env = {"OTEL_LLM_EVAL_STATE__FLUSH_INTERVAL_SECONDS": "0.5", "OTEL_LLM_EVAL_CHECKS__MAX_OUTPUT_CHARS": "99"}
    cfg = load_config(str(path), environ=env)
    assert cfg["state"]["flush_interval_seconds"] == 0.5
    assert cfg["checks"]["max_output_chars"] == 99
    assert cfg["labels"]["caps"] == {"model": 3}
    assert cfg["state"]["db_path"] == DEFAULTS["state"]["db_path"]  # untouched keys keep defaults


@pytest.mark.parametrize("name,value,expected", [
    ("OTEL_LLM_EVAL_SERVER__AUTH_TOKEN", "s3cret", {"server": {"auth_token": "s3cret"}}),
    ("OTEL_LLM_EVAL_LABELS__CAPS__MODEL", "7", {"labels": {"caps": {"model": 7}}}),
    ("OTEL_LLM_EVAL_CHECKS__ENABLED", "[pii, toxicity]", {"checks": {"enabled": ["pii", "toxicity"]}}),
    ("OTEL_LLM_EVAL_INGEST__NOT_NESTED_ENOUGH", "x", {"ingest": {"not_nested_enough": "x"}}),
    ("OTEL_LLM_EVAL_NOSECTION", "x", {}),
    ("OTHER_PREFIX__X", "1", {}),
])
def test_env_variables_map_to_nested_keys_parsed_as_yaml_scalars(name, value, expected):
    assert env_overrides({name: value}) == expected


def test_plugin_defaults_fill_in_only_what_the_user_did_not_set():
    cfg = load_config(environ={}, overrides={"review": {"sampling": {"random_rate": 0.5}}})
    merged = merge_plugin_defaults(cfg, "review", {"sampling": {"random_rate": 0.1, "size": 10}, "enabled": True})
    assert merged["review"] == {"sampling": {"random_rate": 0.5, "size": 10}, "enabled": True}


def test_binding_a_public_address_without_a_token_is_refused_with_how_to_set_one():
    with pytest.raises(ConfigError) as e:
        load_config(environ={}, overrides={"server": {"host": "0.0.0.0"}})
    assert "OTEL_LLM_EVAL_SERVER__AUTH_TOKEN" in str(e.value) and "server.auth_token" in str(e.value)
    cfg = load_config(environ={"OTEL_LLM_EVAL_SERVER__AUTH_TOKEN": "t"}, overrides={"server": {"host": "0.0.0.0"}})
    assert cfg["server"]["auth_token"] == "t"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_loopback_addresses_need_no_token(host):
    assert load_config(environ={}, overrides={"server": {"host": host}})["server"]["host"] == host


@pytest.mark.parametrize("overrides,key", [
    ({"state": {"flush_interval_seconds": 0}}, "state.flush_interval_seconds"),
    ({"ingest": {"queue_max_batches": "ten"}}, "ingest.queue_max_batches"),
    ({"server": {"port": -1}}, "server.port"),
    ({"labels": {"caps": {"model": 0}}}, "labels.caps"),
    ({"ingest": {"max_request_bytes": True}}, "ingest.max_request_bytes"),
])
def test_invalid_values_raise_an_error_naming_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(environ={}, overrides=overrides)


def test_a_config_file_that_is_not_a_mapping_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(str(path), environ={})
