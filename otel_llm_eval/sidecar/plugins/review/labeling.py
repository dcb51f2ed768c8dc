"""What a label is: item and issue ids, the issue vocabulary, and the check of a label body.

Pure (no I/O, no state): `validate_label` runs on an HTTP worker thread before the plugin takes
its lock; api.py and plugin.py both import their shared constants from here.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Mapping

DEFAULT_ISSUES = ("Hallucination", "Irrelevant", "Unsafe", "Poor formatting")
LABEL_BODY_MAX_BYTES = 64 * 1024
COMMENT_MAX_CHARS = 4000
CORRECTED_MAX_CHARS = 20000
REVIEWER_MAX_CHARS = 200
MAX_ISSUES_PER_LABEL = 20
LABEL_FIELDS = frozenset({"quality", "issues", "comment", "corrected_answer", "reviewer"})


class LabelError(Exception):
    """A label request the API refuses; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def issue_id(name: str) -> str:
    """Canonical issue id: "Poor formatting" -> "poor_formatting"."""
    return "_".join(str(name).strip().lower().replace("-", " ").split())


def item_id_for(trace_id: str, span_id: str | None) -> str:
    """Stable 16-hex id of the review item for a call (same call -> same id after a restart)."""
    return hashlib.sha256(f"{trace_id}:{span_id or ''}".encode()).hexdigest()[:16]


def issue_table(extra: Iterable[Any] = ()) -> dict[str, str]:
    """Issue id -> display name: DEFAULT_ISSUES then `extra` (first name of an id wins; "none",
    the label of a no-issue count, and names without an id are left out)."""
    issues: dict[str, str] = {}
    for n in list(DEFAULT_ISSUES) + [str(n) for n in extra]:
        if issue_id(n) and issue_id(n) != "none":
            issues.setdefault(issue_id(n), n)
    return issues


def validate_label(body: Any, issues: Mapping[str, str]) -> dict[str, Any]:
    """Check a label body against the issue table; LabelError(400) with the reason when it is
    not acceptable. Returns {quality, issues (ids, deduplicated), comment, corrected_answer,
    reviewer} with the text fields as given (the caller truncates and redacts them)."""
    if not isinstance(body, dict):
        raise LabelError(400, "body must be a JSON object")
    unknown = set(body) - LABEL_FIELDS
    if unknown:
        raise LabelError(400, f"unknown fields: {sorted(unknown)}")
    q = body.get("quality")
    if isinstance(q, float) and q.is_integer():
        q = int(q)
    if isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= 5:
        raise LabelError(400, f"quality must be an integer from 1 to 5, got {body.get('quality')!r}")
    raw_issues = body.get("issues", [])
    if raw_issues is None:
        raw_issues = []
    if not isinstance(raw_issues, list) or not all(isinstance(i, str) for i in raw_issues):
        raise LabelError(400, "issues must be a list of strings")
    if len(raw_issues) > MAX_ISSUES_PER_LABEL:
        raise LabelError(400, f"at most {MAX_ISSUES_PER_LABEL} issues")
    ids = []
    for raw in raw_issues:
        iid = issue_id(raw)
        if iid not in issues:
            raise LabelError(400, f"unknown issue {raw!r}; known: {sorted(issues)} "
                                  "(add more under review.issues)")
        if iid not in ids:
            ids.append(iid)
    out: dict[str, Any] = {"quality": q, "issues": ids}
    for field, limit in (("comment", COMMENT_MAX_CHARS), ("corrected_answer", CORRECTED_MAX_CHARS),
                         ("reviewer", REVIEWER_MAX_CHARS)):
        v = body.get(field)
        if v is None:
            out[field] = None
            continue
        if not isinstance(v, str):
            raise LabelError(400, f"{field} must be a string")
        if len(v) > limit:
            raise LabelError(400, f"{field} is longer than {limit} characters")
        out[field] = v
    return out


__all__ = ["COMMENT_MAX_CHARS", "CORRECTED_MAX_CHARS", "DEFAULT_ISSUES", "LABEL_BODY_MAX_BYTES",
           "LABEL_FIELDS", "LabelError", "MAX_ISSUES_PER_LABEL", "REVIEWER_MAX_CHARS", "issue_id",
           "issue_table", "item_id_for", "validate_label"]
