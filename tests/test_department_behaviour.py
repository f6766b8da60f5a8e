"""Each sandbox department behaviour ends as the contract says, compensated where it fails."""

from __future__ import annotations

import subprocess
import time

from tests.conftest import Stack, card, new_reference
from tests.support import BIN, wait_until
from tests.support.partners import acquirer_records
from tests.support.payments import assert_left_nothing_behind, assert_paid_once


def confirmations(stack: Stack, payment_id: str) -> list[dict]:
    items: list[dict] = stack.sandbox(
        f"/departments/DM/_admin/confirmations?payment_id={payment_id}"
    )["items"]
    return items


def test_normal_reference_is_confirmed_at_once(stack: Stack) -> None:
    payment = stack.pay(card("4242424242424242"))
    assert payment["state"] == "succeeded"
    [confirmation] = confirmations(stack, payment["id"])
    assert confirmation["status"] == "confirmed"
    assert confirmation["attempts"] == 1
    assert payment["department_confirmation"] == confirmation["confirmation_reference"]


def test_rejected_reference_fails_and_voids_the_authorisation(stack: Stack) -> None:
    payment = stack.pay(card("4242424242424242"), reference=new_reference("REJECT-"))
    assert payment["state"] == "failed"
    assert payment["failure"]["code"] == "department_rejected"
    records = acquirer_records(stack, payment["id"])
    assert [r["status"] for r in records] == ["voided"]
    assert_left_nothing_behind(stack, payment, records)
    assert confirmations(stack, payment["id"])[0]["attempts"] == 1  # a refusal is not retried


def test_flaky_department_is_retried_until_it_confirms(stack: Stack) -> None:
    payment = stack.pay(card("4242424242424242"), reference=new_reference("FLAKY-"))
    assert payment["state"] == "succeeded"
    [confirmation] = confirmations(stack, payment["id"])
    assert confirmation["attempts"] == 4
    assert confirmation["status"] == "confirmed"
    assert_paid_once(stack, payment, acquirer_records(stack, payment["id"]))


def test_slow_department_is_waited_for(stack: Stack) -> None:
    started = time.monotonic()
    payment = stack.pay(card("4242424242424242"), reference=new_reference("SLOW-"))
    assert payment["state"] == "succeeded"
    assert time.monotonic() - started >= 5
    [confirmation] = confirmations(stack, payment["id"])
    assert confirmation["attempts"] == 1  # waited for, not timed out and asked again
    assert_paid_once(stack, payment, acquirer_records(stack, payment["id"]))


def test_down_department_confirms_once_an_operator_brings_it_up(stack: Stack) -> None:
    payment = stack.created(reference=new_reference("DOWN-"))
    stack.authorise(payment, card("4242424242424242"))
    stack.wait_for(payment["id"], {"confirming"})
    # the card data went with the authorisation, long before the payment ends
    assert stack.fetch("SELECT 1 FROM card_vault WHERE payment_id = $1", payment["id"]) == []
    wait_until(  # asked again after its 503, and still waited for
        lambda: confirmations(stack, payment["id"])[0]["attempts"] >= 2,
        timeout=30,
        what="the department asked a second time",
    )
    assert stack.get(payment["id"])["state"] == "confirming"
    subprocess.run(
        [str(BIN / "epay"), "sandbox", "department", "up", "DM"], env=stack.env, check=True
    )
    try:
        final = stack.wait_for(payment["id"], timeout=60)
    finally:
        subprocess.run(
            [str(BIN / "epay"), "sandbox", "department", "down", "DM"], env=stack.env, check=True
        )
    assert final["state"] == "succeeded"
    assert_paid_once(stack, final, acquirer_records(stack, payment["id"]))


def test_cancel_while_the_department_is_down_compensates_everything(stack: Stack) -> None:
    payment = stack.created(reference=new_reference("DOWN-"))
    stack.authorise(payment, card("4242424242424242"))
    stack.wait_for(payment["id"], {"confirming"})
    with stack.client() as c:
        response = c.post(f"/v1/payments/{payment['id']}/cancel", json={"reason": "citizen asked"})
    assert response.status_code == 202, response.text
    final = stack.wait_for(payment["id"])
    assert final["state"] == "cancelled"
    records = acquirer_records(stack, payment["id"])
    assert [r["status"] for r in records] == ["voided"]
    assert_left_nothing_behind(stack, final, records)
