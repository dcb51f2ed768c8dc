"""Evaluation datasets: load, validate, describe, sample, diff and write.

Two formats, both holding samples `{id, query, context[], expected_answer, tags[]}` (extra keys
are kept as metadata):

- the seed's JSON document: `{"dataset_id": ..., "created_at": ..., "samples": [...]}`
  (a bare JSON list of samples is accepted too);
- JSONL: one sample object per line (blank lines and lines starting with `#` are skipped).

Rules checked by `validate` (each problem names the line, the field and the reason):
`id` is a non-empty string or an integer and unique; `query` is a non-empty string;
`expected_answer` is present and a string (or null: "unknown", reference scorers skip the
sample); `context` and `tags`, when present, are lists of strings; a dataset has >= 1 sample.

The version of a dataset is a hash of its samples' content (sorted by id, canonical JSON), so the
same samples give the same version whatever the file format, key order or sample order, and a
regression baseline can be pinned to it.

Pure functions plus small file readers; nothing here touches the network. Functions raise
`DatasetError` (with every problem found) on invalid input and never print.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

REQUIRED_FIELDS = ("id", "query", "expected_answer")
LIST_FIELDS = ("context", "tags")
NO_TAG = "(untagged)"


@dataclass(frozen=True)
class Problem:
    """One validation problem: where (line, field) and why."""

    line: int | None  # 1-based line in the file; None when not tied to a line
    field: str | None  # e.g. "samples[3].query" or "query"
    reason: str

    def __str__(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.field:
            where.append(self.field)
        return (": ".join([", ".join(where), self.reason]) if where else self.reason)


class DatasetError(ValueError):
    """Invalid dataset file. `problems` lists every problem found (not only the first)."""

    def __init__(self, path: str | Path | None, problems: list[Problem]):
        self.path = str(path) if path is not None else None
        self.problems = problems
        head = f"{self.path}: " if self.path else ""
        shown = "; ".join(str(p) for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"{head}invalid dataset: {shown}{more}")


@dataclass
class Dataset:
    """A loaded dataset. `samples` are plain dicts (the target receives a copy of one)."""

    dataset_id: str
    created_at: str | None
    samples: list[dict[str, Any]]
    path: str | None = None
    format: str = "json"  # json | jsonl
    extra: dict[str, Any] = field(default_factory=dict)  # other top-level keys, kept on write

    @property
    def version(self) -> str:
        return content_version(self.samples)

    def by_id(self) -> dict[str, dict[str, Any]]:
        return {sample_id(s): s for s in self.samples}


def sample_id(sample: Mapping[str, Any]) -> str:
    """The id as a string (integer ids are accepted in files and compared as strings)."""
    return str(sample.get("id"))


def content_version(samples: Iterable[Mapping[str, Any]]) -> str:
    """`sha256:` + 16 hex chars over the canonical JSON of the samples, sorted by id."""
    canon = sorted(
        (json.dumps(dict(s), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
         for s in samples))
    h = hashlib.sha256()
    for line in canon:
        h.update(line.encode("utf-8"))
        h.update(b"\n")
    return "sha256:" + h.hexdigest()[:16]


# --------------------------------------------------------------------------- parsing


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _sample_offsets(text: str) -> list[int] | None:
    """Start offset of each element of the top-level `samples` array (or of a top-level list).

    Walks the already-valid JSON with raw_decode so line numbers are exact; None if the
    document is not shaped as expected (the caller then reports problems without lines).
    """
    dec = json.JSONDecoder()
    try:
        i = _skip_ws(text, 0)
        if text[i] == "[":
            arr_start = i
        elif text[i] == "{":
            i = _skip_ws(text, i + 1)
            arr_start = None
            while i < len(text) and text[i] != "}":
                key, i = dec.raw_decode(text, i)
                i = _skip_ws(text, i)
                i = _skip_ws(text, i + 1)  # ':'
                if key == "samples" and text[i] == "[":
                    arr_start = i
                _, i = dec.raw_decode(text, i)
                i = _skip_ws(text, i)
                if text[i] == ",":
                    i = _skip_ws(text, i + 1)
            if arr_start is None:
                return None
        else:
            return None
        offsets = []
        i = _skip_ws(text, arr_start + 1)
        while i < len(text) and text[i] != "]":
            offsets.append(i)
            _, i = dec.raw_decode(text, i)
            i = _skip_ws(text, i)
            if text[i] == ",":
                i = _skip_ws(text, i + 1)
        return offsets
    except (ValueError, IndexError):
        return None


def _is_jsonl(path: Path, text: str) -> bool:
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return True
    if path.suffix.lower() == ".json":
        return False
    # No telling suffix: JSONL if the first non-blank line is a complete object by itself.
    for line in text.splitlines():
        if line.strip():
            try:
                return isinstance(json.loads(line), dict) and len(text.strip().splitlines()) > 1
            except ValueError:
                return False
    return False


def parse_text(text: str, *, path: str | Path = "<string>", fmt: str | None = None) -> tuple[Dataset, list[Problem]]:
    """Parse a dataset document; return it with every problem found (empty list = valid).

    Never raises on bad content: problems are returned (the dataset may then be partial).
    """
    p = Path(str(path))
    fmt = fmt or ("jsonl" if _is_jsonl(p, text) else "json")
    problems: list[Problem] = []
    entries: list[tuple[int | None, str, Any]] = []  # (line, field prefix, raw sample)
    dataset_id, created_at, extra = p.stem or "dataset", None, {}

    if fmt == "jsonl":
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                entries.append((n, "", json.loads(line)))
            except ValueError as e:
                problems.append(Problem(n, None, f"not valid JSON ({e.msg} at column {e.colno})"))
    else:
        try:
            doc = json.loads(text)
        except ValueError as e:
            lineno = getattr(e, "lineno", None)
            msg = getattr(e, "msg", str(e))
            return Dataset(dataset_id, None, [], str(path), fmt), [Problem(lineno, None, f"not valid JSON ({msg})")]
        offsets = _sample_offsets(text)
        if isinstance(doc, list):
            raw_samples, prefix = doc, "samples"
        elif isinstance(doc, dict):
            raw_samples, prefix = doc.get("samples"), "samples"
            if "samples" not in doc:
                problems.append(Problem(1, "samples", "missing (the document needs a `samples` list)"))
                raw_samples = []
            elif not isinstance(raw_samples, list):
                problems.append(Problem(1, "samples", f"must be a list, got {type(raw_samples).__name__}"))
                raw_samples = []
            did = doc.get("dataset_id")
            if did is not None and not (isinstance(did, str) and did.strip()):
                problems.append(Problem(1, "dataset_id", "must be a non-empty string"))
            elif did:
                dataset_id = did
            ca = doc.get("created_at")
            if ca is not None and not isinstance(ca, str):
                problems.append(Problem(1, "created_at", "must be a string (ISO 8601)"))
            else:
                created_at = ca
            extra = {k: v for k, v in doc.items() if k not in ("dataset_id", "created_at", "samples")}
        else:
            return Dataset(dataset_id, None, [], str(path), fmt), [
                Problem(1, None, f"top level must be an object with `samples` or a list, got {type(doc).__name__}")]
        for i, raw in enumerate(raw_samples):
            line = _line_of(text, offsets[i]) if offsets and i < len(offsets) else None
            entries.append((line, f"{prefix}[{i}].", raw))

    samples: list[dict[str, Any]] = []
    first_line_of_id: dict[str, int | None] = {}
    for line, prefix, raw in entries:
        sample_problems = check_sample(raw, line=line, prefix=prefix)
        problems.extend(sample_problems)
        if not isinstance(raw, dict):
            continue
        sid = raw.get("id")
        if isinstance(sid, (str, int)) and not isinstance(sid, bool) and str(sid).strip():
            key = str(sid)
            if key in first_line_of_id:
                seen = first_line_of_id[key]
                where = f" (first at line {seen})" if seen is not None else ""
                problems.append(Problem(line, prefix + "id", f"duplicate id {key!r}{where}"))
                continue
            first_line_of_id[key] = line
        if not sample_problems:
            samples.append(raw)
    if not entries and not any(pr.field == "samples" for pr in problems) and not problems:
        problems.append(Problem(None, "samples", "empty dataset (no samples)"))
    problems.sort(key=lambda pr: pr.line or 0)  # stable: per-line order of checks is kept
    return Dataset(dataset_id, created_at, samples, str(path), fmt, extra), problems


def check_sample(raw: Any, *, line: int | None = None, prefix: str = "") -> list[Problem]:
    """Problems of one sample (empty list = valid)."""
    if not isinstance(raw, dict):
        return [Problem(line, prefix.rstrip(".") or None, f"sample must be an object, got {type(raw).__name__}")]
    out: list[Problem] = []
    for name in REQUIRED_FIELDS:
        if name not in raw:
            out.append(Problem(line, prefix + name, "missing required field"))
    sid = raw.get("id")
    if "id" in raw:
        if isinstance(sid, bool) or not isinstance(sid, (str, int)):
            out.append(Problem(line, prefix + "id", f"must be a string or integer, got {type(sid).__name__}"))
        elif isinstance(sid, str) and not sid.strip():
            out.append(Problem(line, prefix + "id", "empty"))
    q = raw.get("query")
    if "query" in raw:
        if not isinstance(q, str):
            out.append(Problem(line, prefix + "query", f"must be a string, got {type(q).__name__}"))
        elif not q.strip():
            out.append(Problem(line, prefix + "query", "empty"))
    ea = raw.get("expected_answer")
    if "expected_answer" in raw and ea is not None and not isinstance(ea, str):
        out.append(Problem(line, prefix + "expected_answer", f"must be a string or null, got {type(ea).__name__}"))
    for name in LIST_FIELDS:
        if name in raw:
            v = raw[name]
            if not isinstance(v, list):
                out.append(Problem(line, prefix + name, f"must be a list of strings, got {type(v).__name__}"))
            else:
                for j, item in enumerate(v):
                    if not isinstance(item, str):
                        out.append(Problem(line, f"{prefix}{name}[{j}]", f"must be a string, got {type(item).__name__}"))
                        break
    return out


def validate(path: str | Path) -> list[Problem]:
    """Every problem of the dataset file (empty list = valid). Raises OSError if unreadable."""
    p = Path(path)
    text = _read_text(p)
    if isinstance(text, Problem):
        return [text]
    return parse_text(text, path=p)[1]


def _read_text(p: Path) -> str | Problem:
    data = p.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return Problem(data.count(b"\n", 0, e.start) + 1, None, "not UTF-8 text")


def load(path: str | Path) -> Dataset:
    """Load and validate a dataset file. Raises DatasetError (all problems) or OSError."""
    p = Path(path)
    text = _read_text(p)
    if isinstance(text, Problem):
        raise DatasetError(p, [text])
    ds, problems = parse_text(text, path=p)
    if problems:
        raise DatasetError(p, problems)
    return ds


# --------------------------------------------------------------------------- describe


def tags_of(sample: Mapping[str, Any]) -> list[str]:
    return list(sample.get("tags") or [])


def info(ds: Dataset) -> dict[str, Any]:
    """Summary: counts, counts by tag (a sample counts once per tag), version."""
    by_tag: dict[str, int] = {}
    for s in ds.samples:
        for t in (tags_of(s) or [NO_TAG]):
            by_tag[t] = by_tag.get(t, 0) + 1
    return {
        "path": ds.path,
        "format": ds.format,
        "dataset_id": ds.dataset_id,
        "created_at": ds.created_at,
        "version": ds.version,
        "samples": len(ds.samples),
        "with_expected_answer": sum(1 for s in ds.samples if s.get("expected_answer") is not None),
        "with_context": sum(1 for s in ds.samples if s.get("context")),
        "tags": dict(sorted(by_tag.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def stratum_of(sample: Mapping[str, Any], key: str) -> str:
    """Stratum label of a sample: for `tags`, its sorted tags joined by `+`; else the field value."""
    if key == "tags":
        tags = sorted(set(tags_of(sample)))
        return "+".join(tags) if tags else NO_TAG
    v = sample.get(key)
    if v is None and isinstance(sample.get("metadata"), Mapping):
        v = sample["metadata"].get(key)
    return NO_TAG if v is None else (json.dumps(v, sort_keys=True) if not isinstance(v, str) else v)


def allocate(sizes: Mapping[str, int], n: int) -> dict[str, int]:
    """Proportional allocation of n draws over strata (largest remainder), within each size.

    When n >= the number of non-empty strata, every stratum gets at least one draw, so rare
    tags are not lost in a small sample.
    """
    total = sum(sizes.values())
    n = min(n, total)
    if n <= 0 or total == 0:
        return {k: 0 for k in sizes}
    keys = sorted(k for k in sizes if sizes[k] > 0)
    alloc = {k: 0 for k in sizes}
    if n >= len(keys):
        # Strata whose proportional share is below one draw get exactly one; the others share
        # the rest in proportion (repeat: shrinking the rest can push another below one).
        while True:
            free = [k for k in keys if alloc[k] == 0]
            n_free = n - sum(alloc.values())
            tot_free = sum(sizes[k] for k in free)
            small = [k for k in free if n_free * sizes[k] / tot_free < 1]
            if not small:
                break
            for k in small:
                alloc[k] = 1
    remaining = n - sum(alloc.values())
    # First round: only strata not fixed at one draw share the rest; later rounds (when a
    # stratum ran out of samples) give what is left to any stratum with samples to spare.
    pool = [k for k in keys if alloc[k] == 0] or keys
    while remaining > 0:
        room = {k: sizes[k] - alloc[k] for k in pool if sizes[k] > alloc[k]}
        if not room:
            pool = keys
            continue
        room_total = sum(room.values())
        quotas = {k: remaining * room[k] / room_total for k in room}
        floors = {k: min(room[k], math.floor(q)) for k, q in quotas.items()}
        for k, f in floors.items():
            alloc[k] += f
        left = remaining - sum(floors.values())
        # Largest remainders first; ties broken by stratum name so the result is deterministic.
        order = sorted(room, key=lambda k: (-(quotas[k] - floors[k]), k))
        for k in order:
            if left == 0:
                break
            if alloc[k] < sizes[k]:
                alloc[k] += 1
                left -= 1
        remaining = n - sum(alloc.values())
        pool = keys
    return alloc


def stratified_sample(ds: Dataset, n: int, *, stratify: str | None = "tags", seed: int = 0) -> Dataset:
    """A new Dataset of min(n, size) samples, drawn without replacement per stratum.

    Deterministic for a given seed. Without `stratify`, a simple random sample. The result keeps
    the original order of samples and records its parent in `extra`.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = random.Random(seed)
    idx_by_stratum: dict[str, list[int]] = {}
    for i, s in enumerate(ds.samples):
        key = stratum_of(s, stratify) if stratify else "all"
        idx_by_stratum.setdefault(key, []).append(i)
    alloc = allocate({k: len(v) for k, v in idx_by_stratum.items()}, n)
    chosen: list[int] = []
    for key in sorted(idx_by_stratum):
        chosen.extend(rng.sample(idx_by_stratum[key], alloc[key]))
    chosen.sort()
    samples = [ds.samples[i] for i in chosen]
    extra = dict(ds.extra)
    extra["parent"] = {"dataset_id": ds.dataset_id, "version": ds.version,
                       "sample": {"n": n, "stratify": stratify, "seed": seed}}
    return Dataset(f"{ds.dataset_id}-sample{len(samples)}", now_iso(), samples, None, "json", extra)


