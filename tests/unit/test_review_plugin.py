"""ReviewPlugin on its own: ingest hooks -> queue (redacted), labels, metrics, restart, export."""

from __future__ import annotations

import sqlite3

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from otel_llm_eval.catalog import METRICS
from otel_llm_eval.semconv import ExperimentAssignment, LLMCall
from otel_llm_eval.sidecar.plugins import CallRecord, EvaluationRecord
from otel_llm_eval.sidecar.plugins.review import LabelError, ReviewPlugin, item_id_for, read_labels

CATALOG = {m.name: m for m in METRICS}


class Ctx:
    """The slice of the core's SidecarContext the plugin uses, with a settable clock."""

    def __init__(self, review_config=None):
        self.config = {"review": review_config or {}}
        self.t = 1_000_000.0
        self.evaluations = []

    def now(self):
        return self.t

    def submit_evaluation(self, record):
        self.evaluations.append(record)

    def family(self, name, values):
        m = CATALOG[name]
        if m.type == "counter":
            fam = CounterMetricFamily(m.family_name, m.help, labels=m.labels)
        elif m.type == "gauge":
            fam = GaugeMetricFamily(m.name, m.help, labels=m.labels)
        else:
            fam = HistogramMetricFamily(m.name, m.help, labels=m.labels)
        for entry in values:
            labels = [entry[0][k] for k in m.labels]
            if m.type == "histogram":
                counts, total = entry[1], entry[2]
                cum, buckets = 0.0, []
                for bound, c in zip(list(m.buckets) + [float("inf")], counts):
                    cum += c
                    buckets.append(("+Inf" if bound == float("inf") else str(bound), cum))
                fam.add_metric(labels, buckets, total)
            else:
                fam.add_metric(labels, entry[1])
        return fam


def record(i, *, failed=(), completion="a perfectly fine answer", prompt="hello", variant="a",
           model="gpt-4o-mini", end_unix=1_000_000.0):
    call = LLMCall(model=model, prompt=prompt, completion=completion, trace_id=f"{i:032x}",
                   span_id=f"{i:016x}", experiment="exp1", variant=variant)
    return CallRecord(call=call, service="shop", error=False, end_time_unix_nano=int(end_unix * 1e9),
                      failed_checks=tuple(failed),
                      experiments=(ExperimentAssignment("exp1", variant),))


def make(tmp_path, config=None, ctx=None):
    ctx = ctx or Ctx({"sampling": {"window_seconds": 1, "random_rate": 0.0}, **(config or {})})
    plugin = ReviewPlugin()
    plugin.attach(ctx)
    conn = sqlite3.connect(str(tmp_path / "state.db"))
    plugin.load(conn)
    return plugin, conn, ctx


def flush(plugin, conn, ctx, advance=2.0):
    ctx.t += advance
    plugin.flush(conn)
    conn.commit()


def metrics_text(plugin) -> str:
    class C:
        def collect(self):
            return plugin.collect()
    reg = CollectorRegistry()
    reg.register(C())
    return generate_latest(reg).decode()


def test_failed_calls_enter_the_queue_with_pii_redacted(tmp_path):
    plugin, conn, ctx = make(tmp_path)
    plugin.on_call(record(1, failed=("pii",), prompt="I am bob@example.com, call +1 415-555-0134",
                          completion="Your card 4111 1111 1111 1111 is on file"))
    plugin.on_call(record(2))  # nothing failed, random rate 0: not sampled
    flush(plugin, conn, ctx)
    items = plugin.queue(10)
    assert [i["id"] for i in items] == [item_id_for(f"{1:032x}", f"{1:016x}")]
    assert items[0]["prompt"] == "I am [EMAIL], call [PHONE]"
    assert items[0]["completion"] == "Your card [CARD] is on file"
    stored = conn.execute("SELECT prompt, completion FROM review_items").fetchall()
    assert stored == [("I am [EMAIL], call [PHONE]", "Your card [CARD] is on file")]


def test_redaction_can_be_turned_off(tmp_path):
    plugin, conn, ctx = make(tmp_path, {"redact_pii": False})
    plugin.on_call(record(1, failed=("pii",), prompt="bob@example.com"))
    flush(plugin, conn, ctx)
    assert plugin.queue(1)[0]["prompt"] == "bob@example.com"


def test_a_low_judge_score_pulls_a_recent_call_into_the_queue(tmp_path):
    plugin, conn, ctx = make(tmp_path)
    plugin.on_call(record(5))
    plugin.on_evaluation(EvaluationRecord(name="relevance", source="llm_judge", trace_id=f"{5:032x}",
                                          span_id=f"{5:016x}", time_unix_nano=0, score=1.0))
    plugin.on_call(record(6))
    plugin.on_evaluation(EvaluationRecord(name="relevance", source="llm_judge", trace_id=f"{6:032x}",
                                          span_id=None, time_unix_nano=0, score=4.5))
    flush(plugin, conn, ctx)
    items = plugin.queue(10)
    assert [(i["trace_id"], i["reason"], i["judge_score"]) for i in items] == [(f"{5:032x}", "low_score", 1.0)]


