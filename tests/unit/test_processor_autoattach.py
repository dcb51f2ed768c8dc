"""Zero-code settings: environment and JSON config file, with clear errors for bad values."""

from __future__ import annotations

import json

import pytest

from otel_llm_eval import semconv
from otel_llm_eval.processor import HeuristicJudge, OpenAIJudge
from otel_llm_eval.processor import autoattach
from otel_llm_eval.processor.autoattach import ConfigError, build_processor, load_settings

P = "OTEL_LLM_EVAL_"


def test_nothing_happens_unless_enabled():
    assert load_settings({}) is None
    assert load_settings({P + "ENABLED": "false", P + "JUDGE": "heuristic"}) is None


def test_environment_overrides_the_config_file(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"judge": "none", "judge_sample_rate": 0.5, "max_judge_usd_per_hour": 2}))
    settings = load_settings({P + "ENABLED": "1", P + "CONFIG": str(cfg), P + "JUDGE_SAMPLE_RATE": "0.25"})
    assert settings == {"judge": "none", "judge_sample_rate": 0.25, "max_judge_usd_per_hour": 2}


BAD = [
    ("a non-numeric rate names the variable", {P + "JUDGE_SAMPLE_RATE": "x"}, None, "JUDGE_SAMPLE_RATE"),
    ("a non-integer call budget names the variable", {P + "MAX_JUDGE_CALLS_PER_MINUTE": "1.5"}, None,
     "MAX_JUDGE_CALLS_PER_MINUTE"),
    ("a missing config file names the path", {P + "CONFIG": "/nonexistent/x.json"}, None, "cannot read"),
    ("a config file that is not JSON", {}, "{nope", "not valid JSON"),
    ("a config file that is not an object", {}, "[1]", "JSON object"),
    ("an unknown key is listed", {}, '{"judge_rate": 1}', "unknown otel-llm-eval setting"),
]


@pytest.mark.parametrize("env,file_text,message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_settings_raise_a_config_error_naming_the_problem(tmp_path, env, file_text, message):
    env = {P + "ENABLED": "true", **env}
    if file_text is not None:
        cfg = tmp_path / "c.json"
        cfg.write_text(file_text)
        env[P + "CONFIG"] = str(cfg)
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


JUDGES = [
    ("heuristic is the default judge", {}, HeuristicJudge),
    ("openai with a model", {"judge": "openai", "judge_model": "m", "judge_base_url": "http://127.0.0.1:1/v1"},
     OpenAIJudge),
    ("none disables judging", {"judge": "none"}, type(None)),
    ("a module:attr judge is imported", {"judge": "otel_llm_eval.processor.judges:DEFAULT_RUBRIC"}, None),
]


@pytest.mark.parametrize("settings,kind", [j[1:] for j in JUDGES], ids=[j[0] for j in JUDGES])
def test_judge_selection(settings, kind):
    if kind is None:  # a string is not callable: the error says so
        with pytest.raises(ConfigError, match="not callable"):
            build_processor(settings)
        return
    processor = build_processor(settings)
    assert isinstance(processor._judge, kind)
    processor.shutdown()


def test_openai_judge_without_model_is_a_config_error():
    with pytest.raises(ConfigError, match="JUDGE_MODEL"):
        build_processor({"judge": "openai"})


def test_config_file_experiments_become_default_experiments():
    processor = build_processor({"experiments": [{"id": "deploy", "variants": {"a": 0.5, "b": 0.5},
                                                  "variant": "b"}]})
    assert processor._default_state.attributes[semconv.EXPERIMENTS] == ("deploy=b",)
    with pytest.raises(ConfigError, match="needs id, variants and variant"):
        build_processor({"experiments": [{"id": "x"}]})
    with pytest.raises(ValueError, match="sum to"):
        build_processor({"experiments": [{"id": "x", "variants": {"a": 0.2}, "variant": "a"}]})


class _EntryPoint:
    def __init__(self, name, load):
        self.name, self._load = name, load

    def load(self):
        return self._load()


class _Instrumentor:
    def __init__(self, active):
        self.is_instrumented_by_opentelemetry = active


def _broken_import():
    raise ModuleNotFoundError("No module named 'opentelemetry.util.genai.instruments'")


@pytest.mark.parametrize("case,name,load,library_missing,disabled,reported", [
    ("an instrumentor whose own import fails is reported", "openai_v2", _broken_import, False, "", True),
    ("an instrumentor that did not instrument is reported", "openai_v2", lambda: lambda: _Instrumentor(False),
     False, "", True),
    ("an active instrumentor is not reported", "openai_v2", lambda: lambda: _Instrumentor(True), False, "", False),
    ("an instrumentor of a library that is not installed is not reported", "anthropic", _broken_import, True, "", False),
    ("a disabled instrumentor is not reported", "openai_v2", _broken_import, False, "openai_v2", False),
])
def test_installed_instrumentors_that_failed_to_load_are_found(monkeypatch, case, name, load, library_missing,
                                                              disabled, reported):
    import importlib.metadata

    from opentelemetry.instrumentation import dependencies
    from opentelemetry.instrumentation.auto_instrumentation import _load

    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group: [_EntryPoint(name, load)] if group == "opentelemetry_instrumentor" else [])
    monkeypatch.setattr(_load._EntryPointDistFinder, "dist_for", lambda self, ep: None)
    monkeypatch.setattr(dependencies, "get_dist_dependency_conflicts", lambda dist: "missing" if library_missing else None)
    monkeypatch.setenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", disabled)
    found = autoattach.failed_instrumentors()
    assert [n for n, _ in found] == ([name] if reported else [])


def test_zero_code_attach_warns_about_each_failed_instrumentor(monkeypatch, caplog):
    monkeypatch.setenv("OTEL_LLM_EVAL_ENABLED", "true")
    monkeypatch.setattr(autoattach, "failed_instrumentors", lambda: [("openai_v2", "ModuleNotFoundError: x")])
    monkeypatch.setattr(autoattach, "build_processor", lambda *a, **k: (_ for _ in ()).throw(ValueError("stop here")))
    with caplog.at_level("WARNING", logger="otel_llm_eval.autoattach"):
        autoattach.post_instrument()
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "openai_v2" in warnings[0].getMessage()
