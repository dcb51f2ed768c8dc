"""Per-sample scorers for the regression gate.

Each scorer maps (sample, answer) to a float or None (None = not applicable to this sample, e.g.
a reference metric on a sample without `expected_answer`; such samples are left out of that
metric's mean and of the paired test).

- `exact`:    1.0 when the normalized answer equals the normalized expected answer, else 0.0.
- `contains`: 1.0 when the normalized expected answer appears in the normalized answer.
- `f1`:       token F1 (SQuAD style: bag of tokens, precision/recall harmonic mean).
- `judge`:    the judge's score for the (query, answer) pair, via the processor's judges.
- `latency`:  seconds the target took (or reported); lower is better.
- `cost`:     USD the target reported; lower is better.

Normalization (SQuAD): lowercase, strip punctuation, drop the articles a/an/the, collapse
whitespace. Pure functions; the judge scorer blocks for as long as the judge does.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..semconv import LLMCall

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_text(text: str) -> str:
    text = text.lower().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(answer: str, expected: str) -> float:
    return 1.0 if normalize_text(answer) == normalize_text(expected) else 0.0


def contains(answer: str, expected: str) -> float:
    exp = normalize_text(expected)
    if not exp:
        return 1.0 if not normalize_text(answer) else 0.0
    # Whole-token containment: "4" must not match inside "42".
    return 1.0 if f" {exp} " in f" {normalize_text(answer)} " else 0.0


def token_f1(answer: str, expected: str) -> float:
    pred, gold = normalize_text(answer).split(), normalize_text(expected).split()
    if not pred or not gold:
        return 1.0 if pred == gold else 0.0
    common = Counter(pred) & Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class MetricSpec:
    """A metric of the gate: its name and whether a higher value is better."""

    name: str
    higher_is_better: bool
    unit: str = ""


#: Every scorer the gate knows. `success` (1 = the target returned, 0 = it raised) is always on.
METRICS: dict[str, MetricSpec] = {
    "success": MetricSpec("success", True),
    "exact": MetricSpec("exact", True),
    "contains": MetricSpec("contains", True),
    "f1": MetricSpec("f1", True),
    "judge": MetricSpec("judge", True),
    "latency": MetricSpec("latency", False, "s"),
    "cost": MetricSpec("cost", False, "USD"),
}
DEFAULT_SCORERS = ("exact", "contains", "f1", "latency", "cost")
REFERENCE_SCORERS = ("exact", "contains", "f1")

Judge = Callable[[LLMCall], Any]


def judge_score(judge: Judge, sample: Mapping[str, Any], answer: str) -> float | None:
    """Score (query, answer) with a judge `judge(LLMCall) -> JudgeResult | float`.

    The prompt given to the judge is the query, preceded by the context passages when the
    sample has them. Returns None when the judge fails or returns no score (the judge's own
    errors are not the target's regressions). Never raises.
    """
    context = sample.get("context") or []
    prompt = str(sample.get("query", ""))
    if context:
        prompt = "Context:\n" + "\n".join(f"- {c}" for c in context) + "\n\nQuestion: " + prompt
    call = LLMCall(operation="chat", prompt=prompt, completion=answer)
    try:
        result = judge(call)
    except Exception:
        return None
    score = getattr(result, "score", result)
    if getattr(result, "error", None):
        return None
    try:
        value = float(score)
    except (TypeError, ValueError):
        return None
    return value if value == value else None  # NaN -> None


def score_sample(sample: Mapping[str, Any], answer: str | None, *, scorers: tuple[str, ...],
                 latency_seconds: float | None, cost_usd: float | None,
                 judge: Judge | None = None) -> dict[str, float | None]:
    """Scores of one sample. `answer is None` means the target raised: quality scores are 0."""
    out: dict[str, float | None] = {"success": 0.0 if answer is None else 1.0}
    expected = sample.get("expected_answer")
    for name in scorers:
        if name in REFERENCE_SCORERS:
            if expected is None:
                out[name] = None
            elif answer is None:
                out[name] = 0.0
            else:
                fn = {"exact": exact_match, "contains": contains, "f1": token_f1}[name]
                out[name] = fn(answer, expected)
        elif name == "judge":
            if judge is None:
                raise ValueError("the judge scorer needs a judge")
            out[name] = 0.0 if answer is None else judge_score(judge, sample, answer)
        elif name == "latency":
            out[name] = None if answer is None else latency_seconds
        elif name == "cost":
            out[name] = None if answer is None else cost_usd
        elif name != "success":
            raise ValueError(f"unknown scorer {name!r} (known: {', '.join(METRICS)})")
    return out
