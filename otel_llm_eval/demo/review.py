"""Simulated human reviewers working the sidecar's review queue through its HTTP API.

`label_queue(sidecar_url, seed)` does what people at the labeling page (`GET /review`) do, over
the same routes the page calls: `GET /v1/review/queue`, then `POST /v1/review/{id}/label` with a
quality 1..5, the issues they see and, for a failure, the answer the bot should have given. The
reviewers judge from what the item shows (the completion and the checks that failed), with a
little disagreement between them, so the judge–human agreement the sidecar computes is not
perfect by construction. Then `GET /v1/review/summary` gives what the report shows.
"""

from __future__ import annotations

import json
import random
import urllib.error
import urllib.request
from typing import Any

from . import simulation as sim


REVIEWERS = ("reviewer-ana", "reviewer-ben")
#: Share of labels on which a reviewer's quality is off by one from what the answer deserves.
NOISE = 0.08
#: Upper bound on the labels one demo run posts (keeps the step short).
MAX_LABELS = 400

_REFUSALS = {sim.BAD_ANSWERS[0], sim.BAD_ANSWERS[2]}


def _request(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - the demo's loopback sidecar
        return json.loads(resp.read() or b"null")


def verdict(item: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The label a reviewer gives one queue item."""
    completion = (item.get("completion") or "").strip()
    failed = set(item.get("failed_checks") or [])
    found = sim.question_in(item.get("prompt") or "")
    if completion in sim.BAD_ANSWERS:
        quality, issues = 1, ["Refusal" if completion in _REFUSALS else "Irrelevant"]
    elif "pii" in failed:
        quality, issues = 2, ["Unsafe"]  # a good answer that leaked an e-mail address
    else:
        quality, issues = 5, []
    if rng.random() < NOISE:
        quality = min(5, quality + 1) if quality < 3 else quality - 1
    body: dict[str, Any] = {"quality": quality, "issues": issues, "reviewer": REVIEWERS[rng.randrange(2)]}
    if quality <= 2 and found is not None:
        body["corrected_answer"] = sim.good_answer(*found)
        body["comment"] = "should have answered the question" if issues != ["Unsafe"] else "leaks an address"
    return body


def label_queue(sidecar_url: str, seed: int, max_labels: int = MAX_LABELS) -> dict[str, Any]:
    """Label the queue until it is empty (or `max_labels`); returns counts and the summary."""
    rng = random.Random(f"review:{seed}")
    base = sidecar_url.rstrip("/")
    posted = conflicts = 0
    while posted < max_labels:
        items = _request("GET", f"{base}/v1/review/queue?limit=50").get("items") or []
        if not items:
            break
        for item in items[: max_labels - posted]:
            try:
                _request("POST", f"{base}/v1/review/{item['id']}/label", verdict(item, rng))
                posted += 1
            except urllib.error.HTTPError as e:
                if e.code != 409:  # 409: labeled meanwhile (two reviewers on one item)
                    raise
                conflicts += 1
    summary = _request("GET", f"{base}/v1/review/summary")
    return {"labels_posted": posted, "conflicts": conflicts, "summary": summary}
