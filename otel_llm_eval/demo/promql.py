"""A small PromQL evaluator over scraped samples, for the demo's "which alerts would fire".

Supports what the generated rules in alerts/ use: vector selectors with `= != =~ !~` matchers,
range selectors, `offset`, `rate`/`increase`/`delta` (with Prometheus' extrapolation),
`histogram_quantile`, aggregations (`sum max min avg count` with `by`/`without`), arithmetic and
comparison operators (vector/scalar and one-to-one vector/vector, `bool`, `on`/`ignoring`), and the
set operators `and or unless`. Anything else raises `PromQLError` naming the construct, so the demo
can say "not evaluated" instead of guessing. It is not a Prometheus: with `--stack` the demo runs a
real one.

Pure: `History` holds samples, `evaluate(expr, history, t)` returns {labels: value}.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterable

Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs, __name__ included


class PromQLError(ValueError):
    """The expression uses something this evaluator does not support, or does not parse."""


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def parse_duration(text: str) -> float:
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            raise PromQLError(f"bad duration {text!r}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        raise PromQLError(f"bad duration {text!r}")
    return total


def format_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and abs(seconds / size - round(seconds / size)) < 1e-9:
            return f"{int(round(seconds / size))}{unit}"
    return f"{int(round(seconds * 1000))}ms"


# ---------------------------------------------------------------- tokenizer

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<bdur>(?:\d+(?:ms|s|m|h|d|w|y))+(?![a-zA-Z0-9_:]))
  | (?P<num>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?(?![a-zA-Z_:]))
  | (?P<dur>\[[^\]]+\])
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<op>==|!=|=~|!~|<=|>=|<|>|\+|-|\*|/|%|\^|=|\(|\)|\{|\}|,)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
""", re.VERBOSE)


