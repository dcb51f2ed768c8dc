"""The example GitHub Actions workflow, run step by step on a scratch git repository like a runner would.

`uses:` steps (checkout, setup-python, upload-artifact) and the install step are what GitHub
provides; every `run:` step is executed by bash with the runner's environment variables, so the
git worktree baseline, the exit-code plumbing, the job summary and the verdict are all real.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "examples" / "ci-regression-gate.yml"

pytestmark = pytest.mark.timeout(120)


def git(repo, *args):
    return subprocess.run(["git", "-c", "user.name=ci", "-c", "user.email=ci@example.com", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout.strip()


def make_repo(tmp_path, head_variant):
    repo = tmp_path / "repo"
    (repo / "examples").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "dataset.json", repo / "examples" / "dataset.json")
    shutil.copy(ROOT / "examples" / "regress_target.py", repo / "examples" / "regress_target.py")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "base")
    base = git(repo, "rev-parse", "HEAD")
    target = repo / "examples" / "regress_target.py"
    # The PR changes the target's behaviour through its code, as a prompt change would.
    text = target.read_text().replace('os.environ.get("REGRESS_DEMO_VARIANT", "baseline")',
                                      f'os.environ.get("REGRESS_DEMO_VARIANT", "{head_variant}")')
    assert text != target.read_text()
    target.write_text(text)
    git(repo, "commit", "-q", "-am", "pr")
    return repo, base


def run_workflow(tmp_path, head_variant):
    from conftest import require_binary

    require_binary("git")
    require_binary("bash")
    wf = yaml.safe_load(WORKFLOW.read_text())
    job = wf["jobs"]["regression-gate"]
    repo, base = make_repo(tmp_path, head_variant)
    runner_temp = tmp_path / "runner"
    runner_temp.mkdir()
    summary, output = tmp_path / "summary.md", tmp_path / "output.txt"
    summary.touch()
    output.touch()
    env = {k: v for k, v in os.environ.items() if k != "REGRESS_DEMO_VARIANT"}
    env.update({k: str(v) for k, v in job["env"].items()})
    env.update(BASE_SHA=base, GITHUB_WORKSPACE=str(repo), RUNNER_TEMP=str(runner_temp),
               GITHUB_STEP_SUMMARY=str(summary), GITHUB_OUTPUT=str(output),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    codes = {}
    for step in job["steps"]:
        if "uses" in step or step.get("id") == "install":
            continue
        script = step["run"]
        outputs = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
        script = re.sub(r"\$\{\{\s*steps\.gate\.outputs\.exit_code\s*\}\}", outputs.get("exit_code", ""), script)
        assert "${{" not in script, f"unhandled expression in step {step['name']}"
        proc = subprocess.run(["bash", "-e", "-c", script], cwd=repo, env=env, capture_output=True, text=True,
                              timeout=60)
        codes[step["name"]] = (proc.returncode, proc.stdout + proc.stderr)
        if proc.returncode != 0:
            break
    return codes, summary.read_text(), runner_temp / "gate"


def test_the_workflow_fails_a_pull_request_that_makes_answers_worse(tmp_path):
    codes, summary, gate = run_workflow(tmp_path, "worse")
    assert codes["Gate (this PR's code)"][0] == 0  # the gate step records the code, the verdict step fails
    verdict_code, verdict_log = codes["Verdict"]
    assert verdict_code == 1 and "::error::LLM regression" in verdict_log
    assert "## Regression gate: ❌ regression" in summary and "| exact |" in summary
    assert {p.name for p in gate.iterdir()} >= {"baseline.json", "candidate.json", "junit.xml", "report.md"}


def test_the_workflow_passes_a_pull_request_without_a_real_change(tmp_path):
    codes, summary, _ = run_workflow(tmp_path, "candidate")
    assert codes["Verdict"][0] == 0
    assert "## Regression gate: ✅ pass" in summary
