"""Layer-1 checks: cheap, deterministic tests run on 100% of LLM spans that carry output text.

A check has a name, a category (`safety` or `quality`) and a function. Built-in checks:

| name | category | fails when |
|---|---|---|
| empty_output | quality | the output is empty or whitespace |
| output_too_short | quality | 0 < stripped length < checks.min_output_chars |
| output_too_long | quality | length > checks.max_output_chars |
| refusal | quality | a refusal phrase occurs in the first 400 characters |
| invalid_json | quality | JSON was requested (gen_ai.output.type=json or response_format json_*) and the output does not parse |
| pii | safety | otel_llm_eval.pii.find_pii finds an email, card (Luhn) or phone number |
| toxicity | safety | a word or phrase of the toxicity list occurs (whole words, case-insensitive) |
| finish_reason_<reason> | quality | the finish reason is in checks.bad_finish_reasons (e.g. length) |
| content_filter | safety | the finish reason is content_filter |
| error_status | quality | the span's status is ERROR or error.type is set (runs on every LLM span) |

User checks (config `checks.custom`: `{name, function: "module:function", category}`) are plain
functions `fn(call: LLMCall, attributes: Mapping[str, Any]) -> bool` returning True when the
output FAILS. They run on the ingest thread: keep them fast; exceptions are caught and counted
(`CheckRunner.errors`) and never fail the span.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable, Mapping

from ..._imports import load_callable
from ...pii import find_pii
from ...semconv import LLMCall

log = logging.getLogger(__name__)

SAFETY = "safety"
QUALITY = "quality"

#: Span attributes that say the caller asked for JSON output.
JSON_REQUEST_ATTRIBUTES = (
    "gen_ai.output.type",
    "gen_ai.openai.request.response_format",
    "gen_ai.request.response_format",
    "llm.request.response_format",
)

REFUSAL_WINDOW_CHARS = 400


@dataclass(frozen=True)
class Check:
    name: str
    category: str
    #: fn(call, attributes, error) -> True when the check failed
    fn: Callable[[LLMCall, Mapping[str, Any], bool], bool]
    needs_text: bool = True


def _read_list(filename: str | None, shipped: str) -> list[str]:
    if filename:
        with open(filename, encoding="utf-8") as f:
            text = f.read()
    else:
        text = resources.files("otel_llm_eval.sidecar").joinpath(f"data/{shipped}").read_text("utf-8")
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip().lower()
        if line:
            out.append(line)
    return out


def _normalize_quotes(text: str) -> str:
    return text.replace("\u2019", "'").replace("\u2018", "'")


# Tokenizing on bytes with a 256-entry translate table is ~4x faster than a regex split: ASCII
# letters are lowercased, digits and apostrophes kept, other ASCII becomes a space, non-ASCII
# bytes (UTF-8 multibyte words) pass through unchanged.
_KEEP = set(b"abcdefghijklmnopqrstuvwxyz0123456789'")
_TOKEN_TABLE = bytes(
    c if c in _KEEP else c + 32 if 65 <= c <= 90 else c if c >= 128 else 32 for c in range(256)
)
_DIGITS = b"0123456789"


def make_toxicity(words: list[str]) -> Callable[[str], bool]:
    """A matcher for whole words (set lookup on tokens) and phrases (on the joined tokens)."""
    single = frozenset(w.encode() for w in words if " " not in w)
    phrases: dict[bytes, list[bytes]] = {}
    for w in words:
        parts = w.encode().translate(_TOKEN_TABLE).split()
        if len(parts) > 1:
            phrases.setdefault(parts[0], []).append(b" " + b" ".join(parts) + b" ")

    def matches(text: str) -> bool:
        tokens = _normalize_quotes(text).encode("utf-8", "replace").translate(_TOKEN_TABLE).split()
        present = set(tokens)
        if not single.isdisjoint(present):
            return True
        candidates = [p for first in phrases.keys() & present for p in phrases[first]]
        if candidates:
            joined = b" " + b" ".join(tokens) + b" "
            return any(p in joined for p in candidates)
        return False

    return matches


def may_contain_pii(text: str) -> bool:
    """Cheap necessary condition for find_pii: an '@' (email) or >= 9 digits (phone, card)."""
    if "@" in text:
        return True
    b = text.encode("utf-8", "replace")
    return len(b) - len(b.translate(None, _DIGITS)) >= 9


def make_refusal(phrases: list[str]) -> Callable[[str], bool]:
    phrases_t = tuple(_normalize_quotes(p.lower()) for p in phrases)

    def matches(text: str) -> bool:
        head = _normalize_quotes(text[:REFUSAL_WINDOW_CHARS].lower())
        return any(p in head for p in phrases_t)

    return matches


def json_requested(attributes: Mapping[str, Any]) -> bool:
    for key in JSON_REQUEST_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str) and value.lower() in ("json", "json_object", "json_schema"):
            return True
    return False


def invalid_json(text: str) -> bool:
    s = text.strip()
    if s.startswith("```"):  # models often fence JSON; the payload inside is what apps parse
        s = s.strip("`")
        if s[:4].lower() == "json":
            s = s[4:]
    try:
        json.loads(s)
        return False
    except ValueError:
        return True


def load_function(spec: str) -> Callable[..., Any]:
    """Import `module:function`; ValueError with the spec in the message when it cannot."""
    return load_callable(spec, "check function")


def build_checks(cfg: Mapping[str, Any]) -> list[Check]:
    """The enabled built-in checks plus custom ones, from the `checks` config section."""
    enabled = set(cfg.get("enabled") or ())
    min_chars = int(cfg.get("min_output_chars", 2))
    max_chars = int(cfg.get("max_output_chars", 20_000))
    kinds = tuple(cfg.get("pii_kinds") or ("email", "card", "phone"))
    checks: list[Check] = []

    def add(name: str, category: str, fn: Callable[[LLMCall, Mapping[str, Any], bool], bool],
            needs_text: bool = True) -> None:
        if name in enabled:
            checks.append(Check(name, category, fn, needs_text))

    add("empty_output", QUALITY, lambda c, a, e: not c.completion.strip())
    add("output_too_short", QUALITY, lambda c, a, e: 0 < len(c.completion.strip()) < min_chars)
    add("output_too_long", QUALITY, lambda c, a, e: len(c.completion) > max_chars)
    refusal = make_refusal(cfg.get("refusal_phrases") or _read_list(None, "refusal_phrases.txt"))
    add("refusal", QUALITY, lambda c, a, e: refusal(c.completion))
    add("invalid_json", QUALITY, lambda c, a, e: json_requested(a) and invalid_json(c.completion))
    add("pii", SAFETY, lambda c, a, e: may_contain_pii(c.completion) and bool(find_pii(c.completion, kinds)))
    words = _read_list(cfg.get("toxicity_words_file"), "toxicity_words.txt")
    words += [str(w).lower() for w in cfg.get("extra_toxicity_words") or ()]
    toxic = make_toxicity(words)
    add("toxicity", SAFETY, lambda c, a, e: toxic(c.completion))
    if "bad_finish_reason" in enabled:
        for reason in cfg.get("bad_finish_reasons") or ():
            reason = str(reason)
            name = "content_filter" if reason == "content_filter" else f"finish_reason_{reason}"
            category = SAFETY if reason == "content_filter" else QUALITY
            checks.append(Check(name, category, (lambda r: lambda c, a, e: c.finish_reason == r)(reason),
                                needs_text=False))
    add("error_status", QUALITY, lambda c, a, e: e, needs_text=False)
    for entry in cfg.get("custom") or ():
        if not isinstance(entry, Mapping) or "name" not in entry or "function" not in entry:
            raise ValueError(f"checks.custom entries need name and function, got {entry!r}")
        category = entry.get("category", QUALITY)
        if category not in (SAFETY, QUALITY):
            raise ValueError(f"check {entry['name']!r}: category must be safety or quality")
        user_fn = load_function(str(entry["function"]))
        checks.append(Check(str(entry["name"]), category,
                            (lambda f: lambda c, a, e: bool(f(c, a)))(user_fn),
                            bool(entry.get("needs_text", True))))
    return checks


class CheckRunner:
    """Runs every check on one call. Called on the ingest thread only (not thread-safe)."""

    def __init__(self, checks: list[Check]):
        self.checks = checks
        self._textless = [c for c in checks if not c.needs_text]  # what runs on calls without text
        self.errors = 0  # exceptions raised by checks (never propagated)

    def run(self, call: LLMCall, attributes: Mapping[str, Any], error: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(names of failed checks, the subset in category safety)."""
        failed: list[str] = []
        safety: list[str] = []
        for check in self.checks if isinstance(call.completion, str) else self._textless:
            try:
                bad = check.fn(call, attributes, error)
            except Exception:  # a user check must never break ingest
                self.errors += 1
                if self.errors <= 3:
                    log.exception("check %s raised; counted as passed", check.name)
                continue
            if bad:
                failed.append(check.name)
                if check.category == SAFETY:
                    safety.append(check.name)
        return tuple(failed), tuple(safety)

    def run_text(self, call: LLMCall) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Only the checks that need text (for text joined after the span's other checks ran)."""
        if not isinstance(call.completion, str):
            return (), ()
        textless, self.checks = self.checks, [c for c in self.checks if c.needs_text]
        try:
            return self.run(call, {}, False)
        finally:
            self.checks = textless
