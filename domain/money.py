"""Money is integer fils (1 AED = 100 fils) everywhere, and a payment is the sum of its lines."""

from __future__ import annotations

from dataclasses import dataclass

CURRENCY = "AED"
FILS_PER_AED = 100
MAX_AMOUNT = 10_000_000 * FILS_PER_AED
"""The largest amount a single payment may carry: AED 10,000,000."""

KNOWLEDGE_FEE = 1000
"""The Knowledge Dirham (AED 10) added to most government service transactions."""
INNOVATION_FEE = 1000
"""The Innovation Dirham (AED 10) added to most government service transactions."""


@dataclass(frozen=True)
class FeeLine:
    """One line of a payment: the service fee or one of the added government fees."""

    code: str  # "service_fee", "knowledge_fee" or "innovation_fee"
    amount: int


def fee_lines(service_fee: int, *, exempt_from_added_fees: bool) -> list[FeeLine]:
    """The lines a payment is made of, for a service fee in fils."""
    if not is_valid_amount(service_fee):
        raise ValueError("a service fee must be a positive whole number of fils")
    lines = [FeeLine("service_fee", service_fee)]
    if not exempt_from_added_fees:
        lines += [
            FeeLine("knowledge_fee", KNOWLEDGE_FEE),
            FeeLine("innovation_fee", INNOVATION_FEE),
        ]
    return lines


def total(lines: list[FeeLine]) -> int:
    return sum(line.amount for line in lines)


def is_valid_amount(value: object) -> bool:
    """Whole fils, above zero, at most AED 10,000,000 (bool is not a number here)."""
    return type(value) is int and 0 < value <= MAX_AMOUNT


AED_TEXT = {"en": "AED {amount}", "ar": "{amount} درهم"}
"""How an amount reads in each language the payer's page speaks (the page's texts,
``api/static/strings.json``, carry the same two as ``amount``; a test keeps them alike)."""


def format_aed(fils: int, lang: str = "en") -> str:
    """An amount in fils as the payer and the operator read it: ``AED 1,234.50`` in English,
    ``1,234.50 درهم`` in Arabic (Western digits, comma thousands, two decimals; a negative
    amount as ``AED -0.01``)."""
    return AED_TEXT[lang].format(amount=aed_amount(fils))


def aed_amount(fils: int, *, thousands: bool = True) -> str:
    """Fils as the AED number alone, two decimals from the integer (``-1`` is ``-0.01``):
    ``1,234.50``, or ``1234.50`` without thousands for a spreadsheet's cells."""
    sign = "-" if fils < 0 else ""
    whole, part = divmod(abs(fils), FILS_PER_AED)
    return f"{sign}{whole:,}.{part:02d}" if thousands else f"{sign}{whole}.{part:02d}"
