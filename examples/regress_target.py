"""A small demo target for `otel-llm-eval regress` (no network, deterministic).

    otel-llm-eval regress --dataset examples/dataset.json --target examples/regress_target.py:answer

In a real project the target calls your application (a prompt + model + retrieval pipeline) and
returns its answer; here a lookup table plays the model so the gate can be tried anywhere.
`REGRESS_DEMO_VARIANT` picks a behaviour:

- `baseline` (default): answers most questions right;
- `candidate`: fixes one wrong answer and is a little slower (no significant change: the gate passes);
- `worse`: a "new prompt" that breaks the math and RAG answers (the gate must fail);
- `flaky`: like baseline, but raises on two samples (they count as failures, the run goes on).

Returns a dict with the answer, a cost in USD (from a made-up price per character) and a
latency in seconds (modelled, not measured, so runs are reproducible).
"""

from __future__ import annotations

import os

_ANSWERS = {
    "geo-001": "The capital of France is Paris.",
    "geo-002": "Tokyo",
    "geo-003": "Ottawa is the capital of Canada.",
    "geo-004": "Sydney",  # a realistic mistake the baseline already makes
    "geo-005": "The Nile flows through Cairo.",
    "geo-006": "The Pacific Ocean",
    "geo-007": "Africa",
    "geo-008": "Brasilia",
    "math-001": "144",
    "math-002": "9",
    "math-003": "30",
    "math-004": "90",
    "math-005": "15",
    "math-006": "6",
    "sci-001": "Carbon dioxide",
    "sci-002": "Au",
    "sci-003": "8",
    "sci-004": "100 degrees Celsius",
    "sci-005": "Mars",
    "sci-006": "The nucleus",
    "rag-001": "New employees get 25 days of annual leave.",
    "rag-002": "The department head approves them.",
    "rag-003": "One week",
    "rag-004": "9318",
}

_WORSE = {
    "math-001": "124", "math-002": "8", "math-003": "35", "math-004": "45", "math-005": "16",
    "math-006": "8", "rag-001": "20 days", "rag-002": "The team lead", "rag-003": "Two weeks",
    "rag-004": "8080", "sci-003": "9", "sci-004": "90 degrees",
}

PRICE_USD_PER_CHAR = 0.00002


def answer(sample: dict) -> dict:
    variant = os.environ.get("REGRESS_DEMO_VARIANT", "baseline")
    sid = sample["id"]
    text = _ANSWERS.get(sid, "I don't know.")
    if variant == "candidate" and sid == "geo-004":
        text = "Canberra"
    elif variant == "worse":
        text = _WORSE.get(sid, text)
    elif variant == "flaky" and sid in ("geo-002", "sci-005"):
        raise ConnectionError("upstream model timed out (simulated)")
    prompt_chars = len(sample["query"]) + sum(len(c) for c in sample.get("context", []))
    return {
        "answer": text,
        "cost": round((prompt_chars + len(text)) * PRICE_USD_PER_CHAR, 6),
        "latency": round((0.21 if variant == "candidate" else 0.2) + 0.004 * len(text), 4),
    }
