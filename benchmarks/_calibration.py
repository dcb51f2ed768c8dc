"""Seeded calibration simulations through the sidecar's real path (shared by the test suite and
`benchmarks/calibration_table.py`).

A/B: experiments run the way users run them. Users are assigned by `Experiment.assign` and make 1-20
calls each, spread over the looks after they arrive; every user has their own random effect on
every metric (intraclass correlation 0.1-0.3), so calls of one user are correlated. The spans an
instrumented app exports (experiment, variant, unit key, weights; tokens, latency, errors) and the
evaluation spans of a sampled judge and of user thumbs go as OTLP protobuf through the sidecar's
ingest (decode, normalize, checks, batch sums, state); the sidecar's experiments plugin then ticks,
once per look, exactly as it does every `analysis.interval_seconds`. Seven metrics per experiment
(judge score, thumbs, latency, input and output tokens, cost, errors) are tested at every look.

Interleaving and drift go through their plugins' own ingest hooks and ticks.

Every function returns rates over independent replicates; `mc_se(rate, n)` is the Monte-Carlo
standard error a rate is judged with.
"""

from __future__ import annotations

import math
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from otel_llm_eval import Experiment, semconv
from otel_llm_eval.semconv import LLMCall
from otel_llm_eval.sidecar.plugins.drift import DriftPlugin
from otel_llm_eval.sidecar.plugins.experiments import ExperimentsPlugin
from otel_llm_eval.sidecar.plugins.interleaving import InterleavingPlugin
from otel_llm_eval.sidecar.plugins import CallRecord, EvaluationRecord
from otel_llm_eval.sidecar.server import build

T0 = 1_800_000_000.0
LOOK_SECONDS = 600.0


def mc_se(rate: float, n: int) -> float:
    return math.sqrt(max(rate * (1 - rate), 0.05 * 0.95) / max(n, 1))


def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    if isinstance(value, (list, tuple)):
        return KeyValue(key=key, value=AnyValue(array_value=ArrayValue(values=[AnyValue(string_value=v) for v in value])))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


@dataclass
class _User:
    exp: Experiment
    unit: str
    variant: str
    effects: dict[str, float]
    call_looks: list[int]


@dataclass
class ABResult:
    experiments: int
    looks: int
    any_verdict: float                 # experiments with a better/worse verdict on any metric at any look
    primary_better: float              # ... better on the primary metric (judge score) at any look
    ship: float                        # ... a `ship` decision at any look
    srm: float = 0.0                   # ... an SRM alarm (units, p < 0.001) at any look
    per_metric: dict[str, float] = field(default_factory=dict)
    basis: str = ""


