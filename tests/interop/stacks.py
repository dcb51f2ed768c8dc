"""The instrumentation stacks of the interop matrix: what each installs, its settings, its numbers.

`install` is the install line of docs/instrumentations.md with `otel-llm-eval` standing for this
checkout (a test checks the document and this table agree). Each stack gets its own venv under
`.cache/interop/<name>` (build_venvs.py), since the libraries pin OpenTelemetry differently.
Standard library only: imported by the builder, the tests and the app in every venv.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Stack:
    name: str
    install: str                     # pip arguments after `pip install` (docs/instrumentations.md)
    env: dict = field(default_factory=dict)  # content capture and semconv settings
    client: str = "openai"           # openai | anthropic
    model: str = "gpt-4o-mini"
    #: usd per token (input, output) of `model` in the genai-prices catalogue
    prices: tuple[float, float] = (0.15e-6, 0.6e-6)
    #: the max_tokens=3 call is streamed (Langfuse records finish reasons only for streams)
    length_streamed: bool = False
    #: finish reasons the judge sees for the plain, streamed and cut calls (None: not recorded)
    finish_reasons: tuple = ("stop", "stop", "length")
    #: the venv (stack name) this stack runs in, when it only differs by its settings
    venv: str = ""
    #: GenAI log records go to the sidecar's /v1/logs too (text sent as events)
    logs: bool = False
    #: run under `opentelemetry-instrument` (zero-code attach through the distro's entry points)
    zero_code: bool = False


OPENAI_V2_ENV = {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "span_only",
                 "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental"}

STACKS: dict[str, Stack] = {s.name: s for s in (
    Stack("openai-v2", "otel-llm-eval[openai-v2]", OPENAI_V2_ENV),
    Stack("openai-v2-event-only", "otel-llm-eval[openai-v2]",
          {**OPENAI_V2_ENV, "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "event_only"},
          venv="openai-v2", logs=True, finish_reasons=()),
    Stack("openai-v2-zero-code", "otel-llm-eval[openai-v2]", OPENAI_V2_ENV, venv="openai-v2", zero_code=True),
    Stack("openinference", "otel-llm-eval[openinference]"),
    Stack("openai-v2+openinference", "otel-llm-eval[openai-v2,openinference]", OPENAI_V2_ENV),
    Stack("openllmetry", "otel-llm-eval[openllmetry]", {"TRACELOOP_TRACE_CONTENT": "true"}),
    Stack("openllmetry-anthropic", "otel-llm-eval[openllmetry-anthropic]", {"TRACELOOP_TRACE_CONTENT": "true"},
          client="anthropic", model="claude-3-5-haiku-latest", prices=(0.8e-6, 4e-6)),
    Stack("openlit", "otel-llm-eval[openlit]"),
    Stack("langfuse", "otel-llm-eval[langfuse]", length_streamed=True, finish_reasons=(None, "stop", "length")),
    Stack("langfuse-3", "otel-llm-eval[exporter] langfuse==3.15.0 openai>=1.40 httpx>=0.27", length_streamed=True,
          finish_reasons=(None, "stop", "length")),
    Stack("logfire", "otel-llm-eval[logfire]"),
)}


def pip_args(stack: Stack, checkout: str) -> list[str]:
    """The install line with `otel-llm-eval` replaced by an editable install of this checkout."""
    out: list[str] = []
    for word in stack.install.split():
        if word.startswith("otel-llm-eval"):
            out += ["-e", checkout + word[len("otel-llm-eval"):]]
        else:
            out.append(word)
    return out
