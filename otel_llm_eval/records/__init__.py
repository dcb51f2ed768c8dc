"""Record types and storage shapes shared by the sidecar and the offline tools.

The sidecar and `otel_llm_eval.offline` never import each other's internals; what both need lives
here: benchmark records (`benchmarks`: the shape `bench record` writes and `POST /v1/benchmarks`
accepts) and reviewed labels (`review_labels`: the review queue's SQLite tables and the reader
`dataset export-labels` uses). Standard library only.
"""
