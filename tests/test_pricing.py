"""What a payment costs (domain/pricing.py): the API answers each refusal as a 422 on
``amount`` (tests/test_api_validation.py shows it through the API)."""

from __future__ import annotations

import pytest

from domain.money import INNOVATION_FEE, KNOWLEDGE_FEE, MAX_AMOUNT, FeeLine, total
from domain.pricing import PriceRefused, Service, price

FIXED = Service(fee=25000, exempt_from_added_fees=False)
VARIABLE = Service(fee=None, exempt_from_added_fees=False)
EXEMPT = Service(fee=None, exempt_from_added_fees=True)


def test_a_fixed_fee_takes_the_added_fees() -> None:
    assert price(FIXED, None) == [
        FeeLine("service_fee", 25000),
        FeeLine("knowledge_fee", KNOWLEDGE_FEE),
        FeeLine("innovation_fee", INNOVATION_FEE),
    ]


def test_a_variable_fee_is_the_amount_given() -> None:
    assert price(VARIABLE, 1234)[0] == FeeLine("service_fee", 1234)
    assert price(EXEMPT, 1234) == [FeeLine("service_fee", 1234)]


@pytest.mark.parametrize(
    ("service", "amount", "code"),
    [
        (VARIABLE, None, "amount_required"),
        (FIXED, 25000, "amount_not_allowed"),
        (VARIABLE, MAX_AMOUNT, "amount_too_large"),  # the added fees take it past the limit
    ],
)
def test_an_amount_that_does_not_fit_the_service_is_refused(
    service: Service, amount: int | None, code: str
) -> None:
    with pytest.raises(PriceRefused) as refused:
        price(service, amount)
    assert refused.value.code == code


def test_the_limit_itself_is_allowed_without_added_fees() -> None:
    assert total(price(EXEMPT, MAX_AMOUNT)) == MAX_AMOUNT
