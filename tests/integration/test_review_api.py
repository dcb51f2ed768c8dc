"""Review API over real HTTP on a running sidecar: the queue fed by OTLP spans, labels, bad input,
bearer token, export shape, metrics."""

from __future__ import annotations

import pytest

from otel_llm_eval.sidecar.plugins.review import read_labels
from review_harness import PII_CALLS, start_sidecar, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

TOKEN = "review-test-token"


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory):
    sc = start_sidecar(tmp_path_factory.mktemp("review-api"), token=TOKEN)
    try:
        sc.send_llm_spans(PII_CALLS)
        items = sc.wait_for_queue(len(PII_CALLS))
        assert len(items) == len(PII_CALLS), items
        yield sc
    finally:
        sc.stop()


def pending(sc):
    status, body = sc.request("GET", "/v1/review/queue?limit=100")
    assert status == 200, body
    return body


def test_failed_calls_arrive_through_otlp_with_pii_redacted(sidecar):
    body = pending(sidecar)
    texts = " ".join((i["prompt"] or "") + " " + (i["completion"] or "") for i in body["items"])
    assert "[EMAIL]" in texts and "[PHONE]" in texts and "[CARD]" in texts
    assert "ann@example.com" not in texts and "4111" not in texts
    assert {i["reason"] for i in body["items"]} == {"error"}
    assert all("pii" in i["failed_checks"] and i["model"] == "gpt-4o-mini" for i in body["items"])
    assert {i["variant"] for i in body["items"]} == {"control", "concise"}
    assert [x["id"] for x in body["issues"]] == ["hallucination", "irrelevant", "unsafe", "poor_formatting"]


@pytest.mark.parametrize("case, body, raw, status", [
    ("quality 9 is out of range", {"quality": 9}, None, 400),
    ("quality 0 is out of range", {"quality": 0}, None, 400),
    ("quality as a string", {"quality": "4"}, None, 400),
    ("missing quality", {"issues": []}, None, 400),
    ("an issue nobody configured", {"quality": 3, "issues": ["bad vibes"]}, None, 400),
    ("issues not a list", {"quality": 3, "issues": "unsafe"}, None, 400),
    ("body that is not JSON", None, b"quality=3", 400),
    ("body over 64 KiB", None, b'{"quality": 3, "comment": "' + b"x" * 70000 + b'"}', 413),
])
def test_bad_labels_get_a_clear_error_and_change_nothing(sidecar, case, body, raw, status):
    before = pending(sidecar)
    target = before["items"][0]["id"]
    got, answer = sidecar.request("POST", f"/v1/review/{target}/label", body=body, raw=raw)
    assert got == status, (case, answer)
    assert isinstance(answer, dict) and answer.get("error"), answer
    after = pending(sidecar)
    assert after["depth"] == before["depth"]
    assert [i["id"] for i in after["items"]] == [i["id"] for i in before["items"]]


def test_an_unknown_item_id_is_404(sidecar):
    status, answer = sidecar.request("POST", "/v1/review/ffffffffffffffff/label", body={"quality": 3})
    assert status == 404 and "ffffffffffffffff" in answer["error"]


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/v1/review/queue", None),
    ("GET", "/v1/review/summary", None),
    ("GET", "/v1/review/labels", None),
    ("POST", "/v1/review/ffffffffffffffff/label", {"quality": 3}),
])
@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_without_the_bearer_token_review_routes_are_refused(sidecar, method, path, body, token):
    status, _ = sidecar.request(method, path, body=body, token=token)
    assert status in (401, 403)


def test_the_labeling_page_loads_without_a_token_because_it_holds_no_data(sidecar):
    status, html = sidecar.request("GET", "/review", token=None)
    assert status == 200 and "Human review" in html and "review.js" in html
    status, js = sidecar.request("GET", "/review/assets/review.js", token=None)
    assert status == 200 and "Authorization" in js
    status, _ = sidecar.request("GET", "/review/assets/review.py")  # only the page's own files
    assert status == 404


