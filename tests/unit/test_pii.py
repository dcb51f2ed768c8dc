import pytest

from otel_llm_eval.pii import find_pii, luhn_valid, redact


@pytest.mark.parametrize(
    "text, kinds",
    [
        ("write to jane.doe@example.com today", ["email"]),
        ("card 4111 1111 1111 1111 exp 12/30", ["card"]),
        ("card 4111-1111-1111-1111", ["card"]),
        ("call +1 415-555-0132 after 5", ["phone"]),
        ("call (415) 555-0132", ["phone"]),
        ("order 1234567890123 shipped", []),  # 13 digits failing Luhn: not a card
        ("the year 2024 had 365 days", []),
        ("", []),
    ],
)
def test_find_pii_reports_each_kind_it_finds(text, kinds):
    assert [m.kind for m in find_pii(text)] == kinds


def test_luhn_accepts_a_test_card_and_rejects_a_changed_digit():
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")


def test_redact_replaces_every_match_and_keeps_the_rest():
    assert redact("mail a@b.io or 4111 1111 1111 1111.") == "mail [EMAIL] or [CARD]."
