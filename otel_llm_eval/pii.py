"""Find and redact personal data in text: email addresses, phone numbers, payment card numbers.

Used by the sidecar's PII check (on every output) and by the review queue (redaction before
storage). Standard library only. Card numbers must pass the Luhn checksum, so order ids and other
long digit runs are not flagged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
# 13-19 digits, optionally grouped by single spaces or dashes.
_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
# International (+CC ...) or North-American style numbers with separators; at least 9 digits.
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]?\d{3,4}\b"
)

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


def find_pii(text: str, kinds: tuple[str, ...] = ("email", "card", "phone")) -> list[PiiMatch]:
    """Non-overlapping PII matches in `text`, in order. Never raises on str input."""
    if not text:
        return []
    found: list[PiiMatch] = []
    taken: list[tuple[int, int]] = []

    def free(a: int, b: int) -> bool:
        return all(b <= s or a >= e for s, e in taken)

    if "email" in kinds and "@" in text:
        for m in _EMAIL.finditer(text):
            found.append(PiiMatch("email", m.start(), m.end()))
            taken.append(m.span())
    if "card" in kinds:
        for m in _CARD.finditer(text):
            digits = re.sub(r"[ -]", "", m.group())
            if luhn_valid(digits) and free(*m.span()):
                found.append(PiiMatch("card", m.start(), m.end()))
                taken.append(m.span())
    if "phone" in kinds:
        for m in _PHONE.finditer(text):
            digits = sum(c.isdigit() for c in m.group())
            if 9 <= digits <= 15 and free(*m.span()):
                found.append(PiiMatch("phone", m.start(), m.end()))
                taken.append(m.span())
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
