"""A payment with each sandbox card and e-Dirham card ends as the contract says."""

from __future__ import annotations

from tests.conftest import Stack, card, e_dirham


def test_card_4242_succeeds(stack: Stack) -> None:
    payment = stack.pay(card("4242424242424242"))
    assert payment["state"] == "succeeded", payment
