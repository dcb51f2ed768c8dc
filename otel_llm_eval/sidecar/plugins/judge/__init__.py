"""The sidecar judge plugin: layer 2 of the evaluation cascade for apps in any language.

Load it with `plugins: [..., "otel_llm_eval.sidecar.plugins.judge:JudgePlugin"]` (it is in the default
plugin list) and turn it on with `judge.enabled: true`. See plugin.py for the cascade and
docs/evaluation-cascade.md for the picture and the config.
"""

from .plugin import CONFIG_DEFAULTS, JudgeCallSummarizer, JudgePlugin

__all__ = ["CONFIG_DEFAULTS", "JudgeCallSummarizer", "JudgePlugin"]