def test_a_label_is_stored_exported_counted_and_fed_back_as_a_human_evaluation(sidecar):
    item = pending(sidecar)["items"][0]
    status, answer = sidecar.request("POST", f"/v1/review/{item['id']}/label", body={
        "quality": 2, "issues": ["Unsafe", "poor_formatting"], "comment": "leaks the address",
        "corrected_answer": "It ships today; tracking is in your inbox."})
    assert status == 200, answer
    assert (answer["status"], answer["quality"], answer["issues"]) == ("labeled", 2, ["unsafe", "poor_formatting"])
    status, again = sidecar.request("POST", f"/v1/review/{item['id']}/label", body={"quality": 5})
    assert status == 409, again

    status, exported = sidecar.request("GET", "/v1/review/labels")
    assert status == 200
    mine = [r for r in exported["items"] if r["id"] == item["id"]]
    assert len(mine) == 1
    assert mine[0]["corrected_answer"] == "It ships today; tracking is in your inbox."
    assert (mine[0]["trace_id"], mine[0]["span_id"]) == (item["trace_id"], item["span_id"])

    stored = wait_until(lambda: [r for r in read_labels(sidecar.db_path) if r["id"] == item["id"]])
    assert stored == mine

    text = sidecar.metrics()
    assert 'llm_human_labels_total{issue="unsafe",service="shop"} 1.0' in text
    assert 'llm_human_labels_total{issue="poor_formatting",service="shop"} 1.0' in text
    assert f'llm_review_queue_depth{{service="shop"}} {len(PII_CALLS) - 1}.0' in text
    # The label went through the sidecar's evaluation path: it is a quality score of the call's
    # model and variant from evaluator human_quality (what the A/B engine reads per variant).
    human = [line for line in text.splitlines()
             if line.startswith("llm_quality_score_count{") and 'evaluator="human_quality"' in line]
    assert human and f'variant="{item["variant"]}"' in human[0] and human[0].endswith(" 1.0"), human

    status, summary = sidecar.request("GET", "/v1/review/summary")
    assert status == 200
    assert summary["labeled"] >= 1 and summary["queue_depth"] == len(PII_CALLS) - 1
    assert {"issue": "unsafe", "count": 1, "share": 1 / summary["labeled"]} in summary["top_issues"]


def test_judge_scores_join_the_labels_and_agreement_is_published(sidecar):
    """Runs after the label test: one item is labeled (quality 2), two are pending."""
    status, exported = sidecar.request("GET", "/v1/review/labels")
    labeled = exported["items"][0]
    queue = pending(sidecar)["items"]
    assert len(queue) == 2
    judge = {labeled["id"]: 1.5, queue[0]["id"]: 4.5, queue[1]["id"]: 2.0}
    human = {queue[0]["id"]: 5, queue[1]["id"]: 1}
    rows = {labeled["id"]: labeled, **{i["id"]: i for i in queue}}
    sidecar.send_judge_scores([(rows[k]["trace_id"], rows[k]["span_id"], s) for k, s in judge.items()])
    scored = wait_until(lambda: all(i["judge_score"] is not None for i in pending(sidecar)["items"]))
    assert scored, pending(sidecar)
    for item_id, quality in human.items():
        status, answer = sidecar.request("POST", f"/v1/review/{item_id}/label", body={"quality": quality})
        assert status == 200, answer
    status, summary = sidecar.request("GET", "/v1/review/summary")
    # human [2, 5, 1] vs judge [1.5, 4.5, 2.0]: pass/fail agree everywhere (kappa 1);
    # ranks [2, 3, 1] vs [1, 3, 2] give rho = 1 - 6 * 2 / (3 * 8) = 0.5
    assert summary["agreement"] == {"n": 3, "kappa": 1.0, "spearman": pytest.approx(0.5)}
    text = sidecar.metrics()
    assert 'llm_eval_judge_human_agreement{method="kappa",service="shop"} 1.0' in text
    assert 'llm_eval_judge_human_agreement{method="spearman",service="shop"} 0.5' in text
    stored = wait_until(lambda: {r["id"]: r["judge_score"] for r in read_labels(sidecar.db_path)} == judge)
    assert stored


def test_the_queue_and_labels_survive_a_sidecar_restart(tmp_path):
    first = start_sidecar(tmp_path)
    try:
        first.send_llm_spans(PII_CALLS[:2])
        items = first.wait_for_queue(2)
        assert len(items) == 2
        status, _ = first.request("POST", f"/v1/review/{items[0]['id']}/label",
                                  body={"quality": 1, "issues": ["unsafe"]})
        assert status == 200
    finally:
        first.stop()  # drains and flushes
    second = start_sidecar(tmp_path)
    try:
        body = pending(second)
        assert [i["id"] for i in body["items"]] == [items[1]["id"]]
        status, again = second.request("POST", f"/v1/review/{items[0]['id']}/label", body={"quality": 3})
        assert status == 409, again
        assert 'llm_human_labels_total{issue="unsafe",service="shop"} 1.0' in second.metrics()
        assert [r["id"] for r in read_labels(second.db_path)] == [items[0]["id"]]
    finally:
        second.stop()