def _tokenize(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise PromQLError(f"cannot parse {expr[pos:pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind != "ws":
            out.append((kind, m.group(kind)))
    out.append(("end", ""))
    return out


# ---------------------------------------------------------------- AST

@dataclass
class Number:
    value: float


@dataclass
class Selector:
    name: str | None
    matchers: list[tuple[str, str, str]]
    range_seconds: float | None = None
    offset_seconds: float = 0.0


@dataclass
class Call:
    fn: str
    args: list


@dataclass
class Agg:
    op: str
    expr: object
    by: list[str] | None = None
    without: list[str] | None = None


@dataclass
class Binary:
    op: str
    lhs: object
    rhs: object
    bool_mod: bool = False
    on: list[str] | None = None
    ignoring: list[str] | None = None


AGGREGATIONS = {"sum", "max", "min", "avg", "count"}
FUNCTIONS = {"rate", "increase", "delta", "histogram_quantile", "abs", "vector", "scalar"}
# precedence, low to high
_PRECEDENCE = [("or",), ("and", "unless"), ("==", "!=", "<=", ">=", "<", ">"), ("+", "-"), ("*", "/", "%")]


class _Parser:
    def __init__(self, expr: str) -> None:
        self.toks = _tokenize(expr)
        self.i = 0

    def peek(self) -> tuple[str, str]:
        return self.toks[min(self.i, len(self.toks) - 1)]

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok[0] == "end" and value != "":
            raise PromQLError(f"expected {value or 'more'!r}, got the end of the expression")
        if value is not None and tok[1] != value:
            raise PromQLError(f"expected {value!r}, got {tok[1]!r}")
        self.i += 1
        return tok

    def parse(self):
        node = self.binary(0)
        if self.peek()[0] != "end":
            raise PromQLError(f"unexpected {self.peek()[1]!r}")
        return node

    def binary(self, level: int):
        if level == len(_PRECEDENCE):
            return self.unary()
        lhs = self.binary(level + 1)
        while self.peek()[1] in _PRECEDENCE[level]:
            op = self.take()[1]
            node = Binary(op, lhs, None)
            if self.peek()[1] == "bool":
                self.take()
                node.bool_mod = True
            if self.peek()[1] in ("on", "ignoring"):
                which = self.take()[1]
                labels = self.label_list()
                setattr(node, which, labels)
                if self.peek()[1] in ("group_left", "group_right"):
                    raise PromQLError("group_left/group_right are not supported")
            node.rhs = self.binary(level + 1)
            lhs = node
        return lhs

    def label_list(self) -> list[str]:
        self.take("(")
        names = []
        while self.peek()[1] != ")":
            names.append(self.take()[1])
            if self.peek()[1] == ",":
                self.take()
        self.take(")")
        return names

    def unary(self):
        if self.peek()[1] == "-":
            self.take()
            return Binary("*", Number(-1.0), self.unary())
        node = self.primary()
        while True:
            kind, value = self.peek()
            if kind == "dur":
                if not isinstance(node, Selector) or node.range_seconds is not None:
                    raise PromQLError("range selector on something that is not a vector selector")
                self.take()
                inner = value[1:-1]
                if ":" in inner:
                    raise PromQLError("subqueries are not supported")
                node.range_seconds = parse_duration(inner)
            elif value == "offset":
                self.take()
                if not isinstance(node, Selector):
                    raise PromQLError("offset on something that is not a selector")
                node.offset_seconds = parse_duration(self.take()[1])
            else:
                return node

    def primary(self):
        kind, value = self.peek()
        if kind == "num":
            self.take()
            return Number(float(value))
        if value == "(":
            self.take()
            node = self.binary(0)
            self.take(")")
            return node
        if value == "{":
            return Selector(None, self.matchers())
        if kind == "ident":
            self.take()
            if value in AGGREGATIONS:
                by = without = None
                if self.peek()[1] in ("by", "without"):
                    which = self.take()[1]
                    labels = self.label_list()
                    by, without = (labels, None) if which == "by" else (None, labels)
                self.take("(")
                expr = self.binary(0)
                self.take(")")
                if self.peek()[1] in ("by", "without"):
                    which = self.take()[1]
                    labels = self.label_list()
                    by, without = (labels, None) if which == "by" else (None, labels)
                return Agg(value, expr, by, without)
            if self.peek()[1] == "(":
                if value not in FUNCTIONS:
                    raise PromQLError(f"function {value}() is not supported")
                self.take("(")
                args = []
                while self.peek()[1] != ")":
                    args.append(self.binary(0))
                    if self.peek()[1] == ",":
                        self.take()
                self.take(")")
                return Call(value, args)
            matchers = self.matchers() if self.peek()[1] == "{" else []
            return Selector(value, matchers)
        raise PromQLError(f"unexpected {value!r}")

    def matchers(self) -> list[tuple[str, str, str]]:
        self.take("{")
        out = []
        while self.peek()[1] != "}":
            name = self.take()[1]
            op = self.take()[1]
            if op not in ("=", "!=", "=~", "!~"):
                raise PromQLError(f"bad matcher operator {op!r}")
            kind, raw = self.take()
            if kind != "str":
                raise PromQLError(f"matcher value must be a string, got {raw!r}")
            out.append((name, op, bytes(raw[1:-1], "utf-8").decode("unicode_escape")))
            if self.peek()[1] == ",":
                self.take()
        self.take("}")
        return out


def parse(expr: str):
    return _Parser(expr).parse()


# ---------------------------------------------------------------- data

@dataclass
class History:
    """Samples per series: labels -> sorted [(t, value)]. Append in time order."""

    series: dict[Labels, list[tuple[float, float]]] = field(default_factory=dict)
    lookback_seconds: float = 300.0

    def add(self, name: str, labels: dict[str, str], t: float, value: float) -> None:
        key = tuple(sorted({**labels, "__name__": name}.items()))
        self.series.setdefault(key, []).append((t, value))

    def select(self, sel: Selector) -> Iterable[tuple[Labels, list[tuple[float, float]]]]:
        for key, samples in self.series.items():
            d = dict(key)
            if sel.name is not None and d.get("__name__") != sel.name:
                continue
            if all(_match(d.get(n, ""), op, v) for n, op, v in sel.matchers):
                yield key, samples


def _match(actual: str, op: str, want: str) -> bool:
    if op == "=":
        return actual == want
    if op == "!=":
        return actual != want
    hit = re.fullmatch(want, actual) is not None
    return hit if op == "=~" else not hit


# ---------------------------------------------------------------- evaluation

Vector = dict[Labels, float]


def _drop_name(labels: Labels) -> Labels:
    return tuple(p for p in labels if p[0] != "__name__")


def _instant(sel: Selector, h: History, t: float) -> Vector:
    at = t - sel.offset_seconds
    out: Vector = {}
    for key, samples in h.select(sel):
        value = None
        for ts, v in reversed(samples):
            if ts <= at:
                if ts > at - h.lookback_seconds:
                    value = v
                break
        if value is not None and not math.isnan(value):
            out[key] = value
    return out


def _extrapolated(sel: Selector, h: History, t: float, kind: str) -> Vector:
    # Prometheus' extrapolatedRate (promql/functions.go), without native histograms.
    end = t - sel.offset_seconds
    start = end - sel.range_seconds
    out: Vector = {}
    for key, samples in h.select(sel):
        # Prometheus 2.x selects [start, end] (closed; 3.x made the start open)
        pts = [(ts, v) for ts, v in samples if start <= ts <= end]
        if len(pts) < 2:
            continue
        result = pts[-1][1] - pts[0][1]
        if kind != "delta":
            prev = pts[0][1]
            for _, v in pts[1:]:
                if v < prev:
                    result += prev
                prev = v
        sampled = pts[-1][0] - pts[0][0]
        avg_interval = sampled / (len(pts) - 1)
        to_start = pts[0][0] - start
        to_end = end - pts[-1][0]
        threshold = avg_interval * 1.1
        if kind != "delta" and result > 0 and pts[0][1] >= 0:
            to_zero = sampled * (pts[0][1] / result)
            if to_zero < to_start:
                to_start = to_zero
        extend = sampled
        extend += to_start if to_start < threshold else avg_interval / 2
        extend += to_end if to_end < threshold else avg_interval / 2
        result *= extend / sampled if sampled > 0 else 1.0
        if kind == "rate":
            result /= sel.range_seconds
        out[_drop_name(key)] = result
    return out


def _quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    buckets.sort()
    if len(buckets) < 2 or not math.isinf(buckets[-1][0]):
        return math.nan
    # make counts monotonic, as Prometheus does
    fixed, running = [], 0.0
    for le, c in buckets:
        running = max(running, c)
        fixed.append((le, running))
    total = fixed[-1][1]
    if total == 0:
        return math.nan
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for i, (le, c) in enumerate(fixed):
        if c >= rank:
            if math.isinf(le):
                return fixed[-2][0]
            if i == 0 and le <= 0:
                return le
            lower = prev_le if i > 0 else 0.0
            width = c - prev_c
            return lower + (le - lower) * ((rank - prev_c) / width if width else 0.0)
        prev_le, prev_c = le, c
    return math.nan


def _group_key(labels: Labels, by: list[str] | None, without: list[str] | None) -> Labels:
    if by is not None:
        return tuple(p for p in labels if p[0] in by)
    drop = set(without or ()) | {"__name__"}
    return tuple(p for p in labels if p[0] not in drop)


_CMP = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
        ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b}
_ARITH = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
          "/": lambda a, b: a / b if b else (math.nan if a == 0 else math.copysign(math.inf, a)),
          "%": lambda a, b: math.fmod(a, b) if b else math.nan}


