"""What an operator sees of a payment in Temporal: search attributes that find it by state,
whom it waits for, department, reference, method, amount and failure, and a status query
and current details that say where it is and until when."""

from __future__ import annotations

import asyncio
import subprocess
import time
from datetime import datetime
from typing import Any

from temporalio.client import Client

from domain.models import PaymentStatus
from domain.references import reference_key
from tests.conftest import Stack, card, e_dirham, new_reference
from tests.support import BIN, free_port, port_open, wait_until
from workflows.payment import PaymentWorkflow


async def _client(stack: Stack) -> Client:
    return await stack.temporal_client()


def find(stack: Stack, query: str, expected: int, timeout: float = 15) -> list[str]:
    """Workflow ids a visibility query finds, once it finds ``expected`` of them."""

    async def run() -> list[str]:
        client = await _client(stack)
        deadline = time.monotonic() + timeout
        while True:
            ids = [wf.id async for wf in client.list_workflows(query)]
            if len(ids) == expected or time.monotonic() > deadline:
                return ids
            await asyncio.sleep(0.3)

    return asyncio.run(run())


def status(stack: Stack, payment: dict[str, Any]) -> PaymentStatus:
    async def run() -> PaymentStatus:
        client = await _client(stack)
        handle = client.get_workflow_handle_for(PaymentWorkflow.run, payment["workflow_id"])
        return await handle.query(PaymentWorkflow.status)

    return asyncio.run(run())


def by_reference(payment: dict[str, Any]) -> str:
    return f"PaymentReference = '{reference_key(payment['reference'])}'"


def test_a_payment_stuck_with_its_department_is_found_and_explains_itself(stack: Stack) -> None:
    stuck = stack.created(reference=new_reference("DOWN-"))
    stack.authorise(stuck, e_dirham("7840000000000017"))
    stack.wait_for(stuck["id"], {"confirming"})
    waiting = stack.created(reference=stuck["reference"].replace("DOWN-", "WAIT-"))

    query = f"PaymentState = 'confirming' AND Department = 'DM' AND {by_reference(stuck)}"
    assert find(stack, query, 1) == [stuck["workflow_id"]]
    assert find(stack, f"WaitingFor = 'department' AND {by_reference(stuck)}", 1) == [
        stuck["workflow_id"]
    ]
    assert find(stack, f"WaitingFor = 'payer' AND {by_reference(waiting)}", 1) == [
        waiting["workflow_id"]
    ]
    amount = stuck["amount"]["total"]
    assert find(
        stack, f"AmountFils = {amount} AND PaymentMethod = 'e_dirham' AND {by_reference(stuck)}", 1
    ) == [stuck["workflow_id"]]

    now = status(stack, stuck)
    assert (now.state, now.waiting_for) == ("confirming", "department")
    assert now.doing.startswith("confirming with DM")
    assert now.gives_up_at is not None
    assert datetime.fromisoformat(now.gives_up_at) > datetime.fromisoformat(
        str(now.step_started_at)
    )
    assert now.method is not None
    assert now.method.last4 == "0017"
    assert not now.capture_decided
    assert not now.compensating

    payer = status(stack, waiting)
    assert (payer.state, payer.waiting_for) == ("reserved", "payer")
    assert payer.doing == "waiting for the payer to pay"
    # The workflow's window and the API's expires_at are each worked out from the start: the
    # same moment give or take the milliseconds between them (a minute's edge may fall there).
    assert payer.gives_up_at is not None
    gap = datetime.fromisoformat(payer.gives_up_at) - datetime.fromisoformat(
        waiting["expires_at"].replace("Z", "+00:00")
    )
    assert abs(gap.total_seconds()) < 5, (payer.gives_up_at, waiting["expires_at"])

    with stack.client() as c:  # leave nothing behind
        for payment in (stuck, waiting):
            assert c.post(f"/v1/payments/{payment['id']}/cancel").status_code == 202
    for payment in (stuck, waiting):
        assert stack.wait_for(payment["id"], timeout=30)["state"] == "cancelled"
    assert find(stack, f"PaymentState = 'cancelled' AND {by_reference(stuck)}", 1)


def test_ended_payments_say_how_they_ended(stack: Stack) -> None:
    paid = stack.pay(e_dirham("7840000000000017"))
    declined = stack.pay(card("4000000000000002"))
    assert find(stack, f"PaymentState = 'succeeded' AND {by_reference(paid)}", 1)
    assert find(
        stack,
        f"PaymentState = 'failed' AND FailureCode = 'card_declined' AND PaymentMethod = 'card' "
        f"AND WaitingFor = 'nobody' AND {by_reference(declined)}",
        1,
    ) == [declined["workflow_id"]]

    async def summary() -> str | None:
        client = await _client(stack)
        desc = await client.get_workflow_handle(paid["workflow_id"]).describe()
        return await desc.static_summary()

    text = asyncio.run(summary())
    assert text is not None
    assert paid["reference"] in text
    assert "AED" in text
    done = status(stack, paid)
    assert done.state == "succeeded"
    assert done.doing.startswith("succeeded: receipt DM-")


def test_epay_temporal_search_attributes_registers_them_on_a_namespace(stack: Stack) -> None:
    """On a real cluster the attributes are registered by a command (the dev servers of
    ``make run`` and the tests get them as flags): here, a bare dev server."""
    port = free_port()
    server = stack.spawn(
        "temporal-bare",
        str(BIN / "temporal"),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--headless",
        "--log-level",
        "error",
    )
    env = dict(stack.env, TEMPORAL_ADDRESS=f"127.0.0.1:{port}")
    try:
        wait_until(port_open(port), timeout=30, what="bare Temporal", proc=server)
        command = [str(BIN / "epay"), "temporal", "search-attributes"]
        first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert first.returncode == 0, first.stderr
        assert "PaymentState" in first.stdout
        assert "WaitingFor" in first.stdout
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0
        assert "none (all were registered)" in again.stdout
    finally:
        server.stop()
