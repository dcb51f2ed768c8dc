"""`otel-llm-eval demo`: the whole loop on simulated traffic, with a report read from the sidecar.

Starts a sidecar in this process (free loopback port, temporary SQLite state, short analysis
interval) and, when Debian's `prometheus` and `prometheus-alertmanager` are installed, a real
Prometheus scraping it with the generated alert rules (time-compressed) and a real Alertmanager
routing notifications to a webhook in the demo. A simulated support bot uses the real
`LLMEvalSpanProcessor` and the real OTLP exporter against the sidecar. After the traffic, simulated
reviewers label the review queue over the sidecar's HTTP API, and the offline loop (dataset export,
regression gate, benchmark record) runs with the real commands. The report is built only from the
sidecar's and Prometheus' answers.

`--duration` scales the whole story (drift at 45%, the quality drop at 72% of it) and the
sidecar's windows with it; `--seed` makes the traffic repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any

from . import simulation as sim

DEFAULT_DURATION_SECONDS = 60.0
DEFAULT_SEED = 7
DEFAULT_RATE = 30.0
#: Share of calls the in-app heuristic judge scores.
JUDGE_SAMPLE_RATE = 0.6
#: Unbiased random share of calls sampled into the human review queue (on top of error-triggered
#: and low-score items).
REVIEW_RANDOM_RATE = 0.05
#: Issue the reviewers can pick besides the page's defaults.
REVIEW_EXTRA_ISSUES = ("Refusal",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION_SECONDS,
                        help="seconds of simulated traffic; the whole story scales with it (default 60, min 15)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the simulated traffic (default 7)")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE,
                        help="simulated requests per second (default 30)")
    parser.add_argument("--no-stack", dest="stack", action="store_false",
                        help="skip the alerts section even when Prometheus and Alertmanager are installed")
    parser.add_argument("--stack", dest="stack", action="store_true", help=argparse.SUPPRESS)  # the default now
    parser.add_argument("--report-json", metavar="PATH", help="also write the report as JSON to PATH")
    parser.add_argument("--hold", type=float, default=0.0, metavar="SECONDS",
                        help="keep the sidecar running this long after the report (to explore its endpoints; "
                             "Ctrl-C ends it)")
    parser.add_argument("--state-dir", metavar="DIR",
                        help="directory for the sidecar's SQLite state (default: a temporary one, removed at exit)")
    parser.add_argument("--quiet", action="store_true", help="no live progress line")
    parser.set_defaults(stack=True)


# ---------------------------------------------------------------- time scaling

class Timeline:
    """Every duration of the demo, derived from --duration (so --duration 20 still tells the story)."""

    def __init__(self, duration_seconds: float) -> None:
        d = self.duration_seconds = float(duration_seconds)
        #: anomaly slot length (the sidecar needs whole seconds); ~30 slots per run
        self.slot_seconds = max(1, int(round(d / 30.0)))
        #: slots of history an anomaly verdict needs: the default 12, fewer when a short run has
        #: fewer whole slots before the quality drop
        self.anomaly_min_history = max(5, min(12, int(sim.INCIDENT_AT * d / self.slot_seconds) - 3))
        #: analysis pass interval: at least one pass per slot
        self.analysis_interval_seconds = max(0.5, min(2.0, self.slot_seconds / 2.0))
        #: drift: current window = last 25% of the run (JS distance on a few hundred calls is noisy;
        #: a shorter window raises false alarms before the injection, a longer one delays detection)
        self.drift_current_seconds = round(0.25 * d, 2)
        #: the reference reaches back to the start, so it keeps baseline traffic to the end
        self.drift_reference_seconds = d
        self.drift_min_samples = max(60, int(d * 5))
        #: /metrics poll interval (progress line, detection times, alert evaluation)
        self.scrape_interval_seconds = 1.0 if d >= 30 else 0.5
        #: production durations are divided by this in the time-compressed alert rules
        #: (60 s run: 1 h -> 30 s, 5 m -> 2.5 s, for: 15 m -> 7.5 s)
        self.alert_timescale = round(7200.0 / d)
        #: bandit: apps refresh their allocation this often
        self.bandit_refresh_seconds = max(1.0, d / 30.0)
        #: human review: candidates collect in reservoirs per window (production: 60 s); a dozen
        #: windows per run, so the queue holds items from the whole story
        self.review_window_seconds = max(1.0, round(d / 12.0, 1))


def sidecar_overrides(timeline: Timeline, db_path: str) -> dict[str, Any]:
    """Demo-specific sidecar config: loopback, temporary state, short intervals and windows."""
    d = timeline
    return {
        "server": {"host": "127.0.0.1", "port": 0},
        "state": {"db_path": db_path, "flush_interval_seconds": 0.5},
        "analysis": {
            "interval_seconds": d.analysis_interval_seconds,
            "min_samples": 30,
            # the simulated effects are large; a 25% relative MDE lets verdicts arrive within a minute
            "mde": 0.25,
            "drift": {
                "reference_seconds": d.drift_reference_seconds,
                "current_seconds": d.drift_current_seconds,
                "slot_seconds": d.slot_seconds,
                "min_samples": d.drift_min_samples,
                # inputs and judge scores only: the bandit moving traffic between models changes
                # latency and cost for real, which would hide the injected drift in the story
                "features": ["input_length", "input_tokens", "judge_score"],
                "attributes": ["app.topic"],
            },
            "anomaly": {"slot_seconds": d.slot_seconds, "min_history": d.anomaly_min_history,
                        "history_slots": 40, "min_slot_samples": 5},
            "bandits": {"ids": [sim.BANDIT_ID], "reward": "thumbs_up", "algorithm": "thompson",
                        "burn_in": 20, "floor": 0.05},
        },
        "review": {
            "issues": list(REVIEW_EXTRA_ISSUES),
            "sampling": {"window_seconds": d.review_window_seconds, "random_rate": REVIEW_RANDOM_RATE,
                         "reservoir_size": 10},
        },
    }


# ---------------------------------------------------------------- helpers

def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
        return resp.read()


def _get_json(url: str) -> Any:
    try:
        return json.loads(_get(url))
    except Exception as e:  # report what went wrong instead of dying
        return {"error": f"{type(e).__name__}: {e}"}


class Poller(threading.Thread):
    """Scrapes the sidecar's /metrics every interval: the progress line and detection times."""

    def __init__(self, url: str, t0: float, interval: float) -> None:
        super().__init__(name="demo-metrics-poller", daemon=True)
        self.url, self.t0, self.interval = url, t0, interval
        self.stop_event = threading.Event()
        self.last = None
        #: (feature, method) / (metric, method) -> [(t, detected)] from every scrape
        self.drift: dict[tuple[str, str], list[tuple[float, bool]]] = {}
        self.anomaly: dict[tuple[str, str], list[tuple[float, bool]]] = {}
        self.errors = 0
        self.lock = threading.Lock()

    def scrape_once(self):
        from .report import Scrape

        t = time.monotonic() - self.t0
        try:
            text = _get(self.url + "/metrics").decode("utf-8")
        except Exception:
            self.errors += 1
            return None
        scrape = Scrape.parse(t, text)
        with self.lock:
            self.last = scrape
            for labels, v in scrape.select("llm_eval_drift_detected"):
                self.drift.setdefault((labels.get("feature", ""), labels.get("method", "")), []).append((t, v == 1))
            for labels, v in scrape.select("llm_eval_anomaly_detected"):
                self.anomaly.setdefault((labels.get("metric", ""), labels.get("method", "")), []).append((t, v == 1))
        return scrape

    def run(self) -> None:
        while not self.stop_event.wait(self.interval):
            self.scrape_once()


