"""Checks on card data made before any authorisation starts; nothing here keeps a number."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from enum import StrEnum


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


def with_check_digit(partial: str) -> str:
    """``partial`` (ASCII digits) with the check digit that makes it pass ``luhn_ok``."""
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:  # doubled once the check digit is appended
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return partial + str((10 - total % 10) % 10)


def normalise_number(raw: str) -> str:
    """Card numbers may be typed with spaces or dashes between groups."""
    return raw.replace(" ", "").replace("-", "")


# What may stand between the groups of a card number written in text: spaces and dashes as
# people type them, the punctuation that hides a number from a check on those (``.``, ``/``,
# ``:``, ``_``), and every Unicode space, dash and invisible break, named here one by one
# rather than left to ``\s`` (which has no zero-width space, word joiner or soft hyphen).
_SPACES = (
    "\t\n\v\f\r \x1c\x1d\x1e\x1f\x85"
    "\u00a0"  # no-break space
    "\u1680"  # Ogham space mark
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006"  # en and em quads and spaces
    "\u2007"  # figure space
    "\u2008"  # punctuation space
    "\u2009\u200a"  # thin and hair spaces
    "\u2028\u2029"  # line and paragraph separators
    "\u202f"  # narrow no-break space
    "\u205f"  # medium mathematical space
    "\u3000"  # ideographic space
)
_INVISIBLE = (
    "\u00ad"  # soft hyphen
    "\u180e"  # Mongolian vowel separator
    "\u200b\u200c\u200d"  # zero-width space, non-joiner, joiner
    "\u2060"  # word joiner
    "\ufeff"  # zero-width no-break space
)
_DASHES = (
    "-"
    "\u2010\u2011\u2012\u2013\u2014\u2015"  # hyphen, non-breaking hyphen, figure dash, dashes
    "\u2212"  # minus sign
    "\ufe58\ufe63\uff0d"  # small em dash, small and full-width hyphen-minus
)
_PUNCTUATION = (
    "./:_"
    "\u2024"  # one dot leader
    "\u2044\u2215"  # fraction and division slashes
    "\uff0e\uff0f\uff1a\uff3f"  # full-width full stop, solidus, colon, low line
)
GROUP_SEPARATORS = _SPACES + _INVISIBLE + _DASHES + _PUNCTUATION
"""Every character ``holds_card_number`` reads as the break between two groups of digits."""

# Digits in groups that those separators part. ``\d`` is any decimal digit, so a number
# written in Arabic-Indic or full-width digits is one too.
_SEPARATOR = "[" + re.escape(GROUP_SEPARATORS) + "]+"
_DIGIT_GROUPS = re.compile(r"\d+(?:" + _SEPARATOR + r"\d+)*")
_SEPARATORS = re.compile(_SEPARATOR)


def holds_card_number(text: str) -> bool:
    """Whether ``text`` holds what may be a card number: 13 to 19 digits, in a row or in
    groups parted by ``GROUP_SEPARATORS`` (spaces, dashes, ``.``, ``/``, ``:``, ``_``, any
    Unicode space), that pass the Luhn check.

    Text a department sends (a reference, a description, metadata) is stored, shown on
    receipts and sent to Temporal: a card number in it would put the card in clear where no
    card data may be. Any run of whole groups is tried (``INV 4242 4242 4242 4242 2026``
    holds one), but never part of a group: a 25-digit number is not a card number, and a
    13 to 19 digit reference that fails the Luhn check (nine in ten of them) passes. Dates,
    times and invoice numbers with slashes or dots (``Fine 2024/7``, ``15/07/2026``) are
    too short to be one; a run of groups as long as a card's (a date with the time to the
    second is 14 digits) is refused when it passes the Luhn check, as a long fine number is.
    """
    for run in _DIGIT_GROUPS.finditer(text):
        groups = [_ascii_digits(g) for g in _SEPARATORS.split(run.group())]
        for start in range(len(groups)):
            digits = ""
            for group in groups[start:]:
                digits += group
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and luhn_ok(digits):
                    return True
    return False


def _ascii_digits(digits: str) -> str:
    return "".join(str(unicodedata.decimal(ch)) for ch in digits)


AMEX_PREFIXES = ("34", "37")


class MethodType(StrEnum):
    """How a payment is paid: which partner holds the payer's money (domain/queues.py)."""

    CARD = "card"
    E_DIRHAM = "e_dirham"


def brand_of(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number.startswith(AMEX_PREFIXES):
        return "amex"
    if number[:2] in {"51", "52", "53", "54", "55"} or "2221" <= number[:4] <= "2720":
        return "mastercard"
    if number.startswith("784"):
        return "e_dirham"
    return "card"


def cvv_length(number: str) -> int:
    """American Express prints a four-digit security code on the card's front, the other
    schemes three on its back (the page checks the same as the payer types)."""
    return 4 if number.startswith(AMEX_PREFIXES) else 3


def expiry_ok(month: int, year: int, today: date) -> bool:
    """A card is valid up to the end of its expiry month."""
    if not 1 <= month <= 12 or not 2000 <= year <= 2100:
        return False
    return (year, month) >= (today.year, today.month)


@dataclass(frozen=True)
class MethodSummary:
    """What may be shown and stored about a payment method: never more than the last four."""

    type: MethodType
    brand: str
    last4: str
