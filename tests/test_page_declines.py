"""A method declined on the payment page is answered as soon as the decline is known.

The decline returns the payment to ``reserved``, a state the page's call waits in, so the
call used to wait its whole ``WAIT_FOR_PROGRESS_SECONDS`` and answer 202 ("still working")
although the answer was in. It now answers 200 with the payer's view saying the method was
declined, as a success does. (How long that takes is a benchmark's figure, not a test's.)"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Stack, card, e_dirham
from tests.support.partners import fresh_e_dirham_card
from tests.support.payer import PayerPage


@pytest.mark.parametrize("method", ["declined card", "wrong PIN"])
def test_a_decline_on_the_page_is_the_answer_not_still_working(stack: Stack, method: str) -> None:
    chosen: dict[str, Any] = (
        card("4000000000000002")
        if method == "declined card"
        else e_dirham(fresh_e_dirham_card(stack), "9999")
    )
    payment = stack.created()
    page = PayerPage(stack, payment)

    answer = page.authorise(chosen)

    assert answer.status_code == 200, answer.text
    assert answer.json()["message"] == "declined", answer.json()
    assert stack.get(payment["id"])["state"] == "reserved"  # the payer may try another
    second = page.authorise(card("4242424242424242"))
    assert second.status_code == 200, second.text
    assert stack.wait_for(payment["id"], {"succeeded"})["state"] == "succeeded"
