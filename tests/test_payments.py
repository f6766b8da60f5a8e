"""A payment with each sandbox card and e-Dirham card ends as the contract says, and leaves
exactly what it should behind: one capture for a success, no open hold or authorisation
otherwise, its reservation consumed or released, and a balanced ledger."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import Stack, card, e_dirham
from tests.support import wait_until
from tests.support.partners import acquirer_records, fresh_e_dirham_card, issuer_holds
from tests.support.payments import assert_left_nothing_behind, assert_paid_once

HEALTH_CERT_TOTAL = 22000 + 1000 + 1000


@pytest.mark.parametrize(
    ("number", "state", "failure"),
    [
        ("4242424242424242", "succeeded", None),
        ("4242 4242 4242 4242", "succeeded", None),
        ("4000000000000002", "failed", "card_declined"),
        ("4000000000000069", "failed", "card_expired"),
        # transient acquirer errors, retried: still one authorisation (assert_paid_once)
        ("4000000000000119", "succeeded", None),
        ("4000000000000259", "succeeded", None),
    ],
)
def test_card_outcomes(stack: Stack, number: str, state: str, failure: str | None) -> None:
    payment = stack.pay(card(number))
    assert payment["state"] == state, payment
    assert (payment["failure"] or {}).get("code") == failure
    funds = acquirer_records(stack, payment["id"])
    if state == "succeeded":
        assert_paid_once(stack, payment, funds)
        assert payment["method"] == {"type": "card", "brand": "visa", "last4": number[-4:]}
    else:
        assert_left_nothing_behind(stack, payment, funds)


def test_three_d_secure_challenge_passes_with_the_right_code(stack: Stack) -> None:
    payment = stack.created()
    response = stack.authorise(payment, card("4000000000003220"))
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "requires_action"
    response = stack.three_d_secure(payment, "123456")
    assert response.status_code in (200, 202), response.text
    final = stack.wait_for(payment["id"])
    assert final["state"] == "succeeded"
    assert_paid_once(stack, final, acquirer_records(stack, payment["id"]))


def test_three_d_secure_challenge_fails_with_a_wrong_code(stack: Stack) -> None:
    payment = stack.created()
    stack.authorise(payment, card("4000000000003220"))
    stack.wait_for(payment["id"], {"requires_action"})
    stack.three_d_secure(payment, "000000")
    final = stack.wait_for(payment["id"])
    assert final["state"] == "failed"
    assert final["failure"]["code"] == "three_ds_failed"
    assert_left_nothing_behind(stack, final, acquirer_records(stack, payment["id"]))


def test_e_dirham_payment_succeeds_and_debits_the_card_once(stack: Stack) -> None:
    before = stack.sandbox("/issuer/_admin/cards/7840000000000017")["balance"]
    payment = stack.pay(e_dirham("7840000000000017"))
    assert payment["state"] == "succeeded", payment
    assert payment["method"] == {"type": "e_dirham", "brand": "e_dirham", "last4": "0017"}
    assert_paid_once(stack, payment, issuer_holds(stack, payment["id"]))
    after = stack.sandbox("/issuer/_admin/cards/7840000000000017")["balance"]
    assert before - after == HEALTH_CERT_TOTAL


@pytest.mark.parametrize(
    ("number", "pin", "failure"),
    [
        ("7840000000000025", "1234", "insufficient_funds"),
        ("7840000000000033", "1234", "card_blocked"),
    ],
)
def test_e_dirham_refusals(stack: Stack, number: str, pin: str, failure: str) -> None:
    payment = stack.pay(e_dirham(number, pin))
    assert payment["state"] == "failed", payment
    assert payment["failure"]["code"] == failure, payment
    assert_left_nothing_behind(stack, payment, issuer_holds(stack, payment["id"]))


def test_three_wrong_pins_lock_the_e_dirham_card(stack: Stack) -> None:
    number = fresh_e_dirham_card(stack)
    outcomes = [stack.pay(e_dirham(number, "0000"))["failure"]["code"] for _ in range(3)]
    assert outcomes == ["invalid_pin", "invalid_pin", "pin_locked"]
    locked = stack.pay(e_dirham(number, "4321"))
    assert locked["failure"]["code"] == "pin_locked"
    assert_left_nothing_behind(stack, locked, issuer_holds(stack, locked["id"]))
    assert stack.sandbox(f"/issuer/_admin/cards/{number}")["locked"] is True


def test_a_paid_reference_cannot_be_paid_again(stack: Stack) -> None:
    payment = stack.pay(card("4242424242424242"))
    again = stack.create(reference=payment["reference"])
    assert again.status_code == 409
    assert again.json()["code"] == "reference_already_paid"


def test_a_reference_in_progress_cannot_be_started_twice(stack: Stack) -> None:
    payment = stack.created()
    again = stack.create(reference=payment["reference"])
    assert again.status_code == 409
    assert again.json()["code"] == "reference_in_progress"


def test_a_failed_payment_frees_its_reference(stack: Stack) -> None:
    failed = stack.pay(card("4000000000000002"))
    retry = stack.pay(card("4242424242424242"), reference=failed["reference"])
    assert retry["state"] == "succeeded"


def test_variable_fee_service_takes_the_departments_amount_without_added_fees(stack: Stack) -> None:
    payment = stack.created(service_code="PARKING_FINE", amount=50000)
    assert payment["amount"] == {
        "total": 50000,
        "currency": "AED",
        "lines": [{"code": "service_fee", "amount": 50000}],
    }


def test_fixed_fee_service_adds_knowledge_and_innovation_dirhams(stack: Stack) -> None:
    payment = stack.created()
    assert payment["state"] == "reserved"
    assert payment["amount"]["total"] == HEALTH_CERT_TOTAL
    assert [line["code"] for line in payment["amount"]["lines"]] == [
        "service_fee",
        "knowledge_fee",
        "innovation_fee",
    ]


def test_an_authorisation_whose_answer_never_came_is_reversed_when_the_payment_fails(
    stack: Stack,
) -> None:
    """The acquirer authorises 0259 but its answer is lost; the retry then fails for good
    (here: the card data is gone from the vault). The payment fails, and the authorisation
    nobody heard about is reversed by the request's idempotency key."""
    payment = stack.created()
    with ThreadPoolExecutor(1) as pool:
        pool.submit(stack.authorise, payment, card("4000000000000259"))
        stack.wait_for(payment["id"], {"authorising"})
        wait_until(  # the first call is out, waiting for the answer that will not come
            lambda: acquirer_records(stack, payment["id"]) != [],
            timeout=30,
            what="the acquirer's authorisation",
        )
        stack.fetch("DELETE FROM card_vault WHERE payment_id = $1 RETURNING 1", payment["id"])
    final = stack.wait_for(payment["id"])
    assert final["state"] == "failed"
    assert final["failure"]["code"] == "authorisation_failed"
    records = acquirer_records(stack, payment["id"])
    assert [r["status"] for r in records] == ["voided"]
    assert_left_nothing_behind(stack, final, records)