def run_ab(*, experiments: int = 60, users_per_experiment: int = 400, looks: int = 12, effect: float = 0.0,
           icc: tuple[float, float] = (0.1, 0.3), judge_rate: float = 0.3, thumbs_rate: float = 0.4,
           seed: int = 0, units: bool = True) -> ABResult:
    """A/A (effect 0) or A/B (the treatment's judge score `effect` relative higher) experiments,
    all running at once in one sidecar. `units=False`: the app activates without a unit id."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    exps = [Experiment(f"cal-{seed}-{k}", {"control": 0.5, "treatment": 0.5}) for k in range(experiments)]
    weights = {e.id: semconv.format_weights(e.id, e.variants, e.control) for e in exps}
    users: list[_User] = []
    for e in exps:
        rho = rng.uniform(*icc)
        for u in range(users_per_experiment):
            uid = f"user-{u}"
            arrival = rng.randrange(looks)
            calls = rng.randint(1, 20)
            user_looks = sorted(rng.randrange(arrival, looks) for _ in range(calls))
            sd_u = math.sqrt(rho)
            users.append(_User(e, e.unit_key(uid), e.assign(uid), {
                "judge": nrng.normal(0, sd_u), "thumbs": nrng.normal(0, 1.0), "latency": nrng.normal(0, sd_u * 0.5),
                "tokens": nrng.normal(0, sd_u * 0.5), "error": nrng.normal(0, 1.0), "rho": rho}, user_looks))
    tmp = tempfile.TemporaryDirectory()
    plugin = ExperimentsPlugin()
    clock = [T0]
    sc = build({"state": {"db_path": str(Path(tmp.name) / "cal.db"), "max_experiments": experiments + 10,
                          "journal": False},
                "analysis": {"drift": {"features": []}}},
               plugins=[plugin], clock=lambda: clock[0], environ={})
    seen_any: dict[str, bool] = {}
    seen_primary: dict[str, bool] = {}
    seen_ship: dict[str, bool] = {}
    seen_srm: dict[str, bool] = {}
    per_metric: dict[str, set[str]] = {}
    basis = ""
    span_seq = 0
    try:
        for look in range(looks):
            t_end = T0 + (look + 1) * LOOK_SECONDS
            req = ExportTraceServiceRequest()
            rs = req.resource_spans.add()
            rs.resource.attributes.append(_kv("service.name", "cal"))
            spans = rs.scope_spans.add().spans
            for user in users:
                for call_look in user.call_looks:
                    if call_look != look:
                        continue
                    span_seq += 1
                    trace_id = span_seq.to_bytes(16, "big")
                    span_id = span_seq.to_bytes(8, "big")
                    eff = user.effects
                    latency = math.exp(0.0 + eff["latency"] + nrng.normal(0, math.sqrt(1 - eff["rho"]) * 0.5))
                    in_tok = max(1, int(200 * math.exp(eff["tokens"] + nrng.normal(0, 0.3))))
                    out_tok = max(1, int(300 * math.exp(eff["tokens"] + nrng.normal(0, 0.4))))
                    error = nrng.random() < 1 / (1 + math.exp(-(math.log(0.03 / 0.97) + eff["error"])))
                    s = spans.add(trace_id=trace_id, span_id=span_id, name="chat gpt-4o-mini",
                                  start_time_unix_nano=int((t_end - latency) * 1e9), end_time_unix_nano=int(t_end * 1e9))
                    s.attributes.extend([
                        _kv("gen_ai.operation.name", "chat"), _kv("gen_ai.request.model", "gpt-4o-mini"),
                        _kv("gen_ai.usage.input_tokens", in_tok), _kv("gen_ai.usage.output_tokens", out_tok),
                        _kv(semconv.EXPERIMENTS, [f"{user.exp.id}={user.variant}"]),
                        _kv(semconv.EXPERIMENT_WEIGHTS, [weights[user.exp.id]]),
                    ])
                    if units:
                        s.attributes.append(_kv(semconv.EXPERIMENT_UNITS, [user.unit]))
                    if error:
                        s.status.code = Status.STATUS_CODE_ERROR
                    evals = []
                    if nrng.random() < judge_rate:
                        shift = effect * 3.5 if user.variant == "treatment" else 0.0
                        score = 3.5 + shift + eff["judge"] + nrng.normal(0, math.sqrt(1 - eff["rho"]))
                        evals.append(("quality", float(score), "llm_judge"))
                    if nrng.random() < thumbs_rate:
                        p = 1 / (1 + math.exp(-(math.log(0.6 / 0.4) + eff["thumbs"])))
                        evals.append(("thumbs", 1.0 if nrng.random() < p else 0.0, "user"))
                    for name, score, source in evals:
                        span_seq += 1
                        ev = spans.add(trace_id=trace_id, span_id=span_seq.to_bytes(8, "big"), parent_span_id=span_id,
                                       name=f"evaluation {name}", start_time_unix_nano=int(t_end * 1e9),
                                       end_time_unix_nano=int(t_end * 1e9))
                        ev.attributes.extend([_kv(semconv.EVALUATION_NAME, name),
                                              _kv(semconv.EVALUATION_SCORE_VALUE, score),
                                              _kv(semconv.EVALUATION_SOURCE, source)])
            clock[0] = t_end + 1.0
            sc._apply(0, "traces", req)
            sc.tick()
            for eid, d in plugin.results.get("experiments", {}).items():
                basis = d.get("basis", basis)
                for metric, m in d.get("metrics", {}).items():
                    v = m.get("variants", {}).get("treatment", {})
                    if v.get("verdict") in ("better", "worse"):
                        seen_any[eid] = True
                        per_metric.setdefault(metric, set()).add(eid)
                        if metric == "quality" and v["verdict"] == "better":
                            seen_primary[eid] = True
                if d.get("decision", {}).get("decision") == "ship":
                    seen_ship[eid] = True
                if d.get("srm", {}).get("detected"):
                    seen_srm[eid] = True
    finally:
        sc.stop()
        tmp.cleanup()
    n = len(exps)
    return ABResult(n, looks, len(seen_any) / n, len(seen_primary) / n, len(seen_ship) / n, len(seen_srm) / n,
                    {m: len(e) / n for m, e in sorted(per_metric.items())}, basis)


# --- interleaving --------------------------------------------------------------------------------

class _Ctx:
    def __init__(self, config: dict[str, Any]):
        self.config = {"analysis": config}
        self.t = T0

    def now(self) -> float:
        return self.t

    def experiment_snapshot(self) -> dict:
        return {}

    def bound(self, label: str, value: Any, n: int = 1) -> str:
        return str(value)


def _plugin(cls: Any, config: dict[str, Any] | None = None) -> tuple[Any, _Ctx]:
    ctx = _Ctx(config or {})
    plugin = cls()
    plugin.attach(ctx)
    return plugin, ctx


def run_interleaving(*, comparisons: int = 200, outcomes: int = 400, looks: int = 20, preference: float = 0.5,
                     seed: int = 0) -> float:
    """Share of interleaving experiments with a better/worse verdict at any look (run in plugins of
    at most 50 comparisons each: the plugin's own bound)."""
    rng = np.random.default_rng(seed)
    flagged = 0
    per_look = outcomes // looks
    for first in range(0, comparisons, 50):
        plugin, ctx = _plugin(InterleavingPlugin)
        seen: set[str] = set()
        ids = [f"pair-{c}" for c in range(first, min(comparisons, first + 50))]
        for look in range(looks):
            for cid in ids:
                for _ in range(per_look):
                    tie = rng.random() < 0.1
                    winner, loser = ("b", "a") if rng.random() < preference else ("a", "b")
                    plugin.on_evaluation(EvaluationRecord(
                        name=semconv.INTERLEAVING_EVALUATION, source="user", trace_id=None, span_id=None,
                        time_unix_nano=int(ctx.t * 1e9), attributes={
                            semconv.INTERLEAVING_ID: cid, semconv.INTERLEAVING_WINNER: winner,
                            semconv.INTERLEAVING_LOSER: loser, semconv.INTERLEAVING_TIE: bool(tie),
                            semconv.INTERLEAVING_FIRST_SHOWN: winner if rng.random() < 0.5 else loser}))
            ctx.t += 60
            plugin.tick(ctx.t)
            for cid, r in plugin.results["interleaving"].items():
                if r["arms"].get("b", {}).get("verdict") in ("better", "worse"):
                    seen.add(cid)
        assert not plugin.dropped, plugin.dropped
        flagged += len(seen)
    return flagged / comparisons


# --- drift -----------------------------------------------------------------------------------------

def _call_record(service: str, t: float, tokens: int, finish: str) -> CallRecord:
    call = LLMCall(operation="chat", model="m", input_tokens=tokens, finish_reason=finish)
    return CallRecord(call=call, service=service, error=False, end_time_unix_nano=int(t * 1e9))


def run_drift(*, replicates: int = 100, values_per_window: int = 100, shift_sd: float = 0.0,
              new_category_share: float = 0.0, seed: int = 0) -> dict[str, float]:
    """Share of replicates whose drift test flags input_tokens (KS) and finish_reason (chi2).

    One replicate = one service with a reference window (3 x the current window, so 3 x the values)
    and a current window of `values_per_window` values. Numeric: normal(1000, 100) tokens, the
    current window shifted by `shift_sd` sd. Categorical: stop/length/tool_calls at 70/20/10%, the
    current window with `new_category_share` of a new category."""
    rng = np.random.default_rng(seed)
    current = 3600.0
    plugin, ctx = _plugin(DriftPlugin, {"drift": {"reference_seconds": 3 * current, "current_seconds": current,
                                     "slot_seconds": 600, "features": ["input_tokens", "finish_reason"]}})
    now = T0
    ctx.t = now
    summarizer = plugin.summarizer({"drift": {"features": ["input_tokens", "finish_reason"], "slot_seconds": 600}})
    cats = np.array(["stop", "length", "tool_calls"])
    for r in range(replicates):
        service = f"svc-{r}"
        for window, n, shift, new in (("ref", 3 * values_per_window, 0.0, 0.0),
                                      ("cur", values_per_window, shift_sd, new_category_share)):
            start = now - current - 3 * current if window == "ref" else now - current
            length = 3 * current if window == "ref" else current
            ts = start + length * rng.random(n) * 0.999
            tokens = rng.normal(1000 + 100 * shift, 100, n).astype(int)
            finish = cats[rng.choice(3, n, p=[0.7, 0.2, 0.1])]
            if new:
                finish = np.where(rng.random(n) < new, "content_filter", finish)
            for t, tok, f in zip(ts, tokens, finish):
                summarizer.add(_call_record(service, float(t), int(tok), str(f)))
        plugin.on_call_summary(summarizer.result())
    plugin.tick(now)
    flagged = {"ks": set(), "chi2": set()}
    for service, feature, res in plugin.results["drift"]:
        if res.method in flagged and res.detected:
            flagged[res.method].add(service)
    return {m: len(s) / replicates for m, s in flagged.items()}


# --- concept drift ---------------------------------------------------------------------------------

def run_concept_drift(*, replicates: int = 100, values_per_window: int = 400, degrade: float = 0.0,
                      mix_shift: bool = True, by_length: bool = False, seed: int = 0) -> float:
    """Share of replicates (services) with a concept-drift alarm on any segment.

    Three topics with different judge-score means (4.2, 3.6, 3.0; sd 0.8). Reference mix 50/30/20;
    the current window's mix is 20/30/50 when `mix_shift` (the overall mean falls by 0.36 with no
    concept change), and topic "billing" loses `degrade` points of quality. `by_length`: the
    segments are the input-length quartiles (topics differ in prompt length) instead of the topic
    attribute."""
    rng = np.random.default_rng(seed)
    current = 3600.0
    attr = None if by_length else "app.topic"
    plugin, ctx = _plugin(DriftPlugin, {"drift": {"reference_seconds": 3 * current, "current_seconds": current,
                                     "slot_seconds": 600, "features": []},
                           "concept_drift": {"segment_attribute": attr}})
    now = T0
    ctx.t = now
    topics = ["shipping", "returns", "billing"]
    means = {"shipping": 4.2, "returns": 3.6, "billing": 3.0}
    lengths = {"shipping": (50, 150), "returns": (150, 400), "billing": (400, 1200)}
    seq = 0
    flagged = set()
    for r in range(replicates):
        service = f"svc-{r}"
        for window in ("ref", "cur"):
            n = 3 * values_per_window if window == "ref" else values_per_window
            mix = [0.5, 0.3, 0.2] if window == "ref" or not mix_shift else [0.2, 0.3, 0.5]
            start = now - 4 * current if window == "ref" else now - current
            length = 3 * current if window == "ref" else current
            for i in range(n):
                seq += 1
                topic = topics[rng.choice(3, p=mix)]
                t = start + length * rng.random() * 0.999
                trace, span = f"{seq:032x}", f"{seq:016x}"
                lo, hi = lengths[topic]
                call = LLMCall(operation="chat", model="m", prompt="x" * int(rng.integers(lo, hi)),
                               trace_id=trace, span_id=span)
                plugin.on_call(CallRecord(call=call, service=service, error=False, end_time_unix_nano=int(t * 1e9),
                                          attributes={"app.topic": topic}))
                score = means[topic] - (degrade if window == "cur" and topic == "billing" else 0.0) \
                    + rng.normal(0, 0.8)
                plugin.on_evaluation(EvaluationRecord(name="quality", source="llm_judge", trace_id=trace, span_id=span,
                                                      time_unix_nano=int(t * 1e9), score=float(score)))
    plugin.tick(now)
    for c in plugin.results["concept_drift"]:
        if any(seg.get("detected") for seg in c["segments"]):
            flagged.add(c["service"])
    return len(flagged) / replicates
