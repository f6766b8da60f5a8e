"""The pure payment-domain code: card checks, money, the state machine, failure messages."""

from __future__ import annotations

import unicodedata
from datetime import date
from pathlib import Path

import pytest

from domain.cards import (
    GROUP_SEPARATORS,
    brand_of,
    cvv_length,
    expiry_ok,
    holds_card_number,
    luhn_ok,
    normalise_number,
    with_check_digit,
)
from domain.failures import MESSAGES, FailureCode, message_for
from domain.money import (
    INNOVATION_FEE,
    KNOWLEDGE_FEE,
    MAX_AMOUNT,
    FeeLine,
    fee_lines,
    format_aed,
    is_valid_amount,
    total,
)
from domain.states import (
    CANCELLABLE_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    Actor,
    AuditNote,
    IllegalTransition,
    PaymentEvent,
    PaymentState,
    actor_of,
    transition,
    transition_table,
)

S = PaymentState

# --- cards -------------------------------------------------------------------------------

SANDBOX_NUMBERS = [
    "4242424242424242",
    "4000000000000002",
    "4000000000000069",
    "4000000000000119",
    "4000000000003220",
    "4000000000000259",
    "7840000000000017",
    "7840000000000025",
    "7840000000000033",
    "5555555555554444",  # a well-known Mastercard test number
    "378282246310005",  # a 15-digit Amex test number
]


@pytest.mark.parametrize("number", SANDBOX_NUMBERS)
def test_luhn_accepts_the_sandbox_numbers(number: str) -> None:
    assert luhn_ok(number)


@pytest.mark.parametrize(
    "number",
    [
        "4242424242424241",  # last digit off
        "4242424242424243",
        "7840000000000018",
        "4000000000000001",
        "",
        "0",
        "00000000000",  # the sum is right but 11 digits are too short
        "4" + "0" * 18 + "4",  # 20 digits: too long
        "4242 4242 4242 4242",  # not normalised: spaces are not digits
        "4242-4242-4242-4242",
        "424242424242424a",
        "-4242424242424242",
        "+4242424242424242",
    ],
)
def test_luhn_refuses_bad_numbers(number: str) -> None:
    assert not luhn_ok(number)


@pytest.mark.parametrize(
    "number",
    [
        "4242424242424\u00b242",  # superscript two: str.isdigit() says yes, int() says no
        "\u2460" * 16,  # circled digit one
        "\uff14\uff12" * 8,  # full-width 4242...: passes the sum, but not an ASCII number
        "\u0664\u0662" * 8,  # Arabic-Indic 4242...
    ],
    ids=["superscript", "circled", "full-width", "arabic-indic"],
)
def test_luhn_refuses_non_ascii_digits_without_raising(number: str) -> None:
    assert luhn_ok(number) is False


def test_with_check_digit_gives_the_one_digit_luhn_ok_accepts() -> None:
    for number in SANDBOX_NUMBERS:
        assert with_check_digit(number[:-1]) == number
    for partial in ("784000000000001", "400000000000000", "0" * 11, "9" * 18, "12345678901"):
        accepted = [d for d in "0123456789" if luhn_ok(partial + d)]
        assert [with_check_digit(partial)[-1]] == accepted, partial


def test_luhn_length_bounds() -> None:
    assert luhn_ok("000000000000")  # 12 digits, sum 0
    assert luhn_ok("0" * 19)
    assert not luhn_ok("0" * 11)
    assert not luhn_ok("0" * 20)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("4242 4242 4242 4242", "4242424242424242"),
        ("4242-4242-4242-4242", "4242424242424242"),
        ("4242 - 4242-4242 4242", "4242424242424242"),
        ("4242424242424242", "4242424242424242"),
        ("", ""),
    ],
)
def test_normalise_number(raw: str, expected: str) -> None:
    assert normalise_number(raw) == expected
    assert luhn_ok(normalise_number(raw)) == luhn_ok(expected)