def _apply(op: str, a: float, b: float, bool_mod: bool) -> tuple[bool, float]:
    """(keep, value): comparisons filter unless `bool` is given."""
    if op in _CMP:
        hit = _CMP[op](a, b)
        return (True, 1.0 if hit else 0.0) if bool_mod else (hit, a)
    return True, _ARITH[op](a, b)


def _match_key(labels: Labels, on: list[str] | None, ignoring: list[str] | None) -> Labels:
    if on is not None:
        return tuple(p for p in labels if p[0] in on)
    drop = set(ignoring or ()) | {"__name__"}
    return tuple(p for p in labels if p[0] not in drop)


def _eval(node, h: History, t: float):
    if isinstance(node, Number):
        return node.value
    if isinstance(node, Selector):
        if node.range_seconds is not None:
            raise PromQLError("a range vector cannot be used here")
        return _instant(node, h, t)
    if isinstance(node, Call):
        if node.fn in ("rate", "increase", "delta"):
            (arg,) = node.args
            if not isinstance(arg, Selector) or arg.range_seconds is None:
                raise PromQLError(f"{node.fn}() needs a range selector")
            return _extrapolated(arg, h, t, node.fn)
        if node.fn == "histogram_quantile":
            q = _eval(node.args[0], h, t)
            vec = _eval(node.args[1], h, t)
            groups: dict[Labels, list[tuple[float, float]]] = {}
            for labels, v in vec.items():
                d = dict(labels)
                if "le" not in d:
                    continue
                key = tuple(p for p in labels if p[0] not in ("le", "__name__"))
                groups.setdefault(key, []).append((float(d["le"]), v))
            out = {k: _quantile(q, b) for k, b in groups.items()}
            return {k: v for k, v in out.items() if not math.isnan(v)}
        if node.fn == "abs":
            return {_drop_name(k): abs(v) for k, v in _eval(node.args[0], h, t).items()}
        if node.fn == "vector":
            return {(): float(_eval(node.args[0], h, t))}
        if node.fn == "scalar":
            vec = _eval(node.args[0], h, t)
            return next(iter(vec.values())) if len(vec) == 1 else math.nan
        raise PromQLError(f"function {node.fn}() is not supported")
    if isinstance(node, Agg):
        vec = _eval(node.expr, h, t)
        if not isinstance(vec, dict):
            raise PromQLError(f"{node.op}() needs a vector")
        groups: dict[Labels, list[float]] = {}
        for labels, v in vec.items():
            groups.setdefault(_group_key(labels, node.by, node.without), []).append(v)
        fn = {"sum": sum, "max": max, "min": min, "count": len,
              "avg": lambda xs: sum(xs) / len(xs)}[node.op]
        return {k: float(fn(vs)) for k, vs in groups.items()}
    if isinstance(node, Binary):
        lhs = _eval(node.lhs, h, t)
        rhs = _eval(node.rhs, h, t)
        op = node.op
        if op in ("and", "or", "unless"):
            if not isinstance(lhs, dict) or not isinstance(rhs, dict):
                raise PromQLError(f"{op} needs two vectors")
            rkeys = {_match_key(k, node.on, node.ignoring) for k in rhs}
            if op == "and":
                return {k: v for k, v in lhs.items() if _match_key(k, node.on, node.ignoring) in rkeys}
            if op == "unless":
                return {k: v for k, v in lhs.items() if _match_key(k, node.on, node.ignoring) not in rkeys}
            lkeys = {_match_key(k, node.on, node.ignoring) for k in lhs}
            out = dict(lhs)
            out.update({k: v for k, v in rhs.items() if _match_key(k, node.on, node.ignoring) not in lkeys})
            return out
        keep_name = op in _CMP and not node.bool_mod
        if not isinstance(lhs, dict) and not isinstance(rhs, dict):
            keep, value = _apply(op, lhs, rhs, True)
            return value
        if not isinstance(rhs, dict):
            out = {}
            for k, v in lhs.items():
                keep, value = _apply(op, v, rhs, node.bool_mod)
                if keep:
                    out[k if keep_name else _drop_name(k)] = value
            return out
        if not isinstance(lhs, dict):
            out = {}
            for k, v in rhs.items():
                keep, value = _apply(op, lhs, v, node.bool_mod)
                if keep:
                    out[k if keep_name else _drop_name(k)] = v if (op in _CMP and not node.bool_mod) else value
            return out
        right = {}
        for k, v in rhs.items():
            mk = _match_key(k, node.on, node.ignoring)
            if mk in right:
                raise PromQLError("many-to-one matching is not supported")
            right[mk] = v
        out = {}
        for k, v in lhs.items():
            mk = _match_key(k, node.on, node.ignoring)
            if mk not in right:
                continue
            keep, value = _apply(op, v, right[mk], node.bool_mod)
            if keep:
                out[k if keep_name else _drop_name(k)] = value
        return out
    raise PromQLError(f"cannot evaluate {node!r}")


def evaluate(expr: str, history: History, t: float) -> Vector:
    """Instant-vector result of `expr` at time `t`; PromQLError for unsupported expressions."""
    result = _eval(parse(expr), history, t)
    if not isinstance(result, dict):
        return {(): float(result)}
    return result


def scale_durations(expr: str, factor: float) -> str:
    """`expr` with every range and offset duration divided by `factor` (demo time compression)."""
    def fix(m: re.Match) -> str:
        return "[" + format_duration(max(1.0, parse_duration(m.group(1)) / factor)) + "]"

    out = re.sub(r"\[([0-9a-z.]+)\]", fix, expr)
    return re.sub(r"offset\s+([0-9a-z.]+)",
                  lambda m: "offset " + format_duration(max(1.0, parse_duration(m.group(1)) / factor)), out)
