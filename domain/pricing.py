"""What a payment costs: the service's fee, or the amount the department gives, with the
added government fees unless the service is exempt.

A fixed-fee service takes no amount from the department; a variable-fee service needs one;
with the added fees a payment may not pass ``MAX_AMOUNT``. The API turns a refusal into a
422 on the ``amount`` field (api/departments.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.money import MAX_AMOUNT, FeeLine, fee_lines, total


@dataclass(frozen=True)
class Service:
    """What pricing needs of a catalogue service: its fee (``None``: variable) and whether
    the Knowledge and Innovation Dirhams are added."""

    fee: int | None
    exempt_from_added_fees: bool


class PriceRefused(ValueError):
    """The amount asked does not fit the service: ``code`` and ``message`` say why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def price(service: Service, amount: int | None) -> list[FeeLine]:
    """The payment's lines for ``service``, given the amount the department sent (if any)."""
    fee = service.fee
    if fee is None:
        if amount is None:
            raise PriceRefused(
                "amount_required", "This service has a variable fee: give the amount."
            )
        fee = amount
    elif amount is not None:
        raise PriceRefused(
            "amount_not_allowed", "This service has a fixed fee: leave the amount out."
        )
    lines = fee_lines(fee, exempt_from_added_fees=service.exempt_from_added_fees)
    if total(lines) > MAX_AMOUNT:
        raise PriceRefused(
            "amount_too_large", "With the added fees the total would pass AED 10,000,000."
        )
    return lines
