"""Interleaving helpers for the app: pairwise choice between two responses, and team-draft
interleaving of two ranked lists, each recorded as an evaluation span the sidecar analyses.

Pairwise:
    cmp = pairwise("prompt-v2-vs-v1", "v1", "v2")      # random order, remembered
    left, right = cmp.shown                              # show responses in this order
    cmp.record(span, winner="v2")                        # or cmp.record(span, tie=True)

Team-draft (Radlinski, Kurup & Joachims 2008): each round a coin flip decides which ranker drafts
first; each adds its highest-ranked item not yet in the list, tagged with its team. A click credits
the clicked item's team; the team with more clicks wins the impression, equal clicks is a tie, and
impressions without clicks are not recorded.
    td = team_draft("ranker-b-vs-a", ranking_a, ranking_b, a="a", b="b", length=10)
    show(td.items); ...; td.record(span, clicked=[2, 5])  # positions in td.items

Records are evaluation spans named `semconv.INTERLEAVING_EVALUATION` (source "user") with the
`llm_eval.interleaving.*` attributes (id, method, winner, loser, tie, first_shown), children of
`target` (a span, SpanContext or 32-hex trace id) via `feedback.emit_evaluation`.
Standard library only; `record` raises ValueError for invalid input, never for telemetry failures.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Hashable, Sequence

from .. import semconv
from .feedback import emit_evaluation

_SYSRAND = random.SystemRandom()


def _emit(target: Any, comparison_id: str, method: str, winner: str, loser: str, tie: bool,
          first_shown: str | None) -> None:
    attrs: dict[str, Any] = {
        semconv.INTERLEAVING_ID: comparison_id, semconv.INTERLEAVING_METHOD: method,
        semconv.INTERLEAVING_WINNER: winner, semconv.INTERLEAVING_LOSER: loser, semconv.INTERLEAVING_TIE: tie,
    }
    if first_shown is not None:
        attrs[semconv.INTERLEAVING_FIRST_SHOWN] = first_shown
    emit_evaluation(target, semconv.INTERLEAVING_EVALUATION, None, label="tie" if tie else winner,
                    source="user", attributes=attrs)


def _check_id(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 128:
        raise ValueError(f"{kind} must be a non-empty string of at most 128 characters, got {value!r}")
    return value


@dataclass(frozen=True)
class PairwiseComparison:
    """Two arms shown in `shown` order (randomized); `record` stores the user's choice."""

    id: str
    a: str
    b: str
    shown: tuple[str, str]

    def record(self, target: Any, winner: str | None = None, *, tie: bool = False) -> None:
        """Record the choice: `winner` is a or b, or `tie=True` (winner None)."""
        if tie:
            if winner is not None:
                raise ValueError("give either winner or tie=True, not both")
            _emit(target, self.id, "pairwise", self.shown[0], self.shown[1], True, self.shown[0])
            return
        if winner not in (self.a, self.b):
            raise ValueError(f"winner must be {self.a!r} or {self.b!r} (or tie=True), got {winner!r}")
        loser = self.b if winner == self.a else self.a
        _emit(target, self.id, "pairwise", winner, loser, False, self.shown[0])


def pairwise(comparison_id: str, a: str, b: str, *, rng: random.Random | None = None) -> PairwiseComparison:
    """A pairwise comparison of arms a and b with a random display order (position bias cancels)."""
    _check_id("comparison id", comparison_id)
    _check_id("arm a", a)
    _check_id("arm b", b)
    if a == b:
        raise ValueError("the two arms must differ")
    first_a = (rng or _SYSRAND).random() < 0.5
    return PairwiseComparison(comparison_id, a, b, (a, b) if first_a else (b, a))


@dataclass
class TeamDraft:
    """An interleaved list: `items[i]` was contributed by team `teams[i]` (arm a or b)."""

    id: str
    a: str
    b: str
    items: list[Hashable] = field(default_factory=list)
    teams: list[str] = field(default_factory=list)

    def credit(self, clicked: Sequence[int]) -> dict[str, int]:
        """Clicks per team; `clicked` are positions in `items` (duplicates count once)."""
        out = {self.a: 0, self.b: 0}
        for pos in sorted(set(clicked)):
            if not isinstance(pos, int) or not 0 <= pos < len(self.items):
                raise ValueError(f"clicked position {pos!r} is outside the list (0..{len(self.items) - 1})")
            out[self.teams[pos]] += 1
        return out

    def outcome(self, clicked: Sequence[int]) -> str | None:
        """The winning arm, "tie" for equal clicks, None when nothing was clicked."""
        c = self.credit(clicked)
        if c[self.a] == c[self.b]:
            return None if c[self.a] == 0 else "tie"
        return self.a if c[self.a] > c[self.b] else self.b

    def record(self, target: Any, clicked: Sequence[int]) -> str | None:
        """Record the impression's outcome (nothing for no clicks); returns it."""
        result = self.outcome(clicked)
        if result is None:
            return None
        if result == "tie":
            _emit(target, self.id, "team_draft", self.a, self.b, True, None)
        else:
            _emit(target, self.id, "team_draft", result, self.b if result == self.a else self.a, False, None)
        return result


def team_draft(comparison_id: str, ranking_a: Sequence[Hashable], ranking_b: Sequence[Hashable], *,
               a: str = "a", b: str = "b", length: int | None = None,
               rng: random.Random | None = None) -> TeamDraft:
    """Team-draft interleaving of two rankings (items must be hashable, e.g. document ids)."""
    _check_id("comparison id", comparison_id)
    if a == b:
        raise ValueError("the two arms must differ")
    rng = rng or _SYSRAND
    pool = len(set(ranking_a) | set(ranking_b))
    length = pool if length is None else min(int(length), pool)
    td = TeamDraft(comparison_id, a, b)
    seen: set[Hashable] = set()
    ia = ib = 0

    def pick(ranking: Sequence[Hashable], i: int, team: str) -> int:
        while i < len(ranking) and ranking[i] in seen:
            i += 1
        if i < len(ranking) and len(td.items) < length:
            seen.add(ranking[i])
            td.items.append(ranking[i])
            td.teams.append(team)
            i += 1
        return i

    while len(td.items) < length:
        before = len(td.items)
        if rng.random() < 0.5:
            ia = pick(ranking_a, ia, a)
            ib = pick(ranking_b, ib, b)
        else:
            ib = pick(ranking_b, ib, b)
            ia = pick(ranking_a, ia, a)
        if len(td.items) == before:
            break
    return td
