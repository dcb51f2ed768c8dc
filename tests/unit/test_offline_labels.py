"""`dataset export-labels`: human review labels (real sidecar API and state file) -> a new dataset version."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from otel_llm_eval.cli import main
from otel_llm_eval.offline import datasets, labels

pytestmark = pytest.mark.timeout(60)


def _post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture
def labeled_sidecar(tmp_path):
    """A real sidecar whose review queue got three calls with failed checks, labeled over HTTP."""
    from otel_llm_eval.semconv import LLMCall
    from otel_llm_eval.sidecar.plugins import CallRecord
    from otel_llm_eval.sidecar.plugins.review import ReviewPlugin
    from otel_llm_eval.sidecar.server import start_in_thread

    db = tmp_path / "state.db"
    sc = start_in_thread({"state": {"db_path": str(db), "flush_interval_seconds": 0.1},
                          "review": {"sampling": {"window_seconds": 0.2, "random_rate": 0.0}}})
    try:
        review = next(p for p in sc.sidecar.plugins if isinstance(p, ReviewPlugin))
        prompts = {"What is 2+2?": "5", "Capital of Peru?": "Lima.", "Summarize the policy": ""}
        for i, (prompt, completion) in enumerate(prompts.items(), start=1):
            call = LLMCall(model="gpt-4o-mini", prompt=prompt, completion=completion, variant="b",
                           trace_id=f"{i:032x}", span_id=f"{i:016x}")
            review.on_call(CallRecord(call=call, service="shop", error=False,
                                      end_time_unix_nano=int(time.time() * 1e9), failed_checks=("refusal",)))
        deadline = time.monotonic() + 10
        while True:  # items enter the queue at the end of a sampling window
            queue = json.loads(urllib.request.urlopen(sc.url + "/v1/review/queue", timeout=10).read())
            if queue["depth"] >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        by_prompt = {it["prompt"]: it["id"] for it in queue["items"]}
        assert len(by_prompt) == 3
        _post(f"{sc.url}/v1/review/{by_prompt['What is 2+2?']}/label",
              {"quality": 1, "issues": ["hallucination"], "corrected_answer": "4", "comment": "wrong sum"})
        _post(f"{sc.url}/v1/review/{by_prompt['Capital of Peru?']}/label", {"quality": 5, "issues": []})
        _post(f"{sc.url}/v1/review/{by_prompt['Summarize the policy']}/label",
              {"quality": 4, "issues": ["poor_formatting"]})
        sc.ids = by_prompt
        sc.db = db
        yield sc
    finally:
        sc.stop()


def only_file(d):
    files = sorted(d.glob("*.json"))
    assert len(files) == 1, files
    return files[0]


def test_labeled_failures_from_the_sidecar_become_a_dataset_in_the_seed_format(labeled_sidecar, tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["dataset", "export-labels", "--out", str(out), "--sidecar", labeled_sidecar.url]) == 0
    assert "3 labels, 2 failures, 2 new" in capsys.readouterr().out
    path = only_file(out)
    ds = datasets.load(path)
    assert ds.dataset_id == "review-failures" and path.name == f"review-failures-{ds.version[7:19]}.json"
    by_query = {s["query"]: s for s in ds.samples}
    assert set(by_query) == {"What is 2+2?", "Summarize the policy"}  # quality 5, no issue: not a failure
    wrong = by_query["What is 2+2?"]
    assert wrong["id"] == f"review-{labeled_sidecar.ids['What is 2+2?']}"
    assert wrong["expected_answer"] == "4" and wrong["tags"] == ["hallucination", "human_review"]
    assert wrong["source"]["completion"] == "5" and wrong["source"]["quality"] == 1
    assert wrong["source"]["trace_id"] == f"{1:032x}" and wrong["source"]["comment"] == "wrong sum"
    formatting = by_query["Summarize the policy"]
    assert formatting["expected_answer"] is None and formatting["tags"] == ["poor_formatting", "human_review"]


def test_the_state_file_and_the_api_give_the_same_version(labeled_sidecar, tmp_path, capsys):
    assert main(["dataset", "export-labels", "--out", str(tmp_path / "a"), "--sidecar", labeled_sidecar.url]) == 0
    labeled_sidecar.stop()  # flushes the labels into the state file
    assert main(["dataset", "export-labels", "--out", str(tmp_path / "b"), "--db", str(labeled_sidecar.db)]) == 0
    a, b = datasets.load(only_file(tmp_path / "a")), datasets.load(only_file(tmp_path / "b"))
    assert a.version == b.version


def test_quality_threshold_and_issues_are_configurable(labeled_sidecar, tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["dataset", "export-labels", "--out", str(out), "--sidecar", labeled_sidecar.url,
                 "--max-quality", "1", "--ignore-issues", "--dataset-id", "severe"]) == 0
    ds = datasets.load(only_file(out))
    assert ds.dataset_id == "severe" and [s["query"] for s in ds.samples] == ["What is 2+2?"]


def label(i, quality=1, issues=("hallucination",), prompt=None, labeled_unix=None):
    return {"id": f"L{i}", "trace_id": f"{i:032x}", "span_id": f"{i:016x}", "prompt": prompt or f"question {i}",
            "completion": "bad", "model": "m", "variant": None, "experiment": None, "quality": quality,
            "issues": list(issues), "comment": None, "corrected_answer": None, "judge_score": 2.0,
            "failed_checks": [], "created_unix": 1.0, "labeled_unix": labeled_unix or 100.0 + i}


def test_a_second_export_adds_only_new_failures_as_a_new_version_and_keeps_the_old_one(tmp_path):
    first = labels.export([label(1), label(2)], tmp_path)
    assert first["added"] == 2 and first["previous_version"] is None
    again = labels.export([label(1), label(2)], tmp_path)
    assert again["written"] is None and again["version"] == first["version"]
    second = labels.export([label(1), label(2), label(3)], tmp_path)
    assert second["added"] == 1 and second["previous_version"] == first["version"]
    assert len(list(tmp_path.glob("review-failures-*.json"))) == 2
    newest = datasets.load(second["written"])
    assert [s["id"] for s in newest.samples] == ["review-L1", "review-L2", "review-L3"]
    assert newest.extra["parent"]["version"] == first["version"]


def test_labels_without_a_prompt_are_skipped_and_counted(tmp_path):
    lab = label(1)
    lab["prompt"] = None
    res = labels.export([lab, label(2)], tmp_path)
    assert res["added"] == 1 and res["skipped_without_prompt"] == 1


def test_an_exported_dataset_runs_through_the_gate_with_reference_scorers_skipping_unknown_answers(tmp_path):
    lab = label(1)
    lab["corrected_answer"] = "Paris"
    res = labels.export([lab, label(2)], tmp_path / "ds")
    save = tmp_path / "r.json"
    target = tmp_path / "t.py"
    target.write_text("def answer(sample):\n    return 'Paris'\n")
    assert main(["regress", "--dataset", res["written"], "--target", f"{target}:answer", "--no-progress",
                 "--save", str(save)]) == 0
    summary = json.loads(save.read_text())["summary"]
    assert summary["exact"] == {"n": 1, "mean": 1.0}


class _Labels(BaseHTTPRequestHandler):
    """GET /v1/review/labels?since=&limit= like the sidecar: labeled_unix > since, oldest first."""

    def do_GET(self):  # noqa: N802
        url = urllib.parse.urlparse(self.path)
        if self.server.token and self.headers.get("Authorization") != f"Bearer {self.server.token}":
            self.send_response(401)
            self.end_headers()
            return
        q = urllib.parse.parse_qs(url.query)
        since = float(q["since"][0]) if "since" in q else None
        limit = int(q.get("limit", ["1000"])[0])
        items = [x for x in self.server.items if since is None or x["labeled_unix"] > since][:limit]
        body = json.dumps({"items": items, "count": len(items)}).encode()
        self.server.calls += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def label_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Labels)
    server.items, server.calls, server.token = [], 0, None
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        t.join(5)


def test_labels_are_fetched_page_by_page_without_losing_ties_at_a_page_boundary(label_server, monkeypatch):
    monkeypatch.setattr(labels, "PAGE_SIZE", 2)
    # Labels 2 and 3 share a timestamp across the first page boundary.
    label_server.items = [label(1, labeled_unix=10.0), label(2, labeled_unix=11.0), label(3, labeled_unix=11.0),
                          label(4, labeled_unix=12.0), label(5, labeled_unix=13.0)]
    got = labels.fetch_labels(f"http://127.0.0.1:{label_server.server_address[1]}")
    assert [x["id"] for x in got] == ["L1", "L2", "L3", "L4", "L5"]
    assert label_server.calls >= 3


def test_a_sidecar_that_wants_a_token_gets_a_hint(label_server, tmp_path, capsys):
    label_server.token = "t0k"
    url = f"http://127.0.0.1:{label_server.server_address[1]}"
    assert main(["dataset", "export-labels", "--out", str(tmp_path), "--sidecar", url]) == 2
    err = capsys.readouterr().err
    assert "401" in err and "(pass --token)" in err
    label_server.items = [label(1)]
    assert main(["dataset", "export-labels", "--out", str(tmp_path), "--sidecar", url, "--token", "t0k"]) == 0


@pytest.mark.parametrize("source,message", [
    (["--sidecar", "http://127.0.0.1:9"], "cannot reach"),
    (["--db", "/nonexistent/state.db"], "no sidecar state at"),
], ids=["unreachable sidecar", "missing state file"])
def test_an_unusable_label_source_exits_2_and_writes_nothing(tmp_path, capsys, source, message):
    assert main(["dataset", "export-labels", "--out", str(tmp_path / "out")] + source) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.json"))