@pytest.mark.parametrize("body, status, needle", [
    ({"quality": 9}, 400, "quality"),
    ({"quality": 0}, 400, "quality"),
    ({"quality": "5"}, 400, "quality"),
    ({"quality": True}, 400, "quality"),
    ({"quality": 3, "issues": "unsafe"}, 400, "issues"),
    ({"quality": 3, "issues": ["Made up"]}, 400, "unknown issue"),
    ({"quality": 3, "comment": 7}, 400, "comment"),
    ({"quality": 3, "colour": "red"}, 400, "unknown fields"),
    ([1, 2], 400, "object"),
])
def test_bad_labels_are_refused_and_change_nothing(tmp_path, body, status, needle):
    plugin, conn, ctx = make(tmp_path)
    plugin.on_call(record(1, failed=("pii",)))
    flush(plugin, conn, ctx)
    item_id = plugin.queue(1)[0]["id"]
    with pytest.raises(LabelError) as e:
        plugin.label(item_id, body)
    assert e.value.status == status and needle in e.value.message
    assert plugin.depth() == 1 and ctx.evaluations == []


def test_unknown_and_already_labeled_ids_are_404_and_409(tmp_path):
    plugin, conn, ctx = make(tmp_path)
    plugin.on_call(record(1, failed=("pii",)))
    flush(plugin, conn, ctx)
    item_id = plugin.queue(1)[0]["id"]
    with pytest.raises(LabelError) as e:
        plugin.label("0000000000000000", {"quality": 3})
    assert e.value.status == 404
    plugin.label(item_id, {"quality": 3})
    with pytest.raises(LabelError) as e:
        plugin.label(item_id, {"quality": 4})
    assert e.value.status == 409


def test_a_label_updates_metrics_and_becomes_a_human_evaluation_of_the_call(tmp_path):
    plugin, conn, ctx = make(tmp_path, {"issues": ["Too long"]})
    plugin.on_call(record(1, failed=("pii",), variant="b"))
    plugin.on_call(record(2, failed=("refusal",), variant="a"))
    flush(plugin, conn, ctx)
    first, second = plugin.queue(2)
    plugin.label(first["id"], {"quality": 2, "issues": ["Hallucination", "too_long"],
                               "comment": "wrong, see jane@corp.example"})
    plugin.label(second["id"], {"quality": 5, "issues": []})
    text = metrics_text(plugin)
    assert 'llm_human_labels_total{issue="hallucination",service="shop"} 1.0' in text
    assert 'llm_human_labels_total{issue="too_long",service="shop"} 1.0' in text
    assert 'llm_human_labels_total{issue="none",service="shop"} 1.0' in text
    assert 'llm_review_queue_depth{service="shop"} 0.0' in text
    assert 'llm_human_quality_score_count{model="gpt-4o-mini",service="shop",variant="' in text
    assert 'llm_human_quality_score_sum{model="gpt-4o-mini",service="shop",variant="' + first["variant"] + '"} 2.0' in text
    ev = ctx.evaluations[0]
    assert (ev.name, ev.source, ev.score, ev.label) == ("human_quality", "human", 2.0, "fail")
    assert (ev.trace_id, ev.span_id) == (first["trace_id"], first["span_id"])
    assert ev.experiments == (ExperimentAssignment("exp1", first["variant"]),)
    assert ev.explanation == "wrong, see [EMAIL]"


def test_labels_survive_a_restart_and_read_labels_exports_them(tmp_path):
    plugin, conn, ctx = make(tmp_path)
    for i in range(3):
        plugin.on_call(record(i, failed=("pii",)))
    flush(plugin, conn, ctx)
    items = plugin.queue(3)
    plugin.label(items[0]["id"], {"quality": 1, "issues": ["unsafe"],
                                  "corrected_answer": "Call 212-555-0100 instead"})
    plugin.skip(items[1]["id"])
    flush(plugin, conn, ctx)
    conn.close()

    again, conn2, _ = make(tmp_path, ctx=ctx)
    assert again.depth() == 2
    assert again.queue(1)[0]["id"] == items[2]["id"]  # the skipped one goes last
    assert 'llm_human_labels_total{issue="unsafe",service="shop"} 1.0' in metrics_text(again)
    exported = read_labels(str(tmp_path / "state.db"))
    assert len(exported) == 1
    row = exported[0]
    assert set(row) == {"id", "trace_id", "span_id", "prompt", "completion", "model", "variant",
                        "experiment", "quality", "issues", "comment", "corrected_answer",
                        "judge_score", "failed_checks", "created_unix", "labeled_unix"}
    assert (row["quality"], row["issues"], row["failed_checks"]) == (1, ["unsafe"], ["pii"])
    assert row["corrected_answer"] == "Call [PHONE] instead"
    assert again.labels() == exported


