"""The sidecar's ingest pipeline: from an OTLP request to the state.

otlp (decode, validate, answer per the OTLP spec) -> edge (value limits at the HTTP edge) ->
journal (durable before the answer) -> workers (processes that run prepare) -> prepare (walk,
normalize, one_call and text_join: each LLM call once with its text; checks; prices; batch sums) ->
apply (the ingest thread folds batch sums into the state and feeds the plugins).
"""
