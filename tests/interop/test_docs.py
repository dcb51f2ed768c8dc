"""The install lines of docs/instrumentations.md are the ones the interop matrix installs."""

from __future__ import annotations

import re
from pathlib import Path

from stacks import STACKS

DOC = Path(__file__).resolve().parents[2] / "docs" / "instrumentations.md"


def documented_install_lines() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"\| `([^`]+)` \| `pip install ([^`]+)` \|", line)
        if m:
            out[m.group(1)] = " ".join(word.strip("'") for word in m.group(2).split())
    return out


def test_every_stack_of_the_matrix_has_its_install_line_in_the_docs_and_no_other():
    assert documented_install_lines() == {name: s.install for name, s in STACKS.items() if not s.venv}


def test_the_docs_name_the_breaking_changes_section():
    assert "## Breaking changes" in DOC.read_text()
