"""A payment whose workflow an operator stopped in Temporal (cancel or terminate, in the UI or
the CLI) while the read model still shows it open: every call answers from the read model,
with the payment as it stands or a problem naming its state, and never with a 500.

A Temporal cancel before capture runs the compensations, so the payment may end `cancelled`;
a terminate leaves the read model as it was (until a sweeper reconciles it). The tests accept
either, and check that each answer agrees with the read model.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowExecutionStatus

from tests.conftest import TERMINAL, Stack, card, new_reference
from tests.support.apis import create_with_key, impatient_api
from workflows.payment import RESERVE_START_LIMIT

HOW = ["terminate", "cancel"]


def _stop_in_temporal(stack: Stack, workflow_id: str, how: str) -> None:
    """What an operator does in the Temporal UI, once the workflow exists."""

    async def stop() -> None:
        client = await stack.temporal_client()
        handle = client.get_workflow_handle(workflow_id)
        deadline = time.monotonic() + 30
        while True:  # the API may still be starting it
            try:
                await handle.describe()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        if how == "terminate":
            await handle.terminate("stopped by an operator")
        else:
            await handle.cancel()

    asyncio.run(stop())


def _workflow_closed(stack: Stack, workflow_id: str) -> bool:
    async def closed() -> bool:
        client = await stack.temporal_client()
        status = (await client.get_workflow_handle(workflow_id).describe()).status
        return status != WorkflowExecutionStatus.RUNNING

    return bool(asyncio.run(closed()))


def _wait_until_stopped(stack: Stack, payment_id: str, timeout: float = 60) -> None:
    """Until the workflow has closed, or the payment has ended: a cancelled payment's
    workflow may go on retrying the revocation of a department's confirmation."""
    deadline = time.monotonic() + timeout
    while not (
        _workflow_closed(stack, f"payment-{payment_id}")
        or stack.fetch(
            "SELECT 1 FROM payments WHERE id = $1 AND state = ANY($2)", payment_id, list(TERMINAL)
        )
    ):
        assert time.monotonic() < deadline, f"payment {payment_id} still going after {timeout} s"
        time.sleep(0.2)


def _read_model_state(stack: Stack, payment_id: str) -> str:
    [row] = stack.fetch("SELECT state FROM payments WHERE id = $1", payment_id)
    return str(row["state"])


def _assert_refused(response: httpx.Response, code: str, state: str) -> None:
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code, body
    assert state in body["detail"], body


@contextmanager
def _workers_away(stack: Stack) -> Iterator[None]:
    for worker in stack.workers:
        worker.stop()
    stack.workers.clear()
    try:
        yield
    finally:
        if not stack.workers:
            stack.start_worker()


# The stages a payment can be stopped at, and how to bring it there.
STAGES: dict[str, tuple[str, dict[str, Any] | None]] = {
    "reserved": ("INV-", None),
    "requires_action": ("INV-", card("4000000000003220")),  # a 3-D Secure challenge
    "confirming": ("DOWN-", card("4242424242424242")),  # the department keeps answering 503
}


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("stage", STAGES)
def test_every_call_answers_from_the_read_model_once_the_workflow_is_stopped(
    stack: Stack, stage: str, how: str
) -> None:
    prefix, method = STAGES[stage]
    key = uuid.uuid4().hex
    payment = stack.created(reference=new_reference(prefix), headers={"Idempotency-Key": key})
    pid = payment["id"]
    if method is not None:
        stack.authorise(payment, method)
        stack.wait_for(pid, {stage})

    _stop_in_temporal(stack, payment["workflow_id"], how)
    _wait_until_stopped(stack, pid)
    state = _read_model_state(stack, pid)
    assert state == stage or (how == "cancel" and state == "cancelled"), state

    with stack.client() as c:
        got = c.get(f"/v1/payments/{pid}")
        listed = c.get("/v1/payments", params={"reference": payment["reference"]})
        events = c.get(f"/v1/payments/{pid}/events")
        cancel = c.post(f"/v1/payments/{pid}/cancel")
    authorise = stack.authorise(payment, card("4242424242424242"))
    challenge = stack.three_d_secure(payment, "123456")
    replay = stack.create(reference=payment["reference"], headers={"Idempotency-Key": key})

    assert got.status_code == 200, got.text
    assert got.json()["state"] == state, got.text
    assert listed.status_code == 200, listed.text
    assert [(p["id"], p["state"]) for p in listed.json()["items"]] == [(pid, state)]
    assert events.status_code == 200
    assert events.json()["items"][-1]["to_state"] == state
    _assert_refused(cancel, "not_cancellable", state)
    _assert_refused(authorise, "not_awaiting_method", state)
    _assert_refused(challenge, "not_awaiting_challenge", state)
    assert replay.status_code == 200, replay.text
    assert (replay.json()["id"], replay.json()["state"]) == (pid, state)
    # the refused calls changed nothing, and the refused card was not kept
    assert _read_model_state(stack, pid) == state
    assert stack.fetch("SELECT 1 FROM card_vault WHERE payment_id = $1", pid) == []


