"""`otel-llm-eval bundle [--out DIR] [--check]`: deterministic output, stale detection, headers."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from bundle_helpers import ROOT
from otel_llm_eval.bundle import cli
from otel_llm_eval.bundle.common import COMMAND, DO_NOT_EDIT
from otel_llm_eval.bundle.generate import render_all, stale, write


def _args(out, check=False, runbook=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    argv = ["--out", str(out)] + (["--check"] if check else []) + (["--runbook-base-url", runbook] if runbook else [])
    return parser.parse_args(argv)


def test_rendering_twice_gives_byte_identical_files():
    assert render_all() == render_all()


def test_the_committed_bundle_is_up_to_date():
    assert stale(ROOT, render_all()) == []


def test_every_generated_file_says_do_not_edit_and_names_the_command():
    for rel, text in render_all().items():
        if rel.endswith(".json"):
            description = json.loads(text)["description"]
            assert DO_NOT_EDIT in description and COMMAND in description, rel
        elif rel.endswith(".md"):  # a comment, so the rendered page starts with its own title
            assert text.startswith(f"<!-- {DO_NOT_EDIT} -->\n"), rel
        else:
            assert text.startswith(f"# {DO_NOT_EDIT}\n"), rel


def test_json_is_written_with_sorted_keys():
    for rel, text in render_all().items():
        if rel.endswith(".json"):
            assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n", rel


def test_bundle_writes_everything_then_check_passes(tmp_path, capsys):
    assert cli.run(_args(tmp_path)) == 0
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == sorted(render_all())
    assert cli.run(_args(tmp_path, check=True)) == 0
    assert "up to date" in capsys.readouterr().out


STALE_CASES = [
    ("an edited file is named as differing", "edit", "differs from the generated output"),
    ("a deleted file is named as missing", "delete", "missing"),
    ("a generated leftover is named as no longer produced", "leftover", "no longer produced"),
]


@pytest.mark.parametrize("change,reason", [(c, r) for _, c, r in STALE_CASES], ids=[c[0] for c in STALE_CASES])
def test_check_fails_and_names_the_stale_file(tmp_path, capsys, change, reason):
    write(tmp_path, render_all())
    target = "alerts/alertmanager.yml"
    if change == "edit":
        (tmp_path / target).write_text((tmp_path / target).read_text() + "# local edit\n")
    elif change == "delete":
        (tmp_path / target).unlink()
    else:
        target = "dashboards/old-dashboard.json"
        (tmp_path / target).write_text(json.dumps({"description": DO_NOT_EDIT}))
    capsys.readouterr()
    assert cli.run(_args(tmp_path, check=True)) == 1
    err = capsys.readouterr().err
    assert f"stale: {target}: " in err and reason in err


def test_check_ignores_hand_written_files_in_generated_directories(tmp_path):
    write(tmp_path, render_all())
    (tmp_path / "alerts" / "my-team.rules.yml").write_text("groups: []\n")
    assert stale(tmp_path, render_all()) == []


def test_bundle_rewrites_only_what_changed_and_removes_leftovers(tmp_path):
    files = render_all()
    write(tmp_path, files)
    (tmp_path / "processors" / "collector.yaml").write_text("# DO NOT EDIT old\n")
    (tmp_path / "processors" / "gone.yaml").write_text(f"# {DO_NOT_EDIT}\n")
    assert write(tmp_path, files) == ["processors/collector.yaml", "processors/gone.yaml"]
    assert not (tmp_path / "processors" / "gone.yaml").exists()


def test_runbook_base_url_option_writes_absolute_links(tmp_path):
    try:
        assert cli.run(_args(tmp_path, runbook="https://wiki.example.com/llm/runbooks.md")) == 0
    finally:
        from otel_llm_eval.bundle.common import DEFAULT_RUNBOOK_BASE, set_runbook_base
        set_runbook_base(DEFAULT_RUNBOOK_BASE)
    text = (tmp_path / "alerts" / "llm-eval.rules.yml").read_text()
    assert "runbook_url: https://wiki.example.com/llm/runbooks.md#llmsafetyviolation" in text


def test_console_script_check_exits_nonzero_naming_the_file(tmp_path):
    write(tmp_path, render_all())
    (tmp_path / "deploy" / "prometheus.yml").write_text("changed\n")
    r = subprocess.run([sys.executable, "-m", "otel_llm_eval.cli", "bundle", "--out", str(tmp_path), "--check"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "stale: deploy/prometheus.yml" in r.stderr


def test_a_missing_bundle_extra_gives_a_clear_error(tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_grafanalib(name, *args, **kwargs):
        if name.startswith("grafanalib"):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_grafanalib)
    assert cli.run(_args(tmp_path)) == 2
    assert "pip install 'otel-llm-eval[bundle]'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing half-written