def diff(a: Dataset, b: Dataset) -> dict[str, Any]:
    """Differences from a to b by sample id: added, removed, changed (with the changed fields)."""
    ia, ib = a.by_id(), b.by_id()
    changed = []
    for sid in sorted(set(ia) & set(ib)):
        fields = sorted(k for k in set(ia[sid]) | set(ib[sid]) if ia[sid].get(k) != ib[sid].get(k)
                        or (k in ia[sid]) != (k in ib[sid]))
        if fields:
            changed.append({"id": sid, "fields": fields})
    return {
        "a": {"path": a.path, "dataset_id": a.dataset_id, "version": a.version, "samples": len(a.samples)},
        "b": {"path": b.path, "dataset_id": b.dataset_id, "version": b.version, "samples": len(b.samples)},
        "added": sorted(set(ib) - set(ia)),
        "removed": sorted(set(ia) - set(ib)),
        "changed": changed,
        "unchanged": len(set(ia) & set(ib)) - len(changed),
        "identical": a.version == b.version,
    }


# --------------------------------------------------------------------------- writing


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def to_document(ds: Dataset) -> dict[str, Any]:
    """The seed's JSON document for a dataset (version recorded for readers)."""
    doc: dict[str, Any] = {"dataset_id": ds.dataset_id, "created_at": ds.created_at or now_iso()}
    doc.update({k: v for k, v in ds.extra.items() if k not in ("version",)})
    doc["version"] = ds.version
    doc["samples"] = ds.samples
    return doc


def dumps(ds: Dataset, fmt: str = "json") -> str:
    if fmt == "jsonl":
        return "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in ds.samples)
    return json.dumps(to_document(ds), indent=2, ensure_ascii=False) + "\n"


def write(ds: Dataset, path: str | Path, fmt: str | None = None) -> Path:
    """Write atomically (temp file + rename) so a crash never leaves half a dataset."""
    p = Path(path)
    fmt = fmt or ("jsonl" if p.suffix.lower() in (".jsonl", ".ndjson") else "json")
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(dumps(ds, fmt), encoding="utf-8")
    tmp.replace(p)
    return p
