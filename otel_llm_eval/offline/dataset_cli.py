"""`otel-llm-eval dataset validate|info|sample|diff|export-labels`.

Exit codes: 0 ok; 1 invalid dataset (validate) or datasets differ (diff, like `diff`);
2 unreadable input or bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import datasets


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="dataset_command", metavar="ACTION")
    v = sub.add_parser("validate", help="check a dataset; exit 1 listing every problem (line, field, reason)")
    v.add_argument("file")
    v.add_argument("--json", action="store_true", help="machine-readable output")
    i = sub.add_parser("info", help="samples, counts by tag, content hash (the version)")
    i.add_argument("file")
    i.add_argument("--json", action="store_true")
    s = sub.add_parser("sample", help="stratified random sample as a new dataset")
    s.add_argument("file")
    s.add_argument("--n", type=int, required=True, help="samples to draw")
    s.add_argument("--stratify", default="tags", help="`tags` (default), a sample field, or `none`")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0): same seed, same sample")
    s.add_argument("--out", help="output file (.json seed format or .jsonl); default stdout")
    d = sub.add_parser("diff", help="added, removed and changed samples by id (exit 1 when they differ)")
    d.add_argument("a")
    d.add_argument("b")
    d.add_argument("--json", action="store_true")
    e = sub.add_parser("export-labels", help="labeled failures from human review as a new dataset version")
    e.add_argument("--out", required=True, help="directory holding the dataset's versions")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--sidecar", help="sidecar base URL (GET /v1/review/labels)")
    src.add_argument("--db", help="the sidecar's SQLite state file")
    e.add_argument("--token", help="bearer token for --sidecar")
    e.add_argument("--dataset-id", default="review-failures", help="dataset id (default review-failures)")
    e.add_argument("--max-quality", type=int, default=2,
                   help="labels with quality <= this are failures (default 2)")
    e.add_argument("--ignore-issues", action="store_true",
                   help="only quality decides (by default any issue makes a label a failure)")


def _load(path: str) -> datasets.Dataset:
    return datasets.load(path)


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def _validate(args) -> int:
    try:
        problems = datasets.validate(args.file)
    except OSError as e:
        print(f"error: cannot read {args.file}: {e.strerror or e}", file=sys.stderr)
        return 2
    if args.json:
        _print_json({"file": args.file, "valid": not problems,
                     "problems": [{"line": p.line, "field": p.field, "reason": p.reason} for p in problems]})
        return 1 if problems else 0
    if not problems:
        ds = _load(args.file)
        print(f"{args.file}: valid, {len(ds.samples)} samples, version {ds.version}")
        return 0
    for p in problems:
        print(f"{args.file}:{p.line if p.line is not None else '-'}: {p.field or '-'}: {p.reason}")
    print(f"{args.file}: invalid ({len(problems)} problem{'s' if len(problems) != 1 else ''})")
    return 1


def _info(args) -> int:
    info = datasets.info(_load(args.file))
    if args.json:
        _print_json(info)
        return 0
    print(f"dataset   {info['dataset_id']} ({info['format']}, {info['path']})")
    print(f"version   {info['version']}")
    print(f"created   {info['created_at'] or 'n/a'}")
    print(f"samples   {info['samples']} ({info['with_expected_answer']} with expected_answer, "
          f"{info['with_context']} with context)")
    print("tags")
    width = max((len(t) for t in info["tags"]), default=0)
    for tag, n in info["tags"].items():
        print(f"  {tag.ljust(width)}  {n:>6}  {100 * n / max(1, info['samples']):5.1f}%")
    return 0


def _sample(args) -> int:
    if args.n < 0:
        print("error: --n must be >= 0", file=sys.stderr)
        return 2
    ds = _load(args.file)
    stratify = None if args.stratify in ("none", "") else args.stratify
    out = datasets.stratified_sample(ds, args.n, stratify=stratify, seed=args.seed)
    if args.n > len(ds.samples):
        print(f"note: --n {args.n} exceeds the dataset's {len(ds.samples)} samples; took all", file=sys.stderr)
    if args.out:
        datasets.write(out, args.out)
        counts = datasets.info(out)["tags"]
        print(f"wrote {args.out}: {len(out.samples)} samples, version {out.version}; by tag: "
              + ", ".join(f"{k}={v}" for k, v in counts.items()))
    else:
        sys.stdout.write(datasets.dumps(out))
    return 0


def _diff(args) -> int:
    a, b = _load(args.a), _load(args.b)
    d = datasets.diff(a, b)
    if args.json:
        _print_json(d)
        return 0 if d["identical"] else 1
    print(f"a: {args.a} {d['a']['version']} ({d['a']['samples']} samples)")
    print(f"b: {args.b} {d['b']['version']} ({d['b']['samples']} samples)")
    if d["identical"]:
        print("identical samples")
        return 0
    for sid in d["added"]:
        print(f"+ {sid}")
    for sid in d["removed"]:
        print(f"- {sid}")
    for c in d["changed"]:
        print(f"~ {c['id']}: {', '.join(c['fields'])}")
    print(f"{len(d['added'])} added, {len(d['removed'])} removed, {len(d['changed'])} changed, "
          f"{d['unchanged']} unchanged")
    return 1


def _export_labels(args) -> int:
    from . import labels

    try:
        rows = (labels.fetch_labels(args.sidecar, args.token) if args.sidecar
                else labels.read_labels_from_db(args.db))
    except labels.LabelSourceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    res = labels.export(rows, args.out, dataset_id=args.dataset_id, max_quality=args.max_quality,
                        issues_fail=not args.ignore_issues)
    print(f"{res['labels']} labels, {res['failures']} failures, {res['added']} new"
          + (f", {res['skipped_without_prompt']} skipped (no prompt)" if res["skipped_without_prompt"] else ""))
    if res["written"]:
        print(f"wrote {res['written']}: {res['samples']} samples, version {res['version']}"
              + (f" (previous {res['previous_version']})" if res["previous_version"] else ""))
    else:
        print(f"nothing new; latest version {res['version'] or 'none'} unchanged")
    return 0


def run(args: argparse.Namespace) -> int:
    handlers = {"validate": _validate, "info": _info, "sample": _sample, "diff": _diff,
                "export-labels": _export_labels}
    handler = handlers.get(getattr(args, "dataset_command", None) or "")
    if handler is None:
        print("usage: otel-llm-eval dataset {validate,info,sample,diff,export-labels} ...", file=sys.stderr)
        return 2
    try:
        return handler(args)
    except datasets.DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head`: nothing left to say
        return 0
    except OSError as e:
        print(f"error: {getattr(e, 'filename', '') or ''}: {e.strerror or e}", file=sys.stderr)
        return 2
