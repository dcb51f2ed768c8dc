"""Datasets: the seed's JSON format and JSONL, validation with line/field/reason, info, sampling, diff."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from otel_llm_eval.cli import main
from otel_llm_eval.offline import datasets

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dataset.json"


def sample(i, tags=("a",), **kw):
    s = {"id": f"s{i}", "query": f"question {i}?", "context": [], "expected_answer": f"answer {i}",
         "tags": list(tags)}
    s.update(kw)
    return s


def write_json(path: Path, samples, dataset_id="ds") -> Path:
    path.write_text(json.dumps({"dataset_id": dataset_id, "created_at": "2026-01-01T00:00:00Z",
                                "samples": samples}, indent=2))
    return path


def write_jsonl(path: Path, lines) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_the_example_dataset_is_valid_and_loads_in_the_seed_format():
    ds = datasets.load(EXAMPLE)
    assert ds.dataset_id == "demo-qa"
    assert len(ds.samples) == 24
    assert datasets.validate(EXAMPLE) == []


def test_the_version_depends_on_content_only_not_on_format_key_order_or_sample_order(tmp_path):
    samples = [sample(i) for i in range(5)]
    a = write_json(tmp_path / "a.json", samples)
    b = write_jsonl(tmp_path / "b.jsonl", [dict(reversed(list(s.items()))) for s in reversed(samples)])
    c = write_json(tmp_path / "c.json", samples[:4] + [sample(4, expected_answer="changed")])
    va, vb, vc = (datasets.load(p).version for p in (a, b, c))
    assert va == vb
    assert va != vc
    assert va.startswith("sha256:") and len(va) == len("sha256:") + 16


BAD_JSONL = [
    ("a sample without an id names the id field",
     [{"query": "q", "expected_answer": "x"}], 1, "id", "missing required field"),
    ("a sample without expected_answer is reported",
     [{"id": "a", "query": "q"}], 1, "expected_answer", "missing required field"),
    ("an empty query is reported as empty",
     [{"id": "a", "query": "  ", "expected_answer": "x"}], 1, "query", "empty"),
    ("a numeric expected answer is a wrong type",
     [{"id": "a", "query": "q", "expected_answer": 4}], 1, "expected_answer", "must be a string or null"),
    ("tags given as a string are a wrong type",
     [{"id": "a", "query": "q", "expected_answer": "x", "tags": "math"}], 1, "tags", "must be a list"),
    ("a non-string inside context is reported with its index",
     [{"id": "a", "query": "q", "expected_answer": "x", "context": ["ok", 3]}], 1, "context[1]", "must be a string"),
    ("a duplicate id points at the first occurrence",
     [sample(1), sample(1)], 2, "id", "duplicate id 's1' (first at line 1)"),
    ("a boolean id is a wrong type",
     [{"id": True, "query": "q", "expected_answer": "x"}], 1, "id", "must be a string or integer"),
    ("a line that is not JSON is reported with its line number",
     [sample(1), "{not json"], 2, None, "not valid JSON"),
    ("a line that is a list is not a sample",
     [sample(1), "[1, 2]"], 2, None, "sample must be an object"),
]


@pytest.mark.parametrize("name,lines,line,field,reason", BAD_JSONL, ids=[c[0] for c in BAD_JSONL])
def test_validate_reports_line_field_and_reason_for_bad_jsonl(tmp_path, name, lines, line, field, reason):
    path = write_jsonl(tmp_path / "bad.jsonl", lines)
    problems = datasets.validate(path)
    assert any(p.line == line and p.field == field and reason in p.reason for p in problems), problems
    with pytest.raises(datasets.DatasetError) as exc:
        datasets.load(path)
    assert reason in str(exc.value)


def test_validate_gives_exact_lines_inside_the_seed_json_document(tmp_path):
    text = ('{\n  "dataset_id": "x",\n  "samples": [\n'
            '    {"id": "a", "query": "q", "expected_answer": "x"},\n'
            '    {"id": "b",\n     "query": 7,\n     "expected_answer": "y"}\n  ]\n}\n')
    path = tmp_path / "d.json"
    path.write_text(text)
    problems = datasets.validate(path)
    assert [(p.line, p.field) for p in problems] == [(5, "samples[1].query")]


@pytest.mark.parametrize("name,text,reason", [
    ("a document without samples", '{"dataset_id": "x"}', "missing"),
    ("samples that are not a list", '{"samples": {"a": 1}}', "must be a list"),
    ("an empty samples list", '{"dataset_id": "x", "samples": []}', "empty dataset"),
    ("truncated JSON", '{"samples": [', "not valid JSON"),
    ("a top-level string", '"hello"', "top level must be"),
], ids=lambda v: v if isinstance(v, str) and " " in v else None)
def test_malformed_seed_documents_are_rejected_with_a_reason(tmp_path, name, text, reason):
    path = tmp_path / "d.json"
    path.write_text(text)
    problems = datasets.validate(path)
    assert problems and any(reason in p.reason for p in problems), problems


def test_an_empty_jsonl_file_is_an_empty_dataset(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text("\n# only a comment\n")
    assert [p.reason for p in datasets.validate(path)] == ["empty dataset (no samples)"]


def test_info_counts_samples_by_tag_with_untagged_ones_separately(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [sample(1, ("math",)), sample(2, ("math", "hard")),
                                              sample(3, ()), sample(4, ("geo",))])
    info = datasets.info(datasets.load(path))
    assert info["samples"] == 4
    assert info["tags"] == {"math": 2, "(untagged)": 1, "geo": 1, "hard": 1}
    assert info["version"] == datasets.load(path).version


def test_stratified_sample_keeps_tag_proportions_and_every_stratum():
    ds = datasets.Dataset("d", None, [sample(i, ("big",)) for i in range(80)]
                          + [sample(100 + i, ("mid",)) for i in range(18)]
                          + [sample(200 + i, ("rare",)) for i in range(2)])
    out = datasets.stratified_sample(ds, 20, seed=1)
    counts = datasets.info(out)["tags"]
    # 20 of 100: proportional is 16 / 3.6 / 0.4; every stratum gets >= 1, largest remainders fill up.
    assert counts == {"big": 16, "mid": 3, "rare": 1}
    assert len({datasets.sample_id(s) for s in out.samples}) == 20
    assert out.extra["parent"]["version"] == ds.version


def test_the_same_seed_draws_the_same_sample_and_another_seed_another():
    ds = datasets.Dataset("d", None, [sample(i, ("t%d" % (i % 3),)) for i in range(60)])
    ids = lambda d: [datasets.sample_id(s) for s in d.samples]  # noqa: E731
    assert ids(datasets.stratified_sample(ds, 10, seed=7)) == ids(datasets.stratified_sample(ds, 10, seed=7))
    assert ids(datasets.stratified_sample(ds, 10, seed=7)) != ids(datasets.stratified_sample(ds, 10, seed=8))


def test_asking_for_more_samples_than_exist_returns_them_all():
    ds = datasets.Dataset("d", None, [sample(i) for i in range(5)])
    assert len(datasets.stratified_sample(ds, 200).samples) == 5


def test_allocation_sums_to_n_and_never_exceeds_a_stratum():
    alloc = datasets.allocate({"a": 3, "b": 50, "c": 1, "d": 10}, 30)
    assert sum(alloc.values()) == 30
    assert all(alloc[k] <= n for k, n in {"a": 3, "b": 50, "c": 1, "d": 10}.items())
    assert alloc["c"] == 1


def test_diff_lists_added_removed_and_changed_fields():
    a = datasets.Dataset("d", None, [sample(1), sample(2), sample(3)])
    b = datasets.Dataset("d", None, [sample(1), sample(2, expected_answer="new", tags=["b"]), sample(4)])
    d = datasets.diff(a, b)
    assert d["added"] == ["s4"] and d["removed"] == ["s3"]
    assert d["changed"] == [{"id": "s2", "fields": ["expected_answer", "tags"]}]
    assert d["unchanged"] == 1 and not d["identical"]


# ------------------------------------------------------------------------------------------ CLI


def test_cli_validate_exits_1_with_file_line_field_reason(tmp_path, capsys):
    path = write_jsonl(tmp_path / "bad.jsonl", [sample(1), {"id": "s2", "query": ""}])
    assert main(["dataset", "validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}:2: query: empty" in out
    assert f"{path}:2: expected_answer: missing required field" in out


def test_cli_validate_exits_0_on_a_valid_file_and_prints_the_version(capsys):
    assert main(["dataset", "validate", str(EXAMPLE)]) == 0
    assert datasets.load(EXAMPLE).version in capsys.readouterr().out


def test_cli_on_a_missing_file_exits_2(tmp_path, capsys):
    assert main(["dataset", "info", str(tmp_path / "nope.json")]) == 2
    assert "No such file" in capsys.readouterr().err


def test_cli_info_sample_and_diff_round_trip(tmp_path, capsys):
    assert main(["dataset", "info", str(EXAMPLE), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["tags"]["geography"] == 8
    out = tmp_path / "small.json"
    assert main(["dataset", "sample", str(EXAMPLE), "--n", "6", "--seed", "3", "--out", str(out)]) == 0
    small = datasets.load(out)  # what `sample` writes is itself a valid dataset
    assert len(small.samples) == 6
    capsys.readouterr()
    assert main(["dataset", "diff", str(EXAMPLE), str(out), "--json"]) == 1
    d = json.loads(capsys.readouterr().out)
    assert len(d["removed"]) == 18 and d["added"] == [] and d["changed"] == []
    assert main(["dataset", "diff", str(EXAMPLE), str(EXAMPLE)]) == 0


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(sizes=st.dictionaries(st.text(min_size=1, max_size=3), st.integers(0, 40), min_size=1, max_size=8),
       n=st.integers(0, 200))
def test_allocation_always_sums_to_the_draws_available_and_covers_every_stratum_it_can(sizes, n):
    alloc = datasets.allocate(sizes, n)
    total = sum(sizes.values())
    assert sum(alloc.values()) == min(n, total)
    assert all(0 <= alloc[k] <= sizes[k] for k in sizes)
    nonempty = [k for k in sizes if sizes[k] > 0]
    if n >= len(nonempty):
        assert all(alloc[k] >= 1 for k in nonempty)
