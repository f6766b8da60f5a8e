"""The saga's hard cases against the real partners: an operator's cancel in Temporal past
the point of no return, a department that cannot take a revocation, and captures whose
answer is slow or unclear. tests/test_workflow_saga.py pins the same branches in seconds
with fakes; these show that the real activities, sandbox and records agree, one test for
each thing a department or payer sees.

Left to the time-skipping tests, as end-to-end runs repeated them:
- a slow e-Dirham capture, captured once: tests/test_workflow_saga.py::
  test_unclear_capture_answers_are_asked_again (the branch); the capture activity is the
  card's, shown below, and the issuer's in-flight answer is
  tests/test_sandbox_issuer.py::test_slow_capture_is_in_flight_then_answers_from_the_store;
- a Temporal cancel while capturing finishes the payment: tests/test_workflow_saga.py::
  test_a_temporal_cancel_after_the_department_confirmed_finishes_the_payment (capture and
  settle); a Temporal cancel against the real stack stays in tests/test_api_flows.py::
  test_cancelling_the_workflow_in_temporal_still_compensates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from domain.cards import MethodType
from tests.conftest import HTTP_TIMEOUT, Stack, card, e_dirham, new_reference
from tests.support import wait_until
from tests.support.partners import acquirer_records, confirmations, department, issuer_holds
from tests.support.payments import assert_paid_once, events

SLOW_CAPTURE = HTTP_TIMEOUT + 1.5  # the activity's HTTP call times out on the first try


@contextmanager
def slow_captures(stack: Stack, partner: str, seconds: float) -> Iterator[None]:
    url = f"{stack.sandbox_url}/{partner}/_admin/behaviour"
    httpx.post(url, json={"capture_delay_seconds": seconds}, timeout=10).raise_for_status()
    try:
        yield
    finally:
        httpx.post(url, json={"capture_delay_seconds": 0}, timeout=10).raise_for_status()


def cancel_in_temporal(stack: Stack, payment: dict[str, Any]) -> None:
    async def run() -> None:
        client = await stack.temporal_client()
        await client.get_workflow_handle(payment["workflow_id"]).cancel()

    asyncio.run(run())


def names(stack: Stack, payment_id: str) -> list[str]:
    return [e["event"] for e in events(stack, payment_id)]


def test_a_slow_capture_is_asked_again_and_captured_once(stack: Stack) -> None:
    """Defect 5: a capture that times out, then meets its own request still in progress
    (409), is retried with the same key until the acquirer answers; never voided."""
    with slow_captures(stack, "acquirer", SLOW_CAPTURE):
        paid = stack.pay(card("4242424242424242"))
    assert paid["state"] == "succeeded", paid
    assert_paid_once(stack, paid, acquirer_records(stack, paid["id"]))


def test_the_payer_is_released_while_the_department_cannot_take_the_revoke(
    stack: Stack,
) -> None:
    """Defect 3: the department is down for its revocation too; the e-Dirham hold is
    released and the payment ends at once, and the revocation lands once it is back."""
    payment = stack.created(reference=new_reference("DOWN-"))
    stack.authorise(payment, e_dirham("7840000000000017"))
    stack.wait_for(payment["id"], {"confirming"})
    wait_until(
        lambda: confirmations(stack, payment["id"]) != [],
        timeout=30,
        what="the department's first confirmation attempt",
    )
    with stack.client() as c:
        assert c.post(f"/v1/payments/{payment['id']}/cancel").status_code == 202
    final = stack.wait_for(payment["id"], timeout=30)
    assert final["state"] == "cancelled", final
    assert [h["status"] for h in issuer_holds(stack, payment["id"])] == ["voided"]
    wait_until(
        lambda: "department_revoke_pending" in names(stack, payment["id"]),
        timeout=30,
        what="department_revoke_pending",
    )
    assert "department_revoked" not in names(stack, payment["id"])

    department(stack, "up")
    try:
        wait_until(  # the revoke's backoff reaches a minute
            lambda: "department_revoked" in names(stack, payment["id"]),
            timeout=90,
            what="department_revoked",
        )
    finally:
        department(stack, "down")
    assert [c["status"] for c in confirmations(stack, payment["id"])] == ["revoked"]
    cancelled = [e for e in events(stack, payment["id"]) if e["event"].startswith("cancelled")]
    assert [(e["event"], e["actor"]) for e in cancelled] == [
        ("cancelled_by_department", "department")
    ]


def test_a_method_whose_update_was_lost_can_be_sent_again(stack: Stack) -> None:
    """A Temporal restart can lose a workflow task after its database step ran: the records
    say `authorising` while the workflow still waits for the payer's method. The payer's
    retry is let through to the workflow, which decides."""
    payment = stack.created()
    # What the lost task's database step wrote: the state and the method (as the payer's
    # retry below submits it), so that the books still verify (tests/test_ledger.py).
    stack.fetch(
        "UPDATE payments SET state = 'authorising', method_type = 'e_dirham', "
        "method_brand = 'e_dirham', method_last4 = '0017' WHERE id = $1",
        payment["id"],
    )
    stack.fetch(
        "INSERT INTO payment_events (payment_id, event, from_state, to_state, actor, dedupe_key) "
        "VALUES ($1, 'method_submitted', 'reserved', 'authorising', 'workflow', $2)",
        payment["id"],
        f"{payment['id']}:method_submitted",
    )
    response = stack.authorise(payment, e_dirham("7840000000000017"))
    assert response.status_code in (200, 202), response.text
    final = stack.wait_for(payment["id"])
    assert final["state"] == "succeeded", final
    assert_paid_once(stack, final, issuer_holds(stack, final["id"]))
    again = stack.authorise(payment, e_dirham("7840000000000017"))
    assert again.status_code == 409
    assert again.json()["code"] == "not_awaiting_method"


def test_ending_an_already_ended_payment_keeps_its_first_end(stack: Stack) -> None:
    """The records ended the payment (a lost task's cancel); the workflow later ends it
    another way (its window closes): the first end stands, nothing is stuck."""
    from domain.models import Transition
    from epay.db import create_pool
    from store import payments

    payment = stack.created()
    stack.fetch("UPDATE payments SET state = 'cancelled' WHERE id = $1", payment["id"])

    async def close(event: str) -> str:
        pool = await create_pool(stack.dsn)
        try:
            return await payments.close_unpaid(
                pool, Transition(payment["id"], event, failure_code="payment_window_expired")
            )
        finally:
            await pool.close()

    assert asyncio.run(close("expired")) == "cancelled"
    [row] = stack.fetch("SELECT status FROM fee_reservations WHERE payment_id = $1", payment["id"])
    assert row["status"] == "released"
    with stack.client() as c:  # the workflow, still waiting, is cancelled and ends alike
        assert c.post(f"/v1/payments/{payment['id']}/cancel").status_code == 409


def test_the_payers_and_departments_updates_cannot_be_sent_from_temporal(stack: Stack) -> None:
    """What anyone with the Temporal UI's "Send an Update" could try: refused, since only
    the API holds the secret behind the proofs; the API's own calls still work."""
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.exceptions import ApplicationError

    from domain.cards import MethodSummary
    from domain.models import PaymentMethodSubmission
    from workflows.payment import PaymentWorkflow

    payment = stack.created()

    async def forge() -> list[str | None]:
        client = await stack.temporal_client()
        handle = client.get_workflow_handle(payment["workflow_id"])
        method = PaymentMethodSubmission(
            MethodSummary(MethodType.CARD, "visa", "4242"), "vt_forged"
        )
        codes: list[str | None] = []
        for update, args in (
            (PaymentWorkflow.submit_payment_method, [method]),
            (PaymentWorkflow.submit_challenge_answer, ["123456"]),
            (PaymentWorkflow.cancel, ["forged from the UI"]),
        ):
            try:
                await handle.execute_update(update, args=args)
                codes.append(None)
            except WorkflowUpdateFailedError as err:
                cause = err.cause
                codes.append(cause.type if isinstance(cause, ApplicationError) else repr(cause))
        return codes

    assert asyncio.run(forge()) == ["update_not_proven"] * 3
    assert stack.get(payment["id"])["state"] == "reserved"
    assert stack.authorise(payment, e_dirham("7840000000000017")).status_code in (200, 202)
    assert stack.wait_for(payment["id"])["state"] == "succeeded"
