"""Human review labels -> a new version of a dataset (closing the loop from production).

Labels come from the sidecar (`GET /v1/review/labels`) or straight from its SQLite state
(`otel_llm_eval.records.review_labels.read_labels(db_path)`); each is a dict with
`id, trace_id, span_id, prompt, completion, model, variant, experiment, quality, issues,
comment, corrected_answer, judge_score, failed_checks, created_unix, labeled_unix`.

A label is a failure when `quality <= max_quality` (default 2) or, unless disabled, when it
names any issue. Each failure becomes a sample in the seed's format:
- `id`: `review-<label id>`; `query`: the prompt; `context`: [];
- `expected_answer`: the reviewer's corrected answer, or null when none was given (reference
  scorers then skip the sample, the judge still scores it);
- `tags`: the issues (lowercase, spaces as `_`) plus `human_review`;
- `source`: where it came from (trace and span id, model, variant, experiment, quality, the
  failing completion, comment, judge score, failed checks, labeled time).

The new version is the latest file of the dataset in the output directory plus the new
failures (samples already present by id are kept as they are), written as
`<dataset_id>-<version hex>.json`. Nothing is written when there is nothing new.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterable, Mapping

from . import datasets
from .datasets import Dataset

MAX_LABELS = 100_000  # bound on labels read in one export
LABELS_PATH = "/v1/review/labels"


class LabelSourceError(Exception):
    """The labels could not be read (sidecar unreachable, bad response, missing store)."""


PAGE_SIZE = 10_000  # the sidecar's maximum `limit`


def _get_json(url: str, token: str | None, timeout_seconds: float) -> Any:
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout_seconds) as resp:
            body = resp.read(256 * 1024 * 1024)
    except urllib.error.HTTPError as e:
        hint = " (pass --token)" if e.code in (401, 403) else ""
        raise LabelSourceError(f"GET {url} answered {e.code} {e.reason}{hint}") from e
    except (urllib.error.URLError, OSError) as e:
        raise LabelSourceError(f"cannot reach {url}: {getattr(e, 'reason', e)}") from e
    try:
        return json.loads(body)
    except ValueError as e:
        raise LabelSourceError(f"GET {url} did not return JSON: {e}") from e


def fetch_labels(sidecar_url: str, token: str | None = None, timeout_seconds: float = 30.0) -> list[dict[str, Any]]:
    """GET every label from a sidecar, page by page (`?since=<labeled_unix>&limit=`).

    Accepts `{"items": [...]}` (the sidecar's shape), `{"labels": [...]}` or a bare list. Pages
    overlap by a microsecond and are de-duplicated by id, so labels sharing a timestamp at a
    page boundary are not lost (unless more than a page of labels share one timestamp).
    """
    base = sidecar_url.rstrip("/") + LABELS_PATH
    out: list[dict[str, Any]] = []
    seen: set[Any] = set()
    since: float | None = None
    while len(out) < MAX_LABELS:
        query = {"limit": PAGE_SIZE} | ({"since": f"{since:.6f}"} if since is not None else {})
        doc = _get_json(f"{base}?{urllib.parse.urlencode(query)}", token, timeout_seconds)
        if isinstance(doc, Mapping):
            doc = doc.get("items", doc.get("labels"))
        if not isinstance(doc, list):
            raise LabelSourceError(f"GET {base}: expected a list of labels (or an object with `items`)")
        page = [d for d in doc if isinstance(d, Mapping)]
        new = [d for d in page if d.get("id") not in seen]
        for d in new:
            seen.add(d.get("id"))
        out.extend(dict(d) for d in new)
        stamps = [d.get("labeled_unix") for d in page if isinstance(d.get("labeled_unix"), (int, float))]
        if len(page) < PAGE_SIZE or not stamps:
            break
        # Overlap by a microsecond when that still moves forward; otherwise step past the
        # newest timestamp (only ties beyond a whole page at one instant could then be missed).
        candidate = max(stamps) - 1e-6
        if since is not None and candidate <= since:
            candidate = max(stamps)
            if candidate <= since:
                break
        since = candidate
    return out[:MAX_LABELS]


def read_labels_from_db(db_path: str | Path) -> list[dict[str, Any]]:
    """Labels from the sidecar's SQLite state through the review part's reader."""
    if not Path(db_path).is_file():
        raise LabelSourceError(f"no sidecar state at {db_path}")
    try:
        from ..records.review_labels import read_labels
    except ImportError as e:
        raise LabelSourceError(f"this install cannot read review labels from a database ({e}); "
                               f"use --sidecar URL instead") from e
    try:
        labels = read_labels(str(db_path))
    except Exception as e:
        raise LabelSourceError(f"cannot read labels from {db_path}: {type(e).__name__}: {e}") from e
    return [dict(d) for d in list(labels)[:MAX_LABELS] if isinstance(d, Mapping)]


def _issues(label: Mapping[str, Any]) -> list[str]:
    raw = label.get("issues") or []
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raw = [p for p in raw.split(",")]
    out = []
    for i in raw if isinstance(raw, list) else []:
        tag = "_".join(str(i).strip().lower().split())
        if tag and tag not in out:
            out.append(tag)
    return out


def is_failure(label: Mapping[str, Any], *, max_quality: int = 2, issues_fail: bool = True) -> bool:
    q = label.get("quality")
    try:
        if q is not None and float(q) <= max_quality:
            return True
    except (TypeError, ValueError):
        pass
    return bool(issues_fail and _issues(label))


def label_to_sample(label: Mapping[str, Any]) -> dict[str, Any] | None:
    """The dataset sample of one labeled failure; None when it has no prompt to replay."""
    prompt = label.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return None
    corrected = label.get("corrected_answer")
    corrected = corrected if isinstance(corrected, str) and corrected.strip() else None
    lid = label.get("id")
    if lid is None:
        lid = f"{label.get('trace_id')}-{label.get('span_id')}"
    source = {k: label.get(k) for k in ("trace_id", "span_id", "model", "variant", "experiment", "quality",
                                         "comment", "judge_score", "failed_checks", "labeled_unix")
              if label.get(k) not in (None, "", [])}
    if label.get("completion") is not None:
        source["completion"] = label.get("completion")
    return {
        "id": f"review-{lid}",
        "query": prompt,
        "context": [],
        "expected_answer": corrected,
        "tags": _issues(label) + ["human_review"],
        "source": source,
    }


def latest_version(out_dir: Path, dataset_id: str) -> Dataset | None:
    """The most recent valid file of this dataset in out_dir (by created_at, then mtime)."""
    best: tuple[str, float, Dataset] | None = None
    for p in sorted(out_dir.glob(f"{dataset_id}-*.json")):
        try:
            ds = datasets.load(p)
        except (datasets.DatasetError, OSError):
            continue
        if ds.dataset_id != dataset_id:
            continue
        key = (ds.created_at or "", p.stat().st_mtime)
        if best is None or key > best[:2]:
            best = (key[0], key[1], ds)
    return best[2] if best else None


def export(labels: Iterable[Mapping[str, Any]], out_dir: str | Path, *, dataset_id: str = "review-failures",
           max_quality: int = 2, issues_fail: bool = True) -> dict[str, Any]:
    """Write the new version (if anything is new). Returns what happened, for the CLI to print."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    previous = latest_version(out, dataset_id)
    samples = list(previous.samples) if previous else []
    known = {datasets.sample_id(s) for s in samples}
    seen = failures = skipped = 0
    added: list[str] = []
    for label in labels:
        seen += 1
        if not is_failure(label, max_quality=max_quality, issues_fail=issues_fail):
            continue
        failures += 1
        sample = label_to_sample(label)
        if sample is None:
            skipped += 1
            continue
        if sample["id"] in known:
            continue
        problems = datasets.check_sample(sample)
        if problems:
            skipped += 1
            continue
        known.add(sample["id"])
        samples.append(sample)
        added.append(sample["id"])
    result: dict[str, Any] = {"labels": seen, "failures": failures, "added": len(added),
                              "skipped_without_prompt": skipped,
                              "previous_version": previous.version if previous else None}
    if not added:
        result.update(written=None, version=result["previous_version"], samples=len(samples))
        return result
    extra = {"source": "human review labels"}
    if previous:
        extra["parent"] = {"dataset_id": dataset_id, "version": previous.version}
    ds = Dataset(dataset_id, datasets.now_iso(), samples, None, "json", extra)
    path = out / f"{dataset_id}-{ds.version.split(':', 1)[1][:12]}.json"
    datasets.write(ds, path)
    result.update(written=str(path), version=ds.version, samples=len(samples))
    return result
