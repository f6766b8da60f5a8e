"""Record the workflow histories that every release must still replay.

Run against a stack with ``make record-histories``; it writes one JSON file per scenario
into this folder, named ``<version>_<scenario>.json`` (``EPAY_HISTORY_VERSION``, default
``v5``: bump it with each guarded workflow change). The suite (``tests/test_replay.py``)
replays each of them on the current workflow code, so a change that would break a payment
already running fails CI. Record anew only for a deliberate, versioned change (see "Safe
upgrades" in docs/design.md), and keep the old files: running payments were started by the
old code. Histories are saved with their payloads decoded (the recording stack's payload
keys are thrown away with it); the replay test decodes them through the codec, which lets
plaintext payloads pass.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

from temporalio.client import Client

from domain.models import PaymentRequest
from domain.money import fee_lines
from domain.refunds import refund_workflow_id
from tests.conftest import Stack, card, e_dirham, new_reference
from tests.support import decode_history_payloads

HERE = Path(__file__).parent
VERSION = os.environ.get("EPAY_HISTORY_VERSION", "v5")


async def _save(client: Client, workflow_id: str, name: str) -> None:
    """Saved decoded: the stack's payload keys die with it, and CI must still replay."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    codec = client.data_converter.payload_codec
    assert codec is not None
    plain = await decode_history_payloads(history.to_json(), codec)
    (HERE / f"{VERSION}_{name}.json").write_text(plain)


def _save_sync(stack: Stack, payment: dict[str, Any], name: str) -> None:
    async def save() -> None:
        client = await stack.temporal_client()
        await _save(client, payment["workflow_id"], name)

    asyncio.run(save())


def _closed(stack: Stack, workflow_id: str) -> None:
    async def wait() -> None:
        client = await stack.temporal_client()
        for _ in range(300):
            desc = await client.get_workflow_handle(workflow_id).describe()
            if desc.close_time is not None:
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"{workflow_id} never closed")

    asyncio.run(wait())


def _finished(stack: Stack, payment: dict[str, Any], name: str) -> None:
    _closed(stack, payment["workflow_id"])
    _save_sync(stack, payment, name)


def test_record_histories(stack: Stack) -> None:
    paid = stack.pay(e_dirham("7840000000000017"))
    assert paid["state"] == "succeeded"
    _finished(stack, paid, "succeeded_e_dirham")

    challenged = stack.created()
    assert stack.authorise(challenged, card("4000000000003220")).status_code in (200, 202)
    stack.wait_for(challenged["id"], {"requires_action"})
    assert stack.three_d_secure(challenged, "123456").status_code in (200, 202)
    assert stack.wait_for(challenged["id"])["state"] == "succeeded"
    _finished(stack, challenged, "succeeded_3ds_card")

    declined = stack.pay(card("4000000000000002"))
    assert declined["failure"]["code"] == "card_declined"
    _finished(stack, declined, "declined_card")

    rejected = stack.pay(card("4242424242424242"), reference=new_reference("REJECT-"))
    assert rejected["failure"]["code"] == "department_rejected"
    _finished(stack, rejected, "department_rejected")

    cancelled = stack.created()
    with stack.client() as c:
        assert c.post(f"/v1/payments/{cancelled['id']}/cancel").status_code == 202
    assert stack.wait_for(cancelled["id"])["state"] == "cancelled"
    _finished(stack, cancelled, "cancelled_by_department")

    stuck = stack.created(reference=new_reference("DOWN-"))
    assert stack.authorise(stuck, e_dirham("7840000000000017")).status_code in (200, 202)
    stack.wait_for(stuck["id"], {"confirming"})
    time.sleep(3)  # a few confirmation attempts in its history
    _save_sync(stack, stuck, "stopped_mid_confirmation")

    async def expire() -> None:
        client = await stack.temporal_client()
        payment_id = "pay_" + uuid.uuid4().hex
        req = PaymentRequest(
            payment_id=payment_id,
            department="DM",
            service_code="HEALTH_CERT",
            reference=new_reference("WINDOW-"),
            lines=fee_lines(22000, exempt_from_added_fees=False),
            payment_window_seconds=2,
        )
        handle = await client.start_workflow(
            "PaymentWorkflow",
            req,
            id=f"payment-{payment_id}",
            task_queue=stack.env["EPAY_TASK_QUEUE"],
        )
        outcome = await handle.result()
        assert outcome["state"] == "expired", outcome
        await _save(client, handle.id, "expired")

    asyncio.run(expire())


def test_record_refund_history(stack: Stack) -> None:
    """A partial refund of a card payment: money back, reversing journal, department told."""
    paid = stack.pay(card("4242424242424242"))
    assert paid["state"] == "succeeded"
    with stack.client() as c:
        response = c.post(
            f"/v1/payments/{paid['id']}/refunds", json={"amount": 5000, "reason": "recorded"}
        )
    assert response.status_code == 201, response.text
    workflow_id = refund_workflow_id(response.json()["id"])
    _closed(stack, workflow_id)

    async def save() -> None:
        await _save(await stack.temporal_client(), workflow_id, "refund_card")

    asyncio.run(save())
