"""Find and redact personal data in text: email addresses, phone numbers, payment card numbers.

Used by the sidecar's PII check (on every output) and by the review queue (redaction before
storage). Standard library only. Card numbers must pass the Luhn checksum, so order ids and other
long digit runs are not flagged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Local part and domain may be non-ASCII (internationalized addresses: "josé@bücher.de"); the
# top-level domain is letters only, so "a@b.c1" and version strings are not addresses.
_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}\b")
# 13-19 digits, optionally grouped by single spaces or dashes.
_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
# International (+CC ...) or North-American style numbers with separators; at least 9 digits.
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]?\d{3,4}\b"
)
# Unseparated: E.164 ("+14155552671", 8-15 digits after +) or a 10-digit North-American number
# whose area code starts with 2-9 (optionally after a leading 1): "5551234567", "15551234567".
# Runs starting with 0 or 1 (unix timestamps, order ids) are left alone.
_PHONE_BARE = re.compile(r"(?<![\w+])(?:\+\d{8,15}|1?[2-9]\d{9})(?!\w)")

REDACTIONS = {"email": "[EMAIL]", "phone": "[PHONE]", "card": "[CARD]"}


@dataclass(frozen=True)
class PiiMatch:
    kind: str  # email | phone | card
    start: int
    end: int


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn checksum (payment card numbers do)."""
    if not digits.isdigit() or not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


class _Taken:
    """Spans already claimed by an earlier kind, sorted and non-overlapping.

    `free(a, b)` is asked for spans in increasing order (finditer yields them so), so one
    pointer that only moves forward answers every query: N queries against M spans cost
    O(N + M) steps in total (`steps` counts them), never O(N x M).
    """

    def __init__(self, spans: list[tuple[int, int]]):
        self.spans = spans
        self.i = 0
        self.steps = 0

    def free(self, a: int, b: int) -> bool:
        spans, i = self.spans, self.i
        while i < len(spans) and spans[i][1] <= a:
            i += 1
            self.steps += 1
        self.i = i
        self.steps += 1
        return i >= len(spans) or spans[i][0] >= b


def _merge(x: list[tuple[int, int]], y: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Two sorted, mutually non-overlapping span lists as one sorted list (linear)."""
    out, i, j = [], 0, 0
    while i < len(x) and j < len(y):
        if x[i][0] <= y[j][0]:
            out.append(x[i])
            i += 1
        else:
            out.append(y[j])
            j += 1
    out += x[i:]
    out += y[j:]
    return out


def find_pii(text: str, kinds: tuple[str, ...] = ("email", "card", "phone")) -> list[PiiMatch]:
    """Non-overlapping PII matches in `text`, in order. Never raises on str input.

    Emails win over cards, cards over phones. Linear in the text: each kind is one regex pass
    and overlaps are checked against the earlier kinds with a forward-only pointer."""
    if not text:
        return []
    found: list[PiiMatch] = []
    taken: list[tuple[int, int]] = []
    if "email" in kinds and "@" in text:
        for m in _EMAIL.finditer(text):
            found.append(PiiMatch("email", m.start(), m.end()))
            taken.append(m.span())
    if "card" in kinds:
        check, cards = _Taken(taken), []
        for m in _CARD.finditer(text):
            digits = m.group().replace(" ", "").replace("-", "")
            if luhn_valid(digits) and check.free(*m.span()):
                found.append(PiiMatch("card", m.start(), m.end()))
                cards.append(m.span())
        taken = _merge(taken, cards)
    if "phone" in kinds:
        phones: list[tuple[int, int]] = []
        for m in _PHONE.finditer(text):
            digits = sum(c.isdigit() for c in m.group())
            if 9 <= digits <= 15:
                phones.append(m.span())
        bare = [m.span() for m in _PHONE_BARE.finditer(text)]
        # the two phone patterns may overlap each other: separated numbers first, then bare ones
        check = _Taken(taken)
        accepted = [span for span in phones if check.free(*span)]
        check = _Taken(_merge(taken, accepted))
        accepted = _merge(accepted, [span for span in bare if check.free(*span)])
        found += [PiiMatch("phone", a, b) for a, b in accepted]
    found.sort(key=lambda p: p.start)
    return found


def redact(text: str, kinds: tuple[str, ...] = ("email", "card", "phone")) -> str:
    """`text` with every PII match replaced by a placeholder such as [EMAIL]."""
    if not text:
        return text
    out, pos = [], 0
    for m in find_pii(text, kinds):
        out.append(text[pos:m.start])
        out.append(REDACTIONS[m.kind])
        pos = m.end
    out.append(text[pos:])
    return "".join(out)
