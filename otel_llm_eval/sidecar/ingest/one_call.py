"""One real LLM call, one count: nested LLM spans that describe one provider call are resolved here.

The rule is `semconv`'s (see `semconv.same_call`, docs/instrumentations.md): an LLM span whose
parent is an LLM span of the same trace, with the same operation and an overlapping interval,
describes the same call as that parent; the innermost span is counted, with what only its outer
spans have merged in (`semconv.merge_call`). Logfire's stream request half is dropped before this
(`semconv.is_stream_request_half`).

Children end first, so an inner span arrives in the same export batch as its outer one or in an
earlier one. Within a batch `resolve` pairs them exactly. Across batches the ingest thread keeps
`Links` (parent span key -> the inner call counted under it), bounded like the span index; a later
batch holding that parent drops it (a worker process, which cannot see `Links`, had counted it:
`Links.needs_local` tells the ingest thread to prepare that batch again on its own thread). Every
step is a dict lookup or insert per LLM call: O(1) amortized.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterable, Mapping, NamedTuple

from ...semconv import LLMCall, merge_call, same_call


class Link(NamedTuple):
    """An inner call counted in an earlier batch, waiting for the outer span that wraps it.
    (The preparer builds plain tuples in this field order: cheaper per call.)"""

    operation: str | None
    trace_id: str
    start: int
    end: int
    base: tuple        # its raw label set in the batch sums
    had_in: bool       # it had input tokens
    had_out: bool      # it had output tokens
    had_cost: bool     # its cost was known


class Resolved(NamedTuple):  # documentation of the plain tuples `resolve` returns
    sv: Any                     # the counted span's SpanView
    call: LLMCall               # merged with its outer spans
    attrs: Mapping[str, Any]    # the span's attributes over its outer spans'
    aliases: tuple[str, ...]    # span index keys of the outer spans in this batch
    merge: Link | None          # set: this span is the outer of an earlier batch's inner call
    parent_key: str | None      # where a later outer span would be found (for a new Link)
    response_key: str | None    # where a later span of the same response would be found


def _key(call: LLMCall) -> str | None:
    return call.trace_id + call.span_id if call.trace_id and call.span_id else None


def _response_key(sv: Any, call: LLMCall) -> str | None:
    rid = sv.attributes.get("gen_ai.response.id")
    return f"r{call.trace_id}{rid}" if rid and call.trace_id and isinstance(rid, str) else None


def _inner_first(a: Any, b: Any) -> bool:
    """Of two overlapping spans of one call, whether `a` is the inner one: inside `b`, else the
    one that ended first (then the one that started last)."""
    if a.start >= b.start and a.end <= b.end:
        return not (b.start >= a.start and b.end <= a.end) or a.start > b.start or a.end < b.end
    if b.start >= a.start and b.end <= a.end:
        return False
    return (a.end, -a.start) <= (b.end, -b.start)


def _parent_key(sv: Any, call: LLMCall) -> str | None:
    parent = sv.raw_parent_span_id
    return call.trace_id + parent.hex() if parent and call.trace_id else None


def resolve(pending: list[tuple[Any, LLMCall]], links: Mapping[str, tuple] | None) -> list[tuple]:
    """Each real call once: the innermost span of every nested group, merged with its outer spans.

    An outer span with more than one LLM child (a framework span around several provider calls)
    is not merged into any of them (its tokens would be counted twice). `links`: inner calls of
    earlier batches by parent key (None in worker processes)."""
    if is_flat(pending, links):
        return [(sv, call, sv.attributes, (), None, None, None) for sv, call in pending]
    return resolve_general(pending, links)


_RESPONSE_ID = "gen_ai.response.id"


def is_flat(pending: list[tuple[Any, LLMCall]], links: Mapping[str, tuple] | None) -> bool:
    """True when `resolve` has nothing to pair (the common case, tested equal to the general
    path): no span has a parent or a response id and no inner call of an earlier batch waits, so
    every span is a call of its own (attributes its own, no aliases, no merge, no keys to link)."""
    if links:
        return False
    for sv, _call in pending:
        if sv.raw_parent_span_id or _RESPONSE_ID in sv.attributes:
            return False
    return True


def resolve_general(pending: list[tuple[Any, LLMCall]], links: Mapping[str, tuple] | None) -> list[tuple]:
    """`resolve` without its shortcut for batches where no span can wrap another (tests compare them)."""
    n = len(pending)
    keys = [_key(call) for _, call in pending]
    rkeys = [_response_key(sv, call) for sv, call in pending]
    parent: list[int | None] = [None] * n
    children = [0] * n
    if n > 1:
        by_key = {k: i for i, k in enumerate(keys) if k}
        for i, (sv, call) in enumerate(pending):
            j = by_key.get(_parent_key(sv, call) or "")
            if j is not None and j != i:
                osv, outer = pending[j]
                if same_call(outer, osv.start, osv.end, call, sv.start, sv.end):
                    parent[i] = j
                    children[j] += 1
        # Rule 3: spans of one trace with the same gen_ai.response.id (two instrumentations that
        # are not nested, e.g. the Anthropic SDK's own span beside OpenLLMetry's) are one call.
        by_response: dict[str, int] = {}
        for i, (sv, call) in enumerate(pending):
            rk = rkeys[i]
            if not rk or children[i]:
                continue
            j = by_response.get(rk)
            if j is None:
                by_response[rk] = i
                continue
            osv, other = pending[j]
            if not same_call(other, osv.start, osv.end, call, sv.start, sv.end):
                continue
            inner, outer = (i, j) if _inner_first(sv, osv) else (j, i)
            if parent[inner] is None:
                parent[inner] = outer
            children[outer] += 1
            by_response[rk] = inner
    out: list[Resolved] = []
    for i, (sv, call) in enumerate(pending):
        if children[i]:
            continue  # an outer span: counted through its innermost call
        rkey = rkeys[i]
        if links:
            for lkey in (keys[i], rkey):
                link = links.get(lkey or "")
                if link is not None and link[1] == call.trace_id and link[0] == call.operation \
                        and sv.start <= link[3] and link[2] <= sv.end:
                    out.append((sv, call, sv.attributes, (), link, _parent_key(sv, call), None))
                    break
            else:
                link = None
            if link is not None:
                continue
        j = parent[i]
        if j is None:  # the common case: a call described by one span
            out.append((sv, call, sv.attributes, (), None, _parent_key(sv, call), rkey))
            continue
        merged, attrs, aliases, top = call, sv.attributes, [], i
        while j is not None:
            osv, outer = pending[j]
            if children[j] == 1:
                merged = merge_call(merged, outer)
                attrs = {**osv.attributes, **attrs}
            if keys[j]:
                aliases.append(keys[j])
            top, j = j, parent[j]
        tsv, tcall = pending[top]
        out.append((sv, merged, attrs, tuple(aliases), None, _parent_key(tsv, tcall), rkey))
    return out


class Links:
    """The ingest thread's map of parent span key -> Link, oldest evicted past `max_entries`."""

    def __init__(self, max_entries: int = 200_000):
        self.max_entries = max(1, int(max_entries))
        self.map: OrderedDict[str, Link] = OrderedDict()

    def add(self, entries: Iterable[tuple[str, Link]]) -> None:
        m = self.map
        m.update(entries)  # as m[key] = link for each, in order (a known key keeps its place)
        while len(m) > self.max_entries:
            m.popitem(last=False)

    def needs_local(self, prepared: tuple) -> bool:
        """Whether a batch prepared without `Links` (in a worker) counted an outer span of an
        inner call from an earlier batch: it must then be prepared again on the ingest thread."""
        m = self.map
        if not m:
            return False
        for op in prepared[3]:  # response keys of the batch's calls (rule 3)
            if op[0] == "links" and any(k[0] == "r" and k in m for k, _ in op[1]):
                return True
        delta = prepared[2]
        index = delta[6] if delta is not None else None
        return bool(index) and not m.keys().isdisjoint(index[0])