def _progress(app, poller, t: float, duration: float, phase: str) -> str:
    last = poller.last
    judged = last.total("llm_eval_judge_sampled_total") if last else 0
    seen = last.total("llm_requests_total") if last else 0
    c = app.counters
    return (f"[{t:5.1f}s/{duration:.0f}s] requests {c.requests} (LLM calls {c.llm_calls}, sidecar saw "
            f"{seen:.0f}) · feedback {c.feedback} · judge calls {judged:.0f} · phase {phase:<8} · "
            f"{max(0.0, duration - t):4.0f}s left")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sidecar(overrides: dict[str, Any]):
    """The sidecar core, in this process, on a free loopback port."""
    from otel_llm_eval.sidecar.server import start_in_thread

    return start_in_thread(overrides, host="127.0.0.1", port=0, environ={})


# ---------------------------------------------------------------- main

def run(args: argparse.Namespace) -> int:
    if args.duration < 15:
        print("otel-llm-eval demo: --duration must be at least 15 seconds (the story needs room for "
              "a baseline, a drift and a quality drop)", file=sys.stderr)
        return 2
    if args.rate <= 0 or args.rate > 500:
        print("otel-llm-eval demo: --rate must be in (0, 500] requests per second", file=sys.stderr)
        return 2
    try:
        import prometheus_client  # noqa: F401
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: F401
    except ImportError as e:
        print(f"otel-llm-eval demo needs the full install: pip install 'otel-llm-eval[all]' ({e})",
              file=sys.stderr)
        return 2

    from . import alerts as demo_alerts
    from . import offline as demo_offline
    from . import review as demo_review
    from . import stack as demo_stack
    from .app import SimulatedApp
    from .report import (bandit_from_metrics, cost_section, experiment_from_metrics, interleaving_from_metrics,
                         render, review_section, traffic_from_metrics)

    timeline = Timeline(args.duration)
    story = sim.Story(args.seed, timeline.duration_seconds, args.rate)
    own_state = args.state_dir is None
    state_dir = tempfile.mkdtemp(prefix="otel-llm-eval-demo-") if own_state else args.state_dir
    os.makedirs(state_dir, exist_ok=True)
    db_path = os.path.join(state_dir, "demo.db")

    print(f"otel-llm-eval demo: SIMULATED traffic for {timeline.duration_seconds:.0f} s "
          f"(seed {args.seed}, ~{args.rate:g} requests/s). Nothing leaves this machine.")
    sidecar = start_sidecar(sidecar_overrides(timeline, db_path))
    stack = None
    app = None
    app_closed = False
    poller = None
    try:
        print(f"sidecar listening on {sidecar.url} (state {db_path})")
        rules = demo_alerts.generated_rule_groups()
        compressed = (demo_alerts.compressed_rule_groups(rules, timeline.alert_timescale,
                                                         timeline.scrape_interval_seconds) if rules else None)
        if not args.stack:
            stack = demo_stack.Stack.skipped("skipped (--no-stack)")
        else:
            stack = demo_stack.start(sidecar.url, compressed, timeline, state_dir)
        print("alerts: " + stack.status_line())

        t0 = time.monotonic()
        if stack.webhook is not None:
            stack.webhook.t0 = t0  # notification times on the demo's clock
        poller = Poller(sidecar.url, t0, timeline.scrape_interval_seconds)
        app = SimulatedApp(sidecar.url, story, judge_sample_rate=JUDGE_SAMPLE_RATE,
                           bandit_refresh_seconds=timeline.bandit_refresh_seconds)
        poller.start()
        interactive = sys.stdout.isatty() and not args.quiet
        next_progress = 0.0
        progress_every = 0.5 if interactive else 10.0
        for req in story.requests():
            delay = req.offset_seconds - (time.monotonic() - t0)
            if delay > 0:
                time.sleep(delay)
            app.handle(req)
            now = time.monotonic() - t0
            if not args.quiet and now >= next_progress:
                line = _progress(app, poller, now, timeline.duration_seconds, req.phase)
                print(("\r" + line) if interactive else line, end="" if interactive else "\n", flush=True)
                next_progress = now + progress_every
        if interactive:
            print()
        traffic_seconds = time.monotonic() - t0
        print("traffic done; flushing the exporter and waiting for the sidecar to count every call ...")
        app_closed = True
        app.shutdown()
        deadline = time.monotonic() + 20  # bounded: the sidecar counted every LLM call we sent
        while time.monotonic() < deadline:
            scrape = poller.scrape_once()
            if scrape and scrape.total("llm_requests_total", service=sim.SERVICE) >= app.counters.llm_calls:
                break
            time.sleep(0.25)

        print("human review: simulated reviewers label the review queue through the sidecar's API ...")
        review = demo_review.label_queue(sidecar.url, args.seed)
        print("offline loop: dataset export, regression gate, benchmark record ...")
        offline = demo_offline.run_loop(sidecar.url, os.path.join(state_dir, "offline"))

        time.sleep(2 * timeline.analysis_interval_seconds + 0.5)  # two analysis passes over everything
        poller.stop_event.set()
        poller.join(timeout=5)
        final = poller.scrape_once() or poller.last
        deadline = time.monotonic() + 10  # bounded: the offline loop's pushes are on /metrics
        while time.monotonic() < deadline and not _pushes_visible(final, offline):
            time.sleep(0.25)
            final = poller.scrape_once() or final
        t_end = time.monotonic() - t0
        if stack.running:
            stack.wait_caught_up(time.time())

        exp_json = _get_json(f"{sidecar.url}/v1/experiments/{sim.EXPERIMENT_ID}")
        bandit_json = _get_json(f"{sidecar.url}/v1/bandits/{sim.BANDIT_ID}")
        benchmarks_json = _get_json(f"{sidecar.url}/v1/benchmarks")
        alerts_section = stack.alerts_section(timeline.alert_timescale)
        traffic = traffic_from_metrics(final, sim.SERVICE)

        report = {
            "simulated": True,
            "demo": {"seed": args.seed, "duration_seconds": timeline.duration_seconds,
                     "traffic_seconds": round(traffic_seconds, 2),
                     "requests_sent": app.counters.requests, "llm_calls_sent": app.counters.llm_calls,
                     "feedback_sent": app.counters.feedback, "pairwise_sent": app.counters.pairwise,
                     "ended_at_seconds": round(t_end, 2)},
            "story": {"drift_at_seconds": story.drift_at_seconds,
                      "incident_at_seconds": story.incident_at_seconds,
                      "timeline": vars(timeline)},
            "sidecar": {"url": sidecar.url, "db_path": db_path},
            "traffic": traffic,
            "experiment": {
                "id": sim.EXPERIMENT_ID, "control": sim.CONTROL, "treatment": sim.TREATMENT,
                "metrics": experiment_from_metrics(final, sim.EXPERIMENT_ID),
                "srm_p_value": final.value("llm_eval_ab_srm_p_value", experiment=sim.EXPERIMENT_ID),
                "json": exp_json,
            },
            "bandit": {"id": sim.BANDIT_ID, "arms": bandit_from_metrics(final, sim.BANDIT_ID),
                       "json": bandit_json},
            "interleaving": {"id": sim.PAIRWISE_ID, **interleaving_from_metrics(final, sim.PAIRWISE_ID)},
            "drift": {"injected_at_seconds": story.drift_at_seconds,
                      "detected": _detections(poller.drift, story.drift_at_seconds, "feature", final,
                                              "llm_eval_drift_score")},
            "anomaly": {"injected_at_seconds": story.incident_at_seconds,
                        "detected": _detections(poller.anomaly, story.incident_at_seconds, "metric", final,
                                                "llm_eval_anomaly_score")},
            "alerts": alerts_section,
            "review": review_section(review, final, sim.SERVICE),
            "offline": {**offline, "benchmark_scores": {
                labels.get("model", ""): v for labels, v in
                final.select("llm_benchmark_score", benchmark=demo_offline.BENCHMARK)},
                "regression_runs": {labels.get("status", ""): v for labels, v in
                                    final.select("llm_eval_regression_runs_total")},
                "benchmarks_json": benchmarks_json},
        }
        report["cost"] = cost_section(report, judge_sample_rate=JUDGE_SAMPLE_RATE,
                                      review_random_rate=REVIEW_RANDOM_RATE)
        print(render(report), end="")
        if args.report_json:
            with open(args.report_json, "w", encoding="utf-8") as f:
                json.dump(report, f, indent=2, sort_keys=True, default=str)
            print(f"report written to {args.report_json}")
        if args.hold > 0:
            print(f"sidecar stays up for {args.hold:.0f} s at {sidecar.url} (Ctrl-C or SIGTERM ends it) ...",
                  flush=True)
            _hold(args.hold)
        return 0
    finally:
        if app is not None and not app_closed:  # interrupted mid-traffic: flush briefly, sidecar still up
            app.shutdown(timeout_seconds=3)
        if poller is not None:
            poller.stop_event.set()
        if stack is not None:
            stack.stop()
        sidecar.stop()
        if own_state:
            shutil.rmtree(state_dir, ignore_errors=True)


