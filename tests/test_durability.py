"""A worker killed mid-payment loses nothing: another worker finishes the payment."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from temporalio.worker import Replayer

from tests.conftest import Stack, card, new_reference
from tests.support import wait_until
from tests.support.partners import acquirer_records, confirmations
from tests.support.payments import assert_paid_once
from workflows.payment import PaymentWorkflow


def _wait_for_the_department_call(stack: Stack, payment: dict[str, Any]) -> None:
    """Until the department has the payment's confirmation call: the sandbox records it as
    it arrives, before a SLOW- department takes its five seconds to answer."""
    wait_until(
        lambda: bool(confirmations(stack, payment["id"])),
        timeout=30,
        what="the department's confirmation call",
    )


def test_worker_killed_while_confirming_with_a_slow_department(stack: Stack) -> None:
    payment = stack.created(reference=new_reference("SLOW-"))
    stack.authorise(payment, card("4242424242424242"))
    stack.wait_for(payment["id"], {"confirming"})
    _wait_for_the_department_call(stack, payment)  # in flight on the worker
    for worker in stack.workers:
        worker.kill()
    stack.workers.clear()
    assert stack.get(payment["id"])["state"] == "confirming"

    stack.start_worker()
    final = stack.wait_for(payment["id"], timeout=120)
    assert final["state"] == "succeeded"
    assert_paid_once(stack, final, acquirer_records(stack, payment["id"]))
    receipts = stack.fetch(
        "SELECT receipt_number FROM receipts WHERE payment_id = $1", payment["id"]
    )
    assert len(receipts) == 1
    [confirmation] = stack.sandbox(
        f"/departments/DM/_admin/confirmations?payment_id={payment['id']}"
    )["items"]
    assert confirmation["status"] == "confirmed"


def test_two_workers_share_the_queue(stack: Stack) -> None:
    second = stack.start_worker()
    try:
        payments = [stack.created() for _ in range(6)]
        for p in payments:
            stack.authorise(p, card("4242424242424242"))
        finals = [stack.wait_for(p["id"]) for p in payments]
        assert {f["state"] for f in finals} == {"succeeded"}
    finally:
        second.stop()
        stack.workers.remove(second)


def test_sigterm_lets_the_call_in_flight_finish_before_the_worker_exits(stack: Stack) -> None:
    payment = stack.created(reference=new_reference("SLOW-"))
    stack.authorise(payment, card("4242424242424242"))
    stack.wait_for(payment["id"], {"confirming"})
    _wait_for_the_department_call(stack, payment)  # the five-second call is in flight
    draining = list(stack.workers)
    stack.workers.clear()
    for worker in draining:
        worker.proc.send_signal(signal.SIGTERM)
    for worker in draining:
        assert worker.proc.wait(timeout=40) == 0, worker.log()[-2000:]
        assert "draining" in worker.log()
    [confirmation] = stack.sandbox(
        f"/departments/DM/_admin/confirmations?payment_id={payment['id']}"
    )["items"]
    assert confirmation["status"] == "confirmed"
    assert confirmation["attempts"] == 1

    stack.start_worker()
    final = stack.wait_for(payment["id"], timeout=120)
    assert final["state"] == "succeeded"
    [confirmation] = stack.sandbox(
        f"/departments/DM/_admin/confirmations?payment_id={payment['id']}"
    )["items"]
    assert confirmation["attempts"] == 1  # finished during the drain, never asked again


def test_every_history_of_the_run_replays_on_the_current_workflow_code(stack: Stack) -> None:
    """Determinism: the workflow code rebuilds each recorded payment step by step."""
    stack.pay(card("4242424242424242"))
    stack.pay(card("4000000000000002"))

    async def replay() -> int:
        client = await stack.temporal_client()
        histories = [
            await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
            async for wf in client.list_workflows(
                "ExecutionStatus = 'Completed' AND WorkflowType = 'PaymentWorkflow'"
            )
        ]
        replayer = Replayer(workflows=[PaymentWorkflow], data_converter=client.data_converter)
        for history in histories:
            await replayer.replay_workflow(history)  # raises on any nondeterminism
        return len(histories)

    assert asyncio.run(replay()) >= 2
