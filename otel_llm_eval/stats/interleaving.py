"""Interleaving and pairwise preference: preference score, sign test, position bias.

preference_A = (wins_A + ties/2) / n - 0.5 in [-0.5, 0.5] (Chapelle et al., TOIS 2012), tested with
a two-sided binomial sign test of wins_A against wins_B (ties excluded, H0 p = 0.5). Position bias:
the share of decisive pairwise comparisons won by the response shown first, with the same test.
Pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass

from scipy import stats as _st

from ._util import clamp_p


@dataclass(frozen=True)
class PreferenceResult:
    """n counts every comparison (ties included); p_value is None without decisive outcomes."""

    n: int
    wins: int
    losses: int
    ties: int
    preference: float | None
    p_value: float | None


def sign_test(successes: int, trials: int) -> float | None:
    """Two-sided exact binomial test of `successes` out of `trials` against p = 0.5."""
    if trials <= 0:
        return None
    if not 0 <= successes <= trials:
        raise ValueError("need 0 <= successes <= trials")
    return clamp_p(_st.binomtest(int(successes), int(trials), 0.5, alternative="two-sided").pvalue)


def preference(wins: int, losses: int, ties: int = 0) -> PreferenceResult:
    """Preference of A over B from A's wins, losses and ties."""
    if min(wins, losses, ties) < 0:
        raise ValueError("counts must be >= 0")
    n = wins + losses + ties
    pref = (wins + ties / 2.0) / n - 0.5 if n > 0 else None
    return PreferenceResult(n, wins, losses, ties, pref, sign_test(wins, wins + losses))


@dataclass(frozen=True)
class PositionBiasResult:
    """Share of decisive comparisons won by the first-shown response; p from the sign test."""

    decisive: int
    first_wins: int
    first_win_rate: float | None
    p_value: float | None


def position_bias(first_wins: int, decisive: int) -> PositionBiasResult:
    if not 0 <= first_wins <= decisive:
        raise ValueError("need 0 <= first_wins <= decisive")
    rate = first_wins / decisive if decisive > 0 else None
    return PositionBiasResult(decisive, first_wins, rate, sign_test(first_wins, decisive))
