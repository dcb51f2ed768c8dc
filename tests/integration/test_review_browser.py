"""The labeling page in a real browser: Debian's chromium, headless, driven by Playwright.

Opens /review on a running sidecar that requires a bearer token, enters the token in the page,
labels one item by clicking, skips one and labels another by keyboard only, then finds both labels
in the SQLite store and in /metrics.
"""

from __future__ import annotations

import pytest

from conftest import require_binary
from otel_llm_eval.sidecar.plugins.review import read_labels
from review_harness import PII_CALLS, start_sidecar, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
TOKEN = "browser-test-token"


def test_a_reviewer_labels_two_items_by_mouse_and_by_keyboard(tmp_path):
    chromium = require_binary("/usr/bin/chromium")
    from playwright.sync_api import expect, sync_playwright

    sc = start_sidecar(tmp_path, token=TOKEN)
    try:
        sc.send_llm_spans(PII_CALLS)
        assert len(sc.wait_for_queue(3)) == 3
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 900})
                page.goto(sc.url + "/review")
                # Without the token the page asks for it; entering it loads the queue.
                expect(page.locator("#message")).to_contain_text("bearer token")
                page.fill("#token", TOKEN)
                page.press("#token", "Tab")
                expect(page.locator("#item")).to_be_visible()
                expect(page.locator("#depth")).to_have_text("queue: 3")
                first_trace = page.locator("#m-trace").inner_text()
                expect(page.locator("#completion")).to_contain_text("[")  # redacted text shown

                # 1) by mouse
                page.click("label.q:has(#quality-2)")
                page.click("label.issue:has(#issue-hallucination)")
                page.fill("#comment", "made-up tracking promise")
                page.click("#submit")
                expect(page.locator("#message")).to_contain_text("quality 2")
                expect(page.locator("#depth")).to_have_text("queue: 2")
                expect(page.locator("#m-trace")).not_to_have_text(first_trace)
                page.screenshot(path=str(tmp_path / "review.png"), full_page=True)

                # skip with "n": the next item shows, the skipped one waits behind it
                page.evaluate("document.activeElement && document.activeElement.blur()")
                skipped_trace = page.locator("#m-trace").inner_text()
                page.keyboard.press("n")
                expect(page.locator("#message")).to_contain_text("Skipped")
                expect(page.locator("#m-trace")).not_to_have_text(skipped_trace)

                # 2) by keyboard only: quality 4, issue key "s" (Irrelevant), Enter submits
                page.evaluate("document.activeElement && document.activeElement.blur()")
                page.keyboard.press("4")
                page.keyboard.press("s")
                expect(page.locator("#issue-irrelevant")).to_be_checked()
                page.keyboard.press("Enter")
                expect(page.locator("#message")).to_contain_text("quality 4")
                expect(page.locator("#depth")).to_have_text("queue: 1")
                expect(page.locator("#m-trace")).to_have_text(skipped_trace)
            finally:
                browser.close()

        labels = wait_until(lambda: len(read_labels(sc.db_path)) == 2 and read_labels(sc.db_path))
        assert labels, "labels never reached the SQLite store"
        by_quality = {r["quality"]: r for r in labels}
        assert set(by_quality) == {2, 4}
        assert by_quality[2]["issues"] == ["hallucination"]
        assert by_quality[2]["comment"] == "made-up tracking promise"
        assert by_quality[2]["trace_id"] == first_trace
        assert by_quality[4]["issues"] == ["irrelevant"] and by_quality[4]["comment"] is None

        text = sc.metrics()
        assert 'llm_human_labels_total{issue="hallucination",service="shop"} 1.0' in text
        assert 'llm_human_labels_total{issue="irrelevant",service="shop"} 1.0' in text
        assert 'llm_review_queue_depth{service="shop"} 1.0' in text
        assert skipped_trace not in {r["trace_id"] for r in labels}
        counts = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                  if line.startswith("llm_human_quality_score_count{")]
        assert sum(counts) == 2.0
    finally:
        sc.stop()
