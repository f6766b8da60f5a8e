"""How a refund splits over a payment's lines (domain/refunds.py), and its reversing entries."""

from __future__ import annotations

import pytest

from domain import ledger
from domain.money import FeeLine, fee_lines
from domain.refunds import RefundSettlement, idempotency_scope, refund_postings, split_refund

# A health certificate: AED 220 service fee, the Knowledge and the Innovation Dirham.
LINES = fee_lines(22000, exempt_from_added_fees=False)


def test_a_partial_refund_returns_the_service_fee_first() -> None:
    assert split_refund(LINES, {}, 5000) == [("service_fee", 5000)]
    assert split_refund(LINES, {}, 22000) == [("service_fee", 22000)]


def test_the_funds_are_reversed_only_by_a_refund_that_reaches_them() -> None:
    assert split_refund(LINES, {}, 22500) == [("service_fee", 22000), ("knowledge_fee", 500)]
    assert split_refund(LINES, {"service_fee": 20000}, 3500) == [
        ("service_fee", 2000),
        ("knowledge_fee", 1000),
        ("innovation_fee", 500),
    ]


def test_a_full_refund_returns_every_line() -> None:
    assert split_refund(LINES, {}, 24000) == [
        ("service_fee", 22000),
        ("knowledge_fee", 1000),
        ("innovation_fee", 1000),
    ]


def test_what_is_left_after_earlier_refunds() -> None:
    earlier = {"service_fee": 22000, "knowledge_fee": 1000}
    assert split_refund(LINES, earlier, 1000) == [("innovation_fee", 1000)]
    with pytest.raises(ValueError, match="passes"):
        split_refund(LINES, earlier, 1001)


def test_an_exempt_payment_has_its_service_fee_alone() -> None:
    lines = fee_lines(10000, exempt_from_added_fees=True)
    assert split_refund(lines, {}, 10000) == [("service_fee", 10000)]
    with pytest.raises(ValueError, match="passes what is left"):
        split_refund(lines, {}, 10001)


@pytest.mark.parametrize("amount", [0, -1])
def test_a_refund_is_more_than_zero(amount: int) -> None:
    with pytest.raises(ValueError, match="more than zero"):
        split_refund(LINES, {}, amount)


def test_every_split_sums_to_the_amount_and_never_passes_a_line() -> None:
    for first in range(0, 24001, 700):
        done = dict(split_refund(LINES, {}, first)) if first else {}
        for second in range(1, 24001 - first, 900):
            parts = split_refund(LINES, done, second)
            assert sum(share for _, share in parts) == second
            assert all(share > 0 for _, share in parts)
            for code, share in parts:
                line = next(line.amount for line in LINES if line.code == code)
                assert done.get(code, 0) + share <= line


def test_the_reversing_entries_negate_the_capture_of_the_refunded_lines() -> None:
    s = RefundSettlement(
        "rf_1", "pay_1", "DM", "card", [FeeLine("service_fee", 22000), FeeLine("knowledge_fee", 5)]
    )
    assert refund_postings(s) == [
        ("card_acquirer_receivable", -22005),
        ("department_payable:DM", 22000),
        ("knowledge_dirham_fund", 5),
    ]
    e_dirham = RefundSettlement("rf_2", "pay_1", "RTA", "e_dirham", [FeeLine("service_fee", 7)])
    assert refund_postings(e_dirham) == [
        ("e_dirham_issuer_receivable", -7),
        ("department_payable:RTA", 7),
    ]


def test_a_refund_key_cannot_be_a_payment_key() -> None:
    """Payments' keys come from an HTTP header, which holds no line feed; and any
    255-character key fits the table's limit once hashed."""
    scoped = idempotency_scope("k" * 255)
    assert "\n" in scoped
    assert len(scoped) <= 255
    assert idempotency_scope("a") != idempotency_scope("b")


def test_postings_refuse_a_method_or_line_with_no_account() -> None:
    """A capture is booked to a known receivable and known accounts, or not at all."""
    with pytest.raises(ValueError, match="no funds source"):
        ledger.capture_postings("cash", "RTA", [FeeLine("service_fee", 7)])
    with pytest.raises(ValueError, match="no account for the fee lines"):
        ledger.capture_postings("card", "RTA", [FeeLine("parking_fee", 7)])
