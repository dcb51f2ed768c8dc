"""The ingest shortcuts give exactly what the general paths give (no timing here).

Each shortcut of the per-span work (edge value checks, `one_call.resolve`, the text join's batch
insert, the price and experiment caches) is compared with the general path it skips, on inputs
that take the shortcut and on inputs that must not.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict

import pytest

from otel_llm_eval import semconv
from otel_llm_eval.semconv import normalize
from otel_llm_eval.sidecar.ingest import edge, one_call
from otel_llm_eval.sidecar.ingest.checks import CheckRunner, build_checks
from otel_llm_eval.sidecar.ingest.edge import EdgeLimits
from otel_llm_eval.sidecar.ingest.otlp import SpanView
from otel_llm_eval.sidecar.ingest.prepare import Preparer
from otel_llm_eval.sidecar.ingest.prices import PriceTable
from otel_llm_eval.sidecar.ingest.text_join import TextJoin
from genai_spans import (T0, anthropic_sdk, logfire_request, logfire_stream_log, openai_v2, openinference,
                         openllmetry_anthropic, request, span)

KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "llm.token_count.prompt", "gen_ai.usage.cost",
        "llm_eval.cost_usd", "gen_ai.evaluation.score.value", "llm_eval.experiment.weights",
        "llm_eval.judge.skipped.cost", "gen_ai.request.model", "user.id", "my.cost")
VALUES = (0, 1, 12, -1, 100_000_000, 100_000_001, 2**53 + 1, 10**400, 0.5, -0.5, 1e300, math.nan, math.inf,
          -math.inf, 9999.0, 10_000.0, 10_000.5, 100.0, -100.0, 100.5, True, False, "12", " 7 ", "-3", "nan",
          "abc", "", None, [1, 2], ["e=a:0.5,b:0.5"], "e=a:0.5,b:0.5", "e=a:-1,b:1", "e=a:0,b:0", b"x")


def _random_attrs(rng: random.Random) -> dict:
    return {k: rng.choice(VALUES) for k in rng.sample(KEYS, rng.randint(0, len(KEYS)))}


@pytest.mark.parametrize("limits", [EdgeLimits(), EdgeLimits(max_tokens=10, max_cost_usd=0.5, score_min=0.0,
                                                             score_max=1.0)])
def test_edge_checks_match_the_general_path(limits, monkeypatch):
    rng = random.Random(7)
    for _ in range(3000):
        attrs = _random_attrs(rng)
        assert limits.attrs_problem(attrs) == limits.attrs_problem_slow(attrs), attrs
    # bounded caches: a full plan cache is cleared, and keys past the classification cap still count
    monkeypatch.setattr(edge, "_MAX_PLANS", 3)
    monkeypatch.setattr(edge, "_MAX_SEEN", 0)
    monkeypatch.setattr(edge, "_PLANS", {})
    monkeypatch.setattr(edge, "_SEEN", set())
    monkeypatch.setattr(edge, "_CHECKED", {})
    for _ in range(500):
        attrs = _random_attrs(rng)
        assert limits.attrs_problem(attrs) == limits.attrs_problem_slow(attrs), attrs
    assert len(edge._PLANS) <= 3 and not edge._SEEN


def _pending(*spans):
    out = []
    req = request(*spans)
    for s in req.resource_spans[0].scope_spans[0].spans:
        sv = SpanView(s, "shop")
        call = semconv.normalize(sv.attributes, trace_id=sv.raw_trace_id, span_id=sv.raw_span_id,
                                 start_time_unix_nano=sv.start, end_time_unix_nano=sv.end)
        if call is not None:
            out.append((sv, call))
    return out


BATCHES = [
    # root spans only (the shortcut)
    [span("01" * 8, "", openai_v2(), 0, 1000), span("02" * 8, "", openinference(), 10, 900),
     span("03" * 8, "", openai_v2(text=None, tokens=None), 5, 50)],
    [span("01" * 8, "", logfire_stream_log(), 5000, 5000)],
    [],
    # nesting, response ids and siblings (the general path)
    [span("02" * 8, "01" * 8, openinference(), 100, 900), span("01" * 8, "aa" * 8, openai_v2(), 50, 1000)],
    [span("01" * 8, "", openllmetry_anthropic(), 0, 1000), span("02" * 8, "", anthropic_sdk(), 100, 900)],
    [span("03" * 8, "02" * 8, openinference(), 200, 800), span("02" * 8, "01" * 8, openai_v2(), 100, 900),
     span("01" * 8, "", openinference(), 50, 1000)],
    [span("01" * 8, "", logfire_request(), 0, 1000), span("02" * 8, "", openai_v2(), 5000, 6000)],
]


@pytest.mark.parametrize("spans", BATCHES)
def test_resolve_matches_the_general_path(spans):
    pending = _pending(*spans)
    for links in (None, {}):
        assert one_call.resolve(pending, links) == one_call.resolve_general(pending, links)
    # an inner call of an earlier batch is waiting: no shortcut, and the same answer
    if pending:
        sv, call = pending[0]
        links = {call.trace_id + call.span_id: (call.operation, call.trace_id, sv.start, sv.end,
                                                ("shop", "m", "", "", ""), True, True, True)}
        assert one_call.resolve(pending, links) == one_call.resolve_general(pending, links)


def _reference_settle(waiting: OrderedDict, now: float, settle: float) -> dict:
    """TextJoin.settle as it was written before its pop-first loop."""
    out: dict = {}
    while waiting:
        key, (service, _model, t) = next(iter(waiting.items()))
        if t > now - settle:
            break
        waiting.popitem(last=False)
        out[service] = out.get(service, 0) + 1
    return out


@pytest.mark.parametrize("seed", range(6))
def test_text_join_batch_insert_matches_call_by_call(seed):
    rng = random.Random(seed)
    fast, slow = TextJoin(max_entries=40, settle_seconds=5), TextJoin(max_entries=40, settle_seconds=5)
    pool = [f"k{i}" for i in range(120 if seed % 2 else 4000)]  # collisions often, or rarely
    groups = [("svc-a", "m1"), ("svc-b", "m2"), ("svc-a", "")]
    now = 0.0
    for _ in range(300):
        now += rng.choice((0.0, 0.5, 3.0))
        action = rng.random()
        if action < 0.25:  # a log record's text, maybe before its span
            key, text = rng.choice(pool), ("p", "c", None)
            assert fast.text(key, text) == slow.text(key, text)
        elif action < 0.35:
            got = fast.settle(now)
            expected = _reference_settle(slow.waiting, now, slow.settle_seconds)
            for service, n in slow.evicted.items():  # evicted past max_entries: without text too
                expected[service] = expected.get(service, 0) + n
            slow.evicted = {}
            assert got == expected
            assert slow.settle(now) == {}  # the reference settled the slow side already
        else:
            n = rng.choice((1, 5, 30, 45))
            keys = [rng.choice(pool) for _ in range(n)]
            of = [rng.randrange(len(groups)) for _ in range(n)]
            expected = []
            for key, g in zip(keys, of):
                text = slow.span_without_text(key, *groups[g], now)
                if text is not None:
                    expected.append(groups[g] + (text,))
            assert fast.spans_without_text(keys, groups, of, now) == expected
        assert list(fast.waiting.items()) == list(slow.waiting.items())
        assert list(fast.early.items()) == list(slow.early.items())
        assert fast.evicted == slow.evicted


def test_every_span_without_text_is_counted_once_also_when_evicted_past_the_bound():
    """More spans waiting than max_entries: the evicted ones count as without text at the next
    settle, the rest when their window ends; none twice, none lost."""
    join = TextJoin(max_entries=10, settle_seconds=5)
    keys = [f"k{i}" for i in range(25)]
    join.spans_without_text(keys[:15], [("svc", "m")], [0] * 15, 0.0)   # the batch path
    for key in keys[15:]:
        join.span_without_text(key, "svc", "m", 1.0)                     # the call-by-call path
    assert join.settle(2.0) == {"svc": 15} and len(join.waiting) == 10   # evicted, counted now
    assert join.text("k24", ("p", "c", None)) == ("svc", "m")            # joined: never without text
    assert join.settle(10.0) == {"svc": 9} and join.settle(20.0) == {}


def test_prepared_batches_match_with_shortcuts_off(monkeypatch):
    """A whole batch (calls with and without text, nesting, an experiment, odd values) prepared with
    every shortcut and with the general paths: the same sums, operations and errors."""
    spans = [s for batch in BATCHES for s in batch]
    # distinct span ids across the merged batches (the shapes repeat ids)
    spans = [(f"{i + 1:016x}",) + s[1:] for i, s in enumerate(spans)]
    extra = dict(openai_v2(), **{"llm_eval.experiment.id": "e", "llm_eval.experiment.variant": "b",
                                 "gen_ai.usage.cost": 0.25})
    spans += [span(f"{100 + i:016x}", "", dict(extra, **{"user.id": f"u{i % 3}"}), 0, 1000 + i) for i in range(20)]
    spans += [span("ff" * 8, "", dict(openai_v2(), **{"gen_ai.usage.input_tokens": -4}), 0, 10)]
    req = request(*spans)

    def prepared():
        p = Preparer(CheckRunner(build_checks({})), PriceTable.from_config({}), "svc", attributes="none",
                     clock=lambda: T0 / 1e9)
        return p.prepare_traces(req)

    fast = prepared()
    monkeypatch.setattr(EdgeLimits, "attrs_problem", EdgeLimits.attrs_problem_slow)
    monkeypatch.setattr(one_call, "resolve", one_call.resolve_general)
    monkeypatch.setattr(one_call, "is_flat", lambda pending, links: False)
    slow = prepared()
    assert fast == slow
    assert fast[4][3] == {"invalid_number": 1}


FIELD_KEYS = {  # LLMCall field -> the keys normalize reads it from, first non-empty wins
    "model": ("gen_ai.response.model", "gen_ai.request.model", "llm.response.model_name",
              "llm.request.model_name", "llm.model_name", "langfuse.observation.model.name"),
    "input_tokens": ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt",
                     "llm.usage.prompt_tokens"),
    "output_tokens": ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens",
                      "llm.token_count.completion", "llm.usage.completion_tokens"),
    "session_id": ("gen_ai.conversation.id", "session.id", "langfuse.session.id",
                   "traceloop.association.properties.session_id"),
    "user_id": ("user.id", "enduser.id", "langfuse.user.id", "traceloop.association.properties.user_id",
                "gen_ai.user", "llm.user", "gen_ai.request.user"),
    "experiment": (semconv.EXPERIMENT_ID,),
    "variant": (semconv.EXPERIMENT_VARIANT,),
}
FIELD_VALUES = ("gpt-4o", "", " ", 0, 7, -3, 2.0, 2.5, -1.0, math.nan, True, False, "12", "1.5", "-4", "x",
                b"ab", b"", [], ["a", "b"], [3], None, {"a": 1})
ID_VALUES = (None, b"", bytes(16), bytes(range(16)), bytes(range(8)), bytearray(b"\x01\x02"), 0, 5, -5, True,
             "0A" * 16, "zz", "")


def test_normalize_fields_match_the_general_helpers():
    """normalize reads the first key of each field inline; the general helpers decide the rest."""
    rng = random.Random(11)
    for _ in range(4000):
        attrs = {"gen_ai.operation.name": "chat"}
        for keys in FIELD_KEYS.values():
            for key in rng.sample(keys, rng.randint(0, min(2, len(keys)))):
                attrs[key] = rng.choice(FIELD_VALUES)
        if rng.random() < 0.5:
            attrs["gen_ai.provider.name"] = rng.choice(FIELD_VALUES)
        if rng.random() < 0.3:
            attrs["gen_ai.system"] = rng.choice(FIELD_VALUES)
        tid, sid = rng.choice(ID_VALUES), rng.choice(ID_VALUES)
        start, end = rng.choice((None, 0, 5, -1, 10**18, "7", 2.0, True)), rng.choice((None, 0, 9, -1, 10**18 + 5))
        call = normalize(attrs, trace_id=tid, span_id=sid, start_time_unix_nano=start, end_time_unix_nano=end)
        get = attrs.get
        for field, keys in FIELD_KEYS.items():
            convert = semconv._to_int if field.endswith("tokens") else semconv._to_str
            assert getattr(call, field) == convert(semconv._first(get, *keys)), (field, attrs)
        assert call.provider == semconv._provider(get)
        assert (call.trace_id, call.span_id) == (semconv._hex_id(tid, 32), semconv._hex_id(sid, 16))
        s, e = semconv._to_int(start), semconv._to_int(end)
        expected = (e - s) / 1e9 if s is not None and e is not None and e >= s and s > 0 else None
        assert call.latency_seconds == expected


def _otlp_request(rng: random.Random, now_ns: int) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    req = ExportTraceServiceRequest()
    for _ in range(rng.randint(1, 3)):
        ss = req.resource_spans.add().scope_spans.add()
        for _ in range(rng.randint(0, 6)):
            s = ss.spans.add()
            s.trace_id = rng.choice((bytes(range(1, 17)), bytes(16), b"\x01" * 15, b""))
            s.span_id = rng.choice((bytes(range(1, 9)), bytes(8), b"\x02" * 9))
            s.parent_span_id = rng.choice((b"", b"\x03" * 8, b"\x03" * 4))
            start = rng.choice((0, now_ns - 10**9, now_ns - 30 * 86_400 * 10**9, now_ns + 3600 * 10**9))
            s.start_time_unix_nano = start
            s.end_time_unix_nano = rng.choice((0, start + 10**6, start + 2 * 86_400 * 10**9, now_ns))
            s.name = "x"
    return req.SerializeToString()


def test_request_checks_match_the_per_span_path():
    """otlp._spans_valid (one loop for a request whose spans all pass) against the per-span checks."""
    import time

    from otel_llm_eval.sidecar.ingest.otlp import OTLPError, decode_traces

    rng = random.Random(5)
    limits = EdgeLimits()
    now = time.time()
    kw = dict(max_request_bytes=1 << 20, max_span_bytes=1 << 20)
    taken = 0
    for _ in range(800):
        body = _otlp_request(rng, int(now * 1e9))
        fast_edge = limits.span_checker(now)
        taken += 1 if fast_edge.bounds else 0

        def slow_edge(span, check=limits.span_checker(now)):  # no bounds: the per-span path
            return check(span)

        results = []
        for edge_fn in (fast_edge, slow_edge):
            try:
                d = decode_traces(body, "application/x-protobuf", "", edge=edge_fn, **kw)
                results.append((d.accepted, d.rejected, d.error_message, d.reasons, d.message.SerializeToString()))
            except OTLPError as e:
                results.append((e.status, e.reason, e.message, e.reasons))
        assert results[0] == results[1]
    assert taken


def test_links_add_and_needs_local_match_item_by_item():
    rng = random.Random(3)
    links, reference = one_call.Links(max_entries=30), OrderedDict()
    for _ in range(200):
        entries = [(rng.choice("pqr") + str(rng.randrange(60)), (rng.random(),)) for _ in range(rng.randrange(12))]
        links.add(entries)
        for key, link in entries:
            reference[key] = link
        while len(reference) > 30:
            reference.popitem(last=False)
        assert list(links.map.items()) == list(reference.items())
        keys = ["p" + str(rng.randrange(60)) for _ in range(rng.randrange(5))]
        prepared = ("traces", 1, (None,) * 6 + ((keys, [], b"", 0.0),) + ({},), [], (0, 0, 0, {}), None)
        assert links.needs_local(prepared) == (bool(keys) and any(k in reference for k in keys))