def _pushes_visible(scrape: Any, offline: dict[str, Any]) -> bool:
    """Whether the sidecar publishes what the offline loop pushed (benchmarks, the gate's run)."""
    from .offline import BENCHMARK

    if scrape is None:
        return False
    recorded = sum(1 for s in offline.get("steps", []) if s["command"].startswith("otel-llm-eval bench record")
                   and s["exit_code"] == 0)
    gate_pushed = "gate" in offline
    return (len(scrape.select("llm_benchmark_score", benchmark=BENCHMARK)) >= recorded
            and (not gate_pushed or scrape.total("llm_eval_regression_runs_total") >= 1))


def _hold(seconds: float) -> None:
    """Sleep up to `seconds`; SIGINT or SIGTERM end it early (then the caller cleans up, exit 0)."""
    import signal

    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait(seconds)
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _detections(timelines: dict[tuple[str, str], list[tuple[float, bool]]], injected_at: float,
                key_name: str, final: Any, score_metric: str) -> list[dict[str, Any]]:
    """Per (feature|metric, method) that was ever detected: when first after the injection, how
    often before it (false alarms), and since when it has been detected without a break."""
    rows = []
    for (key, method), points in timelines.items():
        hits = [t for t, hit in points if hit]
        if not hits:
            continue
        after = [t for t in hits if t >= injected_at]
        since = None
        for t, hit in reversed(points):
            if not hit:
                break
            since = t
        rows.append({
            key_name: key, "method": method,
            "first_detected_at": round(after[0], 2) if after else None,
            "detected_since": round(since, 2) if since is not None else None,
            "detections_before_injection": sum(1 for t in hits if t < injected_at),
            "scrapes": len(points),
            "score": final.value(score_metric, service=sim.SERVICE, **{key_name: key, "method": method}),
        })
    rows.sort(key=lambda r: (r["first_detected_at"] is None, r["first_detected_at"] or 0.0, r[key_name]))
    return rows