@pytest.mark.parametrize(
    "text",
    [
        "4242424242424242",
        "INV-4242424242424242",
        "paid with 4242 4242 4242 4242 yesterday",
        "4242-4242-4242-4242",
        "4242 - 4242 - 4242 - 4242",
        "ref 2026 4242 4242 4242 4242",  # the card is a run of whole groups inside a longer one
        "4242 4242 4242 4242 2026",
        "378282246310005",  # 15-digit Amex
        "7840000000000017",  # e-Dirham
        "\u0664\u0662" * 8,  # 4242... in Arabic-Indic digits
        "\uff14\uff12" * 8,  # 4242... in full-width digits
        "4000000000000000006",  # 19 digits
        "4222222222222",  # 13 digits
        "card:4242424242424242;",
    ],
)
def test_holds_card_number_finds_luhn_valid_runs(text: str) -> None:
    assert holds_card_number(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "INV-2026-0001",
        "FINE-2026-0012345",  # an ordinary fine number
        "1234567890123456",  # 16 digits that fail the Luhn check
        "4242424242424241",  # a card number with a wrong check digit
        "4242 4242 4242 4241",
        "424242424242",  # 12 digits: too short to be a card, though Luhn-valid
        "42424242424242424242",  # 20 digits, Luhn-valid as a whole: too long
        "0" * 25,  # a long run is not read as the card numbers inside it
        "4242424242424242" + "0" * 10,
        "Renewal of trade licence 12345, 2 copies",
    ],
)
def test_holds_card_number_lets_ordinary_text_through(text: str) -> None:
    assert not holds_card_number(text)


SEPARATED = [
    pytest.param(".", id="dot"),
    pytest.param("/", id="slash"),
    pytest.param(":", id="colon"),
    pytest.param("_", id="underscore"),
    pytest.param("\u00a0", id="no-break-space"),
    pytest.param("\u202f", id="narrow-no-break-space"),
    pytest.param("\u2009", id="thin-space"),
    pytest.param("\u2007", id="figure-space"),
    pytest.param("\u200a", id="hair-space"),
    pytest.param("\u3000", id="ideographic-space"),
    pytest.param("\u200b", id="zero-width-space"),
    pytest.param("\u2060", id="word-joiner"),
    pytest.param("\ufeff", id="zero-width-no-break-space"),
    pytest.param("\u00ad", id="soft-hyphen"),
    pytest.param("\t", id="tab"),
    pytest.param("\n", id="newline"),
    pytest.param("\u2011", id="non-breaking-hyphen"),
    pytest.param("\u2013", id="en-dash"),
    pytest.param("\u2212", id="minus-sign"),
    pytest.param("\uff0e", id="full-width-full-stop"),
    pytest.param("\uff0f", id="full-width-solidus"),
    pytest.param(" / ", id="spaced-slash"),
    pytest.param("..", id="two-dots"),
]


@pytest.mark.parametrize("separator", SEPARATED)
def test_holds_card_number_sees_through_any_separator(separator: str) -> None:
    """A card number hidden from a check on spaces and dashes (``4242.4242.4242.4242``) is
    still one, and so is the 15-digit Amex in its 4-6-5 groups."""
    assert holds_card_number(separator.join(["4242"] * 4))
    assert holds_card_number(f"paid with {separator.join(['3782', '822463', '10005'])} today")
    assert holds_card_number(separator.join(["7840", "0000", "0000", "0017"]) + " e-Dirham")
    assert not holds_card_number(separator.join(["4242", "4242", "4242", "4241"]))


def test_holds_card_number_sees_through_every_unicode_space() -> None:
    spaces = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Zs"]
    assert len(spaces) >= 17
    for space in spaces:
        assert holds_card_number(space.join(["4242"] * 4)), hex(ord(space))
        assert space in GROUP_SEPARATORS, hex(ord(space))


def test_holds_card_number_sees_through_mixed_separators() -> None:
    assert holds_card_number("4242.4242/4242:4242")
    assert holds_card_number("4242_4242\u00a04242-4242")
    assert holds_card_number("ref:4242.4242.4242.4242;")


@pytest.mark.parametrize(
    "text",
    [
        "Fine 2024/7",
        "FINE 2024/77",
        "15/07/2026",
        "15.07.2026",
        "2026-07-15 10:30",
        "INV 2026/07/0012",
        "v1.2.3",
        "10:30",
        "192.168.100.200",
        "Case 12/2026 of 15.07.2026, item 3",
        "file_2026_07_15",
        "AED 1,234.56",
        "INV\u00a02026\u00a00001",
    ],
)
def test_holds_card_number_lets_dates_and_invoice_numbers_through(text: str) -> None:
    assert not holds_card_number(text)


def test_a_thirteen_to_nineteen_digit_reference_passes_unless_luhn_valid() -> None:
    """Fine numbers are often long runs of digits: only the Luhn-valid tenth is refused."""
    for length in range(13, 20):
        for start in range(0, 10**length, 10**length // 97 + 1):
            number = str(start).zfill(length)
            assert holds_card_number(f"FINE {number}") == luhn_ok(number), number


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4242424242424242", "visa"),
        ("4000000000003220", "visa"),
        ("5105105105105100", "mastercard"),
        ("5555555555554444", "mastercard"),
        ("2221000000000009", "mastercard"),
        ("2720990000000000", "mastercard"),
        ("2220990000000000", "card"),
        ("2721000000000000", "card"),
        ("5655555555555555", "card"),
        ("7840000000000017", "e_dirham"),
        ("378282246310005", "amex"),
        ("341111111111111", "amex"),
        ("6011111111111117", "card"),
    ],
)
def test_brand_of(number: str, brand: str) -> None:
    assert brand_of(number) == brand