@pytest.mark.parametrize("how", HOW)
def test_a_payment_stopped_before_it_reserved_is_refused_and_can_be_retried(
    stack: Stack, how: str
) -> None:
    """The workers are away, so the workflow has not reserved yet when an operator stops it.
    The caller hears 503 `reservation_unavailable` or, had the reservation been made first,
    the payment. The key still names the stopped payment: a retry with it gets that payment
    if it was made, and otherwise a new one, which the next retry gets again."""
    key, reference = uuid.uuid4().hex, new_reference()
    with _workers_away(stack), ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(stack.create, reference=reference, headers={"Idempotency-Key": key})
        claim: list[dict[str, Any]] = []
        while not claim:
            claim = stack.fetch("SELECT * FROM idempotency_keys WHERE key = $1", key)
            time.sleep(0.05)
        _stop_in_temporal(stack, f"payment-{claim[0]['payment_id']}", how)
        if how == "cancel":
            stack.start_worker()  # a cancel takes effect when the workflow next runs
        first = waiting.result(timeout=120)
    _wait_until_stopped(stack, claim[0]["payment_id"])
    made = stack.fetch("SELECT id, state FROM payments WHERE id = $1", claim[0]["payment_id"])

    def assert_answer(response: httpx.Response, status_if_made: int) -> None:
        if made:  # the payment as the read model has it (it may have moved on since)
            assert response.status_code == status_if_made, response.text
            assert response.json()["id"] == made[0]["id"]
        else:
            assert response.status_code == 503, response.text
            assert response.json()["code"] == "reservation_unavailable"

    assert_answer(first, 201)
    retry = stack.create(reference=reference, headers={"Idempotency-Key": key})
    if made:
        assert retry.status_code == 200, retry.text
        assert retry.json()["id"] == made[0]["id"], retry.text
    else:  # nothing was reserved: the key moves to a new payment
        assert retry.status_code == 201, retry.text
        assert retry.json()["state"] == "reserved", retry.text
        assert retry.json()["id"] != claim[0]["payment_id"]
        again = stack.create(reference=reference, headers={"Idempotency-Key": key})
        assert again.status_code == 200, again.text
        assert again.json()["id"] == retry.json()["id"], again.text


def test_a_reservation_nobody_answers_within_the_wait_is_a_503_not_a_500(stack: Stack) -> None:
    """Workers away for longer than the API waits, as when an operator cancels a workflow
    that no worker is running, and for longer than the workflow may start its reservation
    (``RESERVE_START_LIMIT``): nothing was reserved. The key still names the payment that
    was not: a retry with it, once a worker is back, makes a new one.

    The caller is an API of the test's own that waits 2 s (``EPAY_RESERVATION_WAIT_SECONDS``)
    rather than the stack's 45 s: the same answer, without waiting out the 45 s."""
    key, reference = uuid.uuid4().hex, new_reference()
    with impatient_api(stack) as api_url, _workers_away(stack):
        refused = create_with_key(stack, api_url, reference, key)
        # The workflow started before that answer: its first task comes past the limit.
        time.sleep(RESERVE_START_LIMIT.total_seconds() + 1)
    assert refused.status_code == 503, refused.text
    assert refused.json()["code"] == "reservation_unavailable"
    [claim] = stack.fetch("SELECT payment_id FROM idempotency_keys WHERE key = $1", key)
    retry = stack.create(reference=reference, headers={"Idempotency-Key": key})
    assert retry.status_code == 201, retry.text
    assert retry.json()["id"] != claim["payment_id"]
