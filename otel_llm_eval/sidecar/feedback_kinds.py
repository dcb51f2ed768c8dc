"""What a user feedback record means: thumbs, a task outcome, a rating on a scale, a category or
free text. Pure functions, no I/O.

Kinds and what the sidecar does with each (docs/feedback.md):
- binary:      thumbs, like, helpful: `llm_user_feedback_total{feedback_type=positive|negative}`;
               analysed per variant as a proportion.
- outcome:     task completed, converted: `llm_task_outcomes_total{outcome, result=success|failure}`;
               analysed per variant as a proportion (the seed's task-completion metric).
- scale:       a rating on a declared range (1..5, 1..10): `llm_user_rating` histogram; analysed per
               variant as a mean. Never counted as a thumbs-up, whatever its value.
- categorical: a label without a number (e.g. "wrong_language"): `llm_user_feedback_category_total`.
- text:        a comment only: `llm_user_feedback_comments_total` (the text stays in the trace).

The kind comes from, in order: the sidecar config (`feedback.kinds.<name>`), the span attribute
`llm_eval.feedback.kind` (`record_feedback(..., kind=...)`, `record_outcome`), then the default:
1. a rating word in the name (rating, star, score, csat, nps, grade) with a number → scale;
2. an outcome word in the name (task, complet, conver, success, resolved, outcome) with a value in
   {-1, 0, 1} or a label → outcome;
3. a thumbs label (up/down, positive/negative, like/dislike, ...), or a thumbs word in the name
   (thumb, like, helpful, vote, feedback) with a value in {-1, 0, 1} → binary;
4. any other number → scale; a label alone → categorical; a comment alone → text.
So a rating is never read as a thumbs-up: "user_rating" 1 is a rating of 1, and any value outside
{-1, 0, 1} is a rating whatever the name. Declare a kind where a name is ambiguous.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from .. import semconv

KINDS = ("binary", "outcome", "scale", "categorical", "text")
POSITIVE_LABELS = frozenset({"positive", "up", "thumbs_up", "like", "yes", "good", "helpful", "true", "success",
                             "completed", "converted"})
NEGATIVE_LABELS = frozenset({"negative", "down", "thumbs_down", "dislike", "no", "bad", "unhelpful", "false",
                             "failure", "failed", "abandoned"})
BINARY_NAME_WORDS = ("thumb", "like", "helpful", "vote", "feedback")
OUTCOME_NAME_WORDS = ("task", "complet", "conver", "success", "resolved", "outcome")
SCALE_NAME_WORDS = ("rating", "star", "score", "csat", "nps", "grade")
BINARY_VALUES = frozenset({-1.0, 0.0, 1.0})


@dataclass(frozen=True)
class FeedbackKind:
    """kind in KINDS; scale_min/max for scale ratings (None when not declared)."""

    kind: str
    scale_min: float | None = None
    scale_max: float | None = None


def number(value: Any) -> float | None:
    """A finite float from an attribute value; None for None, bools, non-numbers, NaN and Inf."""
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def resolve(name: str, score: float | None, label: str | None, comment: str | None,
            attributes: Mapping[str, Any] | None, declared: Mapping[str, Mapping[str, Any]] | None) -> FeedbackKind:
    """The kind of one feedback record (see the module docstring for the order)."""
    cfg = (declared or {}).get(name)
    attrs = attributes or {}
    kind = (cfg or {}).get("kind") or attrs.get(semconv.FEEDBACK_KIND)
    lo = number((cfg or {}).get("min", attrs.get(semconv.FEEDBACK_SCALE_MIN)))
    hi = number((cfg or {}).get("max", attrs.get(semconv.FEEDBACK_SCALE_MAX)))
    if isinstance(kind, str) and kind in KINDS:
        return FeedbackKind(kind, lo, hi)
    lab = (label or "").strip().lower()
    lname = name.lower()
    polar_label = lab in POSITIVE_LABELS or lab in NEGATIVE_LABELS
    polar_value = score is None or score in BINARY_VALUES
    if any(w in lname for w in SCALE_NAME_WORDS) and score is not None and not polar_label:
        return FeedbackKind("scale", lo, hi)
    if any(w in lname for w in OUTCOME_NAME_WORDS) and (score is not None or lab) and polar_value:
        return FeedbackKind("outcome")
    if polar_label or (any(w in lname for w in BINARY_NAME_WORDS) and polar_value and score is not None):
        return FeedbackKind("binary")
    if score is not None:
        return FeedbackKind("scale", lo, hi)
    if lab:
        return FeedbackKind("categorical")
    return FeedbackKind("text") if comment else FeedbackKind("categorical")


def is_positive(score: float | None, label: str | None) -> bool | None:
    """A binary or outcome record's polarity: the label when it is in the vocabulary, else
    score > 0 (1 = up / success, 0 or -1 = down / failure); None when neither says."""
    lab = (label or "").strip().lower()
    if lab in POSITIVE_LABELS:
        return True
    if lab in NEGATIVE_LABELS:
        return False
    if score is not None:
        return score > 0
    return None


def in_range(kind: FeedbackKind, score: float) -> bool:
    """A scale rating inside its declared range (always True without one)."""
    if kind.scale_min is not None and score < kind.scale_min:
        return False
    if kind.scale_max is not None and score > kind.scale_max:
        return False
    return True
