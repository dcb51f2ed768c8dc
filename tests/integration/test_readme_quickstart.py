"""The README's Quickstart runs as pasted, with the package installed the way the README says.

Builds a wheel from this checkout (`pip wheel --no-deps`, as the README's install line), installs it
into a directory of its own, starts a real sidecar (`otel-llm-eval sidecar`, default plugins) on a
free 127.0.0.1 port, writes the README's Quickstart block to a file unchanged and runs it with that
directory first on the path; then the calls, users, feedback and judge scores it sent must be in
the sidecar's /metrics and its experiment statistics in /v1/experiments.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sidecar_fixtures import SidecarSubprocess, http_get, metric_value

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- quickstart:"


def quickstart_block(readme: str) -> str:
    """The fenced block right after the Quickstart marker; ValueError when there is none."""
    at = readme.find(MARKER)
    if at < 0:
        raise ValueError("README has no '<!-- quickstart: ... -->' marker")
    m = re.compile(r"-->\n```python\n(.*?)\n```\n", re.S).match(readme, readme.find("-->", at))
    if m is None:
        raise ValueError("the Quickstart marker is not followed by a ```python block")
    return m.group(1) + "\n"


def test_a_marker_without_a_code_block_is_reported():
    with pytest.raises(ValueError, match="not followed"):
        quickstart_block("<!-- quickstart: x -->\ntext\n")
    with pytest.raises(ValueError, match="no '<!-- quickstart"):
        quickstart_block("# README\n")


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory) -> Path:
    """The package installed from a wheel built from this checkout, in a directory of its own."""
    tmp = tmp_path_factory.mktemp("wheel")
    # a copy of the checkout: building in place would leave build/ behind in it
    source = tmp / "checkout"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "node_modules", "*.db*"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"),
                            str(source)], capture_output=True, text=True, timeout=180)
    assert build.returncode == 0, build.stdout + build.stderr
    wheels = list((tmp / "dist").glob("otel_llm_eval-*.whl"))
    assert len(wheels) == 1, wheels
    site = tmp / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                              str(wheels[0])], capture_output=True, text=True, timeout=120)
    assert install.returncode == 0, install.stdout + install.stderr
    return site


def test_the_readme_quickstart_runs_as_pasted_and_its_traffic_reaches_the_sidecar(tmp_path, wheel_site):
    code = quickstart_block((ROOT / "README.md").read_text(encoding="utf-8"))
    script = tmp_path / "quickstart.py"
    script.write_text(code, encoding="utf-8")
    app_dir = tmp_path / "app"
    app_dir.mkdir()  # run outside the checkout, so only the installed wheel can be imported
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PYTHONPATH"))}
    env["PYTHONPATH"] = str(wheel_site)

    where = subprocess.run([sys.executable, "-c", "import otel_llm_eval; print(otel_llm_eval.__file__)"],
                           cwd=app_dir, env=env, capture_output=True, text=True, timeout=60)
    assert where.stdout.strip().startswith(str(wheel_site)), where.stdout + where.stderr

    sidecar_dir = tmp_path / "sidecar"
    sidecar_dir.mkdir()
    with SidecarSubprocess(sidecar_dir, {"analysis": {"interval_seconds": 0.5}}) as sc:
        run = subprocess.run([sys.executable, str(script)], cwd=app_dir, env={**env, "SIDECAR_URL": sc.url},
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "sent 40 requests" in run.stdout

        deadline = time.monotonic() + 60  # ingest is asynchronous: wait (bounded) for the last batch
        while True:
            text = sc.metrics()
            if metric_value(text, "llm_requests_total", service="support-bot") >= 40 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert metric_value(text, "llm_requests_total", service="support-bot") == 40
        for variant in ("terse", "steps"):
            assert metric_value(text, "llm_requests_total", service="support-bot", experiment="prompt-style",
                                variant=variant) > 0, variant
        assert metric_value(text, "llm_active_users", service="support-bot", window="1h") == 10
        feedback = metric_value(text, "llm_user_feedback_total", service="support-bot")
        assert feedback == 40
        assert metric_value(text, "llm_eval_judge_sampled_total", service="support-bot") > 0
        assert metric_value(text, "llm_check_failures_total", service="support-bot", check="refusal") > 0
        assert "unknown_service" not in text

        deadline = time.monotonic() + 30
        while True:
            status, body = http_get(sc.url + "/v1/experiments/prompt-style")
            analysis = json.loads(body).get("analysis") if status == 200 else None
            if analysis or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status == 200, body
        thumbs = analysis["metrics"]["thumbs"]["variants"]
        assert thumbs["steps"]["mean"] == 1.0 and thumbs["terse"]["mean"] == 0.0, thumbs
