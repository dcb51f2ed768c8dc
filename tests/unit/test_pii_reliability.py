"""PII redaction: unseparated phone numbers, internationalized emails, a scan linear in its input."""

from __future__ import annotations

import random

import pytest

from otel_llm_eval import pii
from otel_llm_eval.pii import find_pii, redact


@pytest.mark.parametrize("text,expected", [
    ("call 5551234567 now", "call [PHONE] now"),
    ("call +14155552671.", "call [PHONE]."),
    ("call 15551234567", "call [PHONE]"),
    ("UK +447911123456 mobile", "UK [PHONE] mobile"),
    ("josé@bücher.de wrote", "[EMAIL] wrote"),
    ("用户@例子.广告 ok", "[EMAIL] ok"),
    ("mail ünïcode.user@exämple.com.", "mail [EMAIL]."),
    ("unix time 1765000000 is not a phone", "unix time 1765000000 is not a phone"),
    ("order 0123456789 is not a phone", "order 0123456789 is not a phone"),
    ("version v1.2@3.4 is not an email", "version v1.2@3.4 is not an email"),
    ("card 4111111111111111 stays a card", "card [CARD] stays a card"),
])
def test_unseparated_phones_and_non_ascii_emails_are_redacted_and_look_alikes_are_not(text, expected):
    assert redact(text) == expected


def _cards(n: int) -> list[str]:
    rng = random.Random(7)
    out = []
    while len(out) < n:
        d = "4" + "".join(rng.choice("0123456789") for _ in range(15))
        if pii.luhn_valid(d):
            out.append(d)
    return out


def test_overlap_checks_take_steps_linear_in_the_matches_not_their_product():
    taken = [(i * 10, i * 10 + 5) for i in range(5000)]
    check = pii._Taken(taken)
    queries = [(i * 10 + 6, i * 10 + 9) for i in range(5000)]  # each falls between two taken spans
    assert all(check.free(a, b) for a, b in queries)
    assert check.steps <= len(taken) + len(queries)
    check = pii._Taken(taken)
    assert not check.free(12, 13) and check.free(15, 20) and not check.free(29, 31)


def test_a_completion_full_of_card_numbers_is_redacted_whole_with_emails_and_phones_around_them():
    cards = _cards(50)
    parts = []
    for i in range(20_000):
        parts.append(cards[i % 50])
        if i % 1000 == 0:
            parts.append("ops@example.com 5551234567")
    text = " ".join(parts)
    found = find_pii(text)
    assert [m.kind for m in found].count("card") == 20_000
    assert [m.kind for m in found].count("email") == 20 and [m.kind for m in found].count("phone") == 20
    assert all(a.end <= b.start for a, b in zip(found, found[1:]))  # sorted, never overlapping
