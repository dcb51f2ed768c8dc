"""Things the app fetches from the sidecar: recommended judge sample rates and bandit allocations.

A `Poller` fetches one JSON document on a daemon thread every `refresh_seconds` and keeps the last
good one; readers only read that cached value (O(1), never blocking, never raising). When the
sidecar is unreachable the last known value stays in use (or the caller's fallback when there
never was one). Standard library only (urllib): no numpy/scipy/web framework on the app path.

`RemoteJudgeRates(sidecar_url)` is a `sample_rate_provider` for `LLMEvalSpanProcessor`:
`provider(experiment, variant) -> rate | None` from `GET /v1/judge-rates`; None (unknown
experiment, nothing fetched yet) makes the processor use its configured rate.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.error
import urllib.request
from typing import Any, Callable

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 1 << 20


class Poller:
    """Fetch `url` every `refresh_seconds` on a daemon thread; `value` is the last good JSON.

    Counters: `fetches_ok`, `fetches_failed`, `fetches_not_found` (404: no data yet). `refresh()` fetches once on the caller's thread
    (blocking up to `timeout_seconds`; returns success). `close()` stops the thread. Restarts its
    thread after a fork. Never raises from the background thread.
    """

    def __init__(self, url: str, *, refresh_seconds: float = 30.0, timeout_seconds: float = 2.0,
                 token: str | None = None, start: bool = True,
                 on_value: Callable[[Any], None] | None = None) -> None:
        if refresh_seconds <= 0 or timeout_seconds <= 0:
            raise ValueError("refresh_seconds and timeout_seconds must be > 0")
        self.url = url
        self.refresh_seconds = float(refresh_seconds)
        self.timeout_seconds = float(timeout_seconds)
        self.token = token
        self.value: Any = None
        self.fetched_at: float | None = None
        self.fetches_ok = 0
        self.fetches_failed = 0
        self.fetches_not_found = 0
        self._on_value = on_value
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._logged = False
        if start:
            self._start()

    def _start(self) -> None:
        self._pid = os.getpid()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="otel-llm-eval-poller", daemon=True)
        self._thread.start()

    def ensure_running(self) -> None:
        """Restart the thread in a forked child (threads do not survive fork)."""
        if self._thread is not None and self._pid != os.getpid():
            self._start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.refresh_seconds)

    def refresh(self) -> bool:
        import time
        try:
            req = urllib.request.Request(self.url, headers={"Accept": "application/json"})
            if self.token:
                req.add_header("Authorization", f"Bearer {self.token}")
            with urllib.request.urlopen(req, timeout=self.timeout_seconds) as resp:
                body = resp.read(MAX_RESPONSE_BYTES + 1)
            if len(body) > MAX_RESPONSE_BYTES:
                raise ValueError("response larger than 1 MiB")
            value = json.loads(body)
            if self._on_value is not None:
                self._on_value(value)
            self.value = value
            self.fetched_at = time.time()
            self.fetches_ok += 1
            return True
        except urllib.error.HTTPError as e:
            if e.code == 404:  # the sidecar has no data for it yet: keep the fallback, not an error
                self.fetches_not_found += 1
                return False
            self._fail(e)
        except Exception as e:  # unreachable, timeout, bad JSON: keep the last known value
            self._fail(e)
        return False

    def _fail(self, exc: BaseException) -> None:
        self.fetches_failed += 1
        if not self._logged:
            self._logged = True
            log.warning("otel-llm-eval: cannot fetch %s (%s); using the last known value", self.url, exc)

    def close(self) -> None:
        self._stop.set()


class RemoteJudgeRates:
    """`sample_rate_provider` that follows the sidecar's recommended judge sample rates.

    `RemoteJudgeRates("http://127.0.0.1:9318")(experiment, variant)` -> the rate the sidecar
    computed for that variant (reaches the experiment's target sample size by its planned end at
    the least judge cost), or None to fall back to the processor's configured rate. O(1).
    """

    def __init__(self, sidecar_url: str, *, refresh_seconds: float = 60.0, timeout_seconds: float = 2.0,
                 token: str | None = None, start: bool = True) -> None:
        self._rates: dict[str, dict[str, float]] = {}
        self.poller = Poller(sidecar_url.rstrip("/") + "/v1/judge-rates", refresh_seconds=refresh_seconds,
                             timeout_seconds=timeout_seconds, token=token, start=start, on_value=self._parse)

    def _parse(self, value: Any) -> None:
        exps = value.get("experiments") if isinstance(value, dict) else None
        if not isinstance(exps, dict):
            raise ValueError("no 'experiments' object in the judge-rates response")
        rates: dict[str, dict[str, float]] = {}
        for exp, by_variant in list(exps.items())[:1000]:
            if isinstance(by_variant, dict):
                rates[str(exp)] = {str(v): min(1.0, max(0.0, float(r))) for v, r in by_variant.items()
                                   if isinstance(r, (int, float)) and not isinstance(r, bool) and r == r}
        self._rates = rates  # swap: readers see the old or the new dict

    def __call__(self, experiment: str | None, variant: str | None) -> float | None:
        self.poller.ensure_running()
        if experiment is None or variant is None:
            return None
        return self._rates.get(experiment, {}).get(variant)

    def rates(self) -> dict[str, dict[str, float]]:
        return {e: dict(v) for e, v in self._rates.items()}

    def refresh(self) -> bool:
        return self.poller.refresh()

    def close(self) -> None:
        self.poller.close()