def test_judge_human_agreement_is_published_per_service(tmp_path):
    plugin, conn, ctx = make(tmp_path, {"sampling": {"window_seconds": 1, "random_rate": 0.0,
                                                      "reservoir_size": 10}})
    judge = {1: 4.5, 2: 1.0, 3: 3.5, 4: 2.0}
    human = {1: 5, 2: 1, 3: 4, 4: 2}
    for i in judge:
        plugin.on_call(record(i, failed=("pii",)))
    flush(plugin, conn, ctx)
    for i, s in judge.items():
        plugin.on_evaluation(EvaluationRecord(name="quality", source="llm_judge", trace_id=f"{i:032x}",
                                              span_id=f"{i:016x}", time_unix_nano=0, score=s))
    by_trace = {it["trace_id"]: it["id"] for it in plugin.queue(10)}
    for i, q in human.items():
        plugin.label(by_trace[f"{i:032x}"], {"quality": q})
    text = metrics_text(plugin)
    assert 'llm_eval_judge_human_agreement{method="kappa",service="shop"} 1.0' in text
    assert 'llm_eval_judge_human_agreement{method="spearman",service="shop"} 1.0' in text
    summary = plugin.summary()
    assert summary["agreement"]["n"] == 4 and summary["labeled"] == 4
    assert summary["failure_rate_all_labeled"]["failures"] == 2


def test_retention_deletes_old_items_from_memory_and_the_store(tmp_path):
    plugin, conn, ctx = make(tmp_path, {"retention_days": 1})
    plugin.on_call(record(1, failed=("pii",), end_unix=ctx.t))
    flush(plugin, conn, ctx)
    assert plugin.depth() == 1
    flush(plugin, conn, ctx, advance=2 * 86400)
    assert plugin.depth() == 0
    assert conn.execute("SELECT COUNT(*) FROM review_items").fetchone() == (0,)


def test_the_queue_is_bounded_and_drops_are_counted(tmp_path):
    plugin, conn, ctx = make(tmp_path, {"max_pending": 3})
    for i in range(8):
        plugin.on_call(record(i, failed=("pii",)))
    flush(plugin, conn, ctx)
    assert plugin.depth() == 3
    assert plugin.summary()["dropped"]["queue_full"] == 5


def test_hooks_never_raise_on_odd_records(tmp_path):
    plugin, conn, ctx = make(tmp_path)
    plugin.on_call(CallRecord(call=LLMCall(), service="s", error=True, end_time_unix_nano=0))
    plugin.on_call(object())  # type: ignore[arg-type]
    plugin.on_evaluation(EvaluationRecord(name="x", source="llm_judge", trace_id="zz", span_id=None,
                                          time_unix_nano=0, score=float("nan")))
    flush(plugin, conn, ctx)
    assert plugin.depth() == 0 and plugin.summary()["dropped"]["errors"] == 1


@pytest.mark.parametrize("section, needle", [
    ({"retention_days": 0}, "retention_days"),
    ({"max_pending": "many"}, "max_pending"),
    ({"pass_quality": 7}, "pass_quality"),
    ({"issues": "Too long"}, "issues"),
    ({"colour": "red"}, "colour"),
    ({"sampling": {"random_rate": 2}}, "random_rate"),
])
def test_bad_review_config_stops_the_plugin_with_the_key_named(section, needle):
    with pytest.raises(ValueError) as e:
        ReviewPlugin().attach(Ctx(section))
    assert needle in str(e.value)


def test_span_attributes_drive_confidence_sampling_and_strata(tmp_path):
    plugin, conn, ctx = make(tmp_path, {"sampling": {
        "window_seconds": 1, "random_rate": 0.0, "confidence_attribute": "llm.confidence",
        "low_confidence": 0.5, "stratify_by": "tenant", "reservoir_size": 2}})

    def with_attrs(i, **attrs):
        r = record(i)
        return CallRecord(call=r.call, service=r.service, error=False,
                          end_time_unix_nano=r.end_time_unix_nano, attributes=attrs)

    for i in range(10):
        plugin.on_call(with_attrs(i, **{"llm.confidence": 0.1 + i / 100, "tenant": "big"}))
    plugin.on_call(with_attrs(50, **{"llm.confidence": 0.3, "tenant": "small"}))
    plugin.on_call(with_attrs(51, **{"llm.confidence": 0.9, "tenant": "small"}))   # confident
    plugin.on_call(with_attrs(52, **{"llm.confidence": "n/a", "tenant": "small"}))  # unparseable
    flush(plugin, conn, ctx)
    got = sorted((i["reason"], i["trace_id"]) for i in plugin.queue(10))
    # equal share per tenant: the least confident of "big", the only candidate of "small"
    assert got == [("low_confidence", f"{0:032x}"), ("low_confidence", f"{50:032x}")]
