"""Offline evaluation: datasets, the regression gate, benchmark history, the cost model.

Modules (each usable as a library; the CLI modules `*_cli.py` only parse arguments and print):
- `datasets`: load/validate (line, field, reason), info, content-hash version, stratified sample, diff, write.
- `regress`: run a target over a dataset concurrently, score, compare with a baseline (`paired`
  holds the sign-flip permutation and bootstrap tests), `report` formats text/Markdown/JUnit.
- `labels`: human review labels -> a new dataset version.
- `bench`: benchmark history in SQLite, the seed's table, Prometheus text, push to the sidecar.
- `cost`: `monthly_cost(...)` and `rates_for_budget(...)`.

Nothing here is imported by `import otel_llm_eval` (the in-app path); `paired` needs numpy.
"""
