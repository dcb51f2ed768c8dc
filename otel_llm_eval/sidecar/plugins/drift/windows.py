"""What the drift plugin keeps per feature and time slot: a count and a uniform reservoir of values
(numeric) or counts per category. O(1) updates; the plugin holds its lock and persists them."""

from __future__ import annotations

import random
from array import array
from typing import Iterable


class DriftSlot:
    """One time slot of one feature: how many values arrived and a uniform reservoir of them
    (numeric, an array of doubles), or counts per category (categorical, capped: extra categories
    fold into 'other'). Compact on purpose: 100 features x 150 slots of these live in the heap,
    and arrays are invisible to the garbage collector."""

    __slots__ = ("count", "values", "categories")

    def __init__(self, count: int = 0, values: Iterable[float] = (), categories: dict | None = None) -> None:
        self.count = count
        self.values = array("d", values)
        self.categories = categories

    def add_numeric(self, x: float, cap: int, rng: random.Random) -> None:
        self.count += 1
        if len(self.values) < cap:
            self.values.append(x)
        else:  # Algorithm R: every value seen so far stays with probability cap / count
            j = rng.randrange(self.count)
            if j < cap:
                self.values[j] = x

    def add_numeric_many(self, xs: list[float], cap: int, rng: random.Random) -> None:
        """`add_numeric` for each of xs in order: fills the reservoir with one C-level extend, then
        Algorithm R with j drawn as int(random() * count) (uniform like randrange, cheaper)."""
        values = self.values
        room = cap - len(values)
        if room > 0:
            take = xs[:room]
            values.extend(take)
            self.count += len(take)
            xs = xs[room:]
        count = self.count
        draw = rng.random
        for x in xs:
            count += 1
            j = int(draw() * count)
            if j < cap:
                values[j] = x
        self.count = count

    def add_category(self, c: str, max_categories: int, n: int = 1) -> None:
        """Count n values of category c (c folds into 'other' past max_categories)."""
        self.count += n
        if self.categories is None:
            self.categories = {}
        if c not in self.categories and len(self.categories) >= max_categories:
            c = "other"
        self.categories[c] = self.categories.get(c, 0) + n

    @property
    def weight(self) -> float:
        """How many values each kept value stands for."""
        return self.count / len(self.values) if self.values else 0.0