@pytest.mark.parametrize(
    ("number", "length"),
    [
        ("378282246310005", 4),
        ("341111111111111", 4),
        ("4242424242424242", 3),
        ("5105105105105100", 3),
        ("6011111111111117", 3),
    ],
)
def test_the_security_code_has_four_digits_on_amex_alone(number: str, length: int) -> None:
    assert cvv_length(number) == length


TODAY = date(2025, 6, 15)


@pytest.mark.parametrize(
    ("month", "year", "ok"),
    [
        (6, 2025, True),  # the current month: valid to its end
        (12, 2025, True),
        (1, 2026, True),
        (12, 2100, True),
        (5, 2025, False),  # last month: past
        (12, 2024, False),
        (1, 2020, False),
        (13, 2026, False),  # no month 13
        (0, 2026, False),
        (-1, 2026, False),
        (6, 2101, False),
        (6, 1999, False),
        (6, 25, False),  # a two-digit year is not a year here
    ],
)
def test_expiry_ok(month: int, year: int, ok: bool) -> None:
    assert expiry_ok(month, year, TODAY) is ok


def test_expiry_is_valid_up_to_the_last_day_of_the_month() -> None:
    assert expiry_ok(2, 2024, date(2024, 2, 29))
    assert expiry_ok(12, 2025, date(2025, 12, 31))
    assert not expiry_ok(12, 2025, date(2026, 1, 1))


# --- money -------------------------------------------------------------------------------


def test_fee_lines_add_the_government_fees_unless_exempt() -> None:
    assert KNOWLEDGE_FEE == 1000
    assert INNOVATION_FEE == 1000
    lines = fee_lines(22000, exempt_from_added_fees=False)
    assert lines == [
        FeeLine("service_fee", 22000),
        FeeLine("knowledge_fee", 1000),
        FeeLine("innovation_fee", 1000),
    ]
    assert total(lines) == 24000
    exempt = fee_lines(15000, exempt_from_added_fees=True)
    assert exempt == [FeeLine("service_fee", 15000)]
    assert total(exempt) == 15000
    assert total([]) == 0


@pytest.mark.parametrize("fee", [0, -1, -22000, 1.5, 100.0, "100", True, None, MAX_AMOUNT + 1])
@pytest.mark.parametrize("exempt", [False, True])
def test_fee_lines_refuse_invalid_fees(fee: object, exempt: bool) -> None:
    with pytest.raises(ValueError, match="a service fee must be"):
        fee_lines(fee, exempt_from_added_fees=exempt)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (1, True),
        (22000, True),
        (MAX_AMOUNT, True),
        (MAX_AMOUNT + 1, False),
        (0, False),
        (-1, False),
        (1.5, False),
        (100.0, False),
        (True, False),
        (False, False),
        ("100", False),
        (None, False),
    ],
)
def test_is_valid_amount(value: object, ok: bool) -> None:
    assert is_valid_amount(value) is ok


def test_max_amount_is_ten_million_dirhams() -> None:
    assert MAX_AMOUNT == 1_000_000_000
    assert format_aed(MAX_AMOUNT) == "AED 10,000,000.00"
    assert format_aed(24005) == "AED 240.05"


# --- states ------------------------------------------------------------------------------

ALLOWED = [
    (source, event, target)
    for event, (sources, target) in TRANSITIONS.items()
    for source in (sources or (None,))
]


@pytest.mark.parametrize(("source", "event", "target"), ALLOWED)
def test_every_allowed_transition(source: PaymentState | None, event: str, target: S) -> None:
    assert transition(source, event) is target


def test_the_expected_transitions_are_allowed() -> None:
    expected = {
        (None, "fee_reserved", S.RESERVED),
        (S.RESERVED, "method_submitted", S.AUTHORISING),
        (S.AUTHORISING, "challenge_required", S.REQUIRES_ACTION),
        (S.REQUIRES_ACTION, "challenge_passed", S.AUTHORISING),
        (S.AUTHORISING, "authorised", S.CONFIRMING),
        (S.AUTHORISING, "method_declined", S.RESERVED),
        (S.REQUIRES_ACTION, "method_declined", S.RESERVED),
        (S.CONFIRMING, "department_confirmed", S.CAPTURING),
        (S.CAPTURING, "captured", S.SUCCEEDED),
        (S.RESERVED, "expired", S.EXPIRED),
        (S.REQUIRES_ACTION, "expired", S.EXPIRED),
        (S.AUTHORISING, "expired", S.EXPIRED),
    }
    expected |= {(s, "failed", S.FAILED) for s in (*CANCELLABLE_STATES, S.CAPTURING)}
    expected |= {(s, "cancelled_by_department", S.CANCELLED) for s in CANCELLABLE_STATES}
    expected |= {(s, "cancelled_by_operator", S.CANCELLED) for s in CANCELLABLE_STATES}
    assert set(ALLOWED) == expected


