"""The README's metric catalog table is generated from otel_llm_eval.catalog and must not go stale."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from otel_llm_eval import catalog

README = Path(__file__).resolve().parents[2] / "README.md"
BEGIN = re.compile(r"<!-- BEGIN METRIC CATALOG[^>]*-->\n")
END = "<!-- END METRIC CATALOG -->"


def readme_catalog_block(text: str) -> str:
    """The text between the catalog markers; ValueError when a marker is missing."""
    begin = BEGIN.search(text)
    if begin is None:
        raise ValueError("README has no '<!-- BEGIN METRIC CATALOG ... -->' marker")
    end = text.find(END, begin.end())
    if end < 0:
        raise ValueError("README has no '<!-- END METRIC CATALOG -->' marker after the begin marker")
    return text[begin.end():end]


def test_the_readme_metric_table_equals_the_catalog_table():
    block = readme_catalog_block(README.read_text(encoding="utf-8"))
    expected = catalog.markdown_table()
    assert block == expected, (
        "README metric catalog is stale: replace the text between the METRIC CATALOG markers with "
        "the output of `python -c 'from otel_llm_eval.catalog import markdown_table as t; print(t(), end=\"\")'`"
    )


def test_every_catalog_metric_has_exactly_one_row_in_the_readme():
    block = readme_catalog_block(README.read_text(encoding="utf-8"))
    for m in catalog.METRICS:
        assert block.count(f"| `{m.name}` |") == 1, m.name


@pytest.mark.parametrize(
    "text, problem",
    [
        ("no markers at all", "BEGIN METRIC CATALOG"),
        ("<!-- BEGIN METRIC CATALOG (x) -->\n| a |\n", "END METRIC CATALOG"),
    ],
    ids=["a readme without markers is reported", "a readme without the end marker is reported"],
)
def test_missing_markers_give_a_clear_error(text, problem):
    with pytest.raises(ValueError, match=problem):
        readme_catalog_block(text)


def test_a_stale_table_is_detected():
    fresh = "<!-- BEGIN METRIC CATALOG (gen) -->\n" + catalog.markdown_table() + END
    stale = fresh.replace(f"| `{catalog.METRICS[0].name}` |", "| `renamed_metric_total` |")
    assert readme_catalog_block(fresh) == catalog.markdown_table()
    assert readme_catalog_block(stale) != catalog.markdown_table()


def test_every_row_of_the_table_has_exactly_five_cells():
    # a bare "|" inside a help text (e.g. "status=ok|error") would split a cell in rendered Markdown
    for row in catalog.markdown_table().splitlines():
        assert len(re.findall(r"(?<!\\)\|", row)) == 6, row
