"""Checks on card data made before any authorisation starts; nothing here keeps a number."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


def luhn_ok(number: str) -> bool:
    # isascii: str.isdigit() also accepts digits such as "²" and "٤" that no card has.
    if not (number.isascii() and number.isdigit()) or not 12 <= len(number) <= 19:
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def normalise_number(raw: str) -> str:
    """Card numbers may be typed with spaces or dashes between groups."""
    return raw.replace(" ", "").replace("-", "")


def brand_of(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:2] in {"51", "52", "53", "54", "55"} or "2221" <= number[:4] <= "2720":
        return "mastercard"
    if number.startswith("784"):
        return "e_dirham"
    return "card"


def expiry_ok(month: int, year: int, today: date) -> bool:
    """A card is valid up to the end of its expiry month."""
    if not 1 <= month <= 12 or not 2000 <= year <= 2100:
        return False
    return (year, month) >= (today.year, today.month)


@dataclass(frozen=True)
class MethodSummary:
    """What may be shown and stored about a payment method: never more than the last four."""

    type: str  # "e_dirham" or "card"
    brand: str
    last4: str