def test_the_actor_is_part_of_the_event() -> None:
    assert actor_of("cancelled_by_department") is Actor.DEPARTMENT
    assert actor_of("cancelled_by_operator") is Actor.OPERATOR
    assert actor_of("failed") is Actor.WORKFLOW
    assert actor_of("no_such_event") is Actor.WORKFLOW


def test_the_design_document_shows_the_table_from_the_code() -> None:
    design = (Path(__file__).resolve().parent.parent / "docs" / "design.md").read_text()
    assert transition_table() in design


def test_events_and_notes_do_not_share_names() -> None:
    assert not {e.value for e in PaymentEvent} & {n.value for n in AuditNote}


ILLEGAL = [
    (S.RESERVED, "captured"),
    (S.RESERVED, "authorised"),
    (S.RESERVED, "department_confirmed"),
    (S.RESERVED, "challenge_passed"),
    (S.AUTHORISING, "method_submitted"),
    (S.CONFIRMING, "expired"),
    (S.CONFIRMING, "captured"),
    (S.CAPTURING, "cancelled_by_department"),
    (S.CAPTURING, "cancelled_by_operator"),
    (S.RESERVED, "cancelled"),
    (S.CAPTURING, "expired"),
    (S.REQUIRES_ACTION, "authorised"),
    (S.SUCCEEDED, "cancelled_by_operator"),
    (S.SUCCEEDED, "failed"),
    (S.RESERVED, "fee_reserved"),
    (None, "method_submitted"),
    (None, "captured"),
    (S.RESERVED, "no_such_event"),
    (None, "no_such_event"),
] + [(state, event) for state in sorted(TERMINAL_STATES) for event in TRANSITIONS]


@pytest.mark.parametrize(("source", "event"), ILLEGAL)
def test_illegal_transitions_raise(source: PaymentState | None, event: str) -> None:
    with pytest.raises(IllegalTransition):
        transition(source, event)


def test_every_state_is_reachable() -> None:
    targets = {target for _, target in TRANSITIONS.values()}
    assert targets == set(PaymentState)


def test_terminal_and_cancellable_states() -> None:
    assert {S.SUCCEEDED, S.FAILED, S.CANCELLED, S.EXPIRED} == TERMINAL_STATES
    assert all(s.is_terminal for s in TERMINAL_STATES)
    assert not any(s.is_terminal for s in set(PaymentState) - TERMINAL_STATES)
    assert {S.RESERVED, S.AUTHORISING, S.REQUIRES_ACTION, S.CONFIRMING} == CANCELLABLE_STATES
    assert not CANCELLABLE_STATES & TERMINAL_STATES
    assert S.CAPTURING not in CANCELLABLE_STATES
    # no state is a dead end unless it is terminal
    sources = {s for sources, _ in TRANSITIONS.values() for s in sources}
    assert sources == set(PaymentState) - TERMINAL_STATES


def test_states_have_the_contract_names() -> None:
    assert {s.value for s in PaymentState} == {
        "reserved",
        "authorising",
        "requires_action",
        "confirming",
        "capturing",
        "succeeded",
        "failed",
        "cancelled",
        "expired",
    }


# --- failures ----------------------------------------------------------------------------


@pytest.mark.parametrize("code", list(FailureCode))
def test_every_failure_code_has_a_message(code: FailureCode) -> None:
    message = message_for(code.value)
    assert message == MESSAGES[code]
    assert message
    assert message.endswith(".")
    assert message != "The payment failed."


@pytest.mark.parametrize("code", ["", "bogus", "CARD_DECLINED", "card declined"])
def test_unknown_failure_codes_get_a_generic_message(code: str) -> None:
    assert message_for(code) == "The payment failed."


def test_the_contract_failure_codes_exist() -> None:
    contract = {
        "card_declined",
        "card_expired",
        "insufficient_funds",
        "invalid_pin",
        "pin_locked",
        "card_blocked",
        "three_ds_failed",
        "department_rejected",
        "department_unavailable",
        "payment_window_expired",
    }
    assert contract <= {c.value for c in FailureCode}
