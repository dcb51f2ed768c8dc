"""Generators for the observability bundle: dashboards/, alerts/ and processors/.

Everything here is built from `otel_llm_eval.catalog`; `otel-llm-eval bundle` writes the files and
`otel-llm-eval bundle --check` fails when a committed file differs from what the generators make.
Importing this package imports nothing heavy; grafanalib and PyYAML load only when rendering.
"""
