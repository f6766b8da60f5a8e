"""Record the workflow histories that every release must still replay.

Run against a stack with ``make record-histories``; it writes one JSON file per scenario
into this folder, named ``<version>_<scenario>.json`` (``EPAY_HISTORY_VERSION``, default
``v8``: bump it with each guarded workflow change). Every workflow type the worker runs has
a scenario here: payments (among them the payment page's second method), a refund, a sweep,
a webhook delivery and a day's settlement. The suite (``tests/test_replay.py``) replays each
file on the current workflow code, so a change that would break a workflow already running
fails CI, and ``tests/test_patches.py`` checks that each patch in ``workflows/patches.py`` has
histories on both sides of it. Record anew only for a deliberate, versioned change (see "Safe
upgrades" in docs/design.md), and keep the old files: running workflows were started by the
old code. Record on committed code (a clean export of a commit, not a work tree with changes
in progress): the files must be what that commit's workflows write. Histories are saved with
their payloads decoded (the recording stack's payload keys are thrown away with it); the
replay test decodes them through the codec, which lets plaintext payloads pass.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from commands.schedules import SETTLEMENT_SCHEDULE_ID, SWEEPER_SCHEDULE_ID, sweep_request
from domain.calendar import business_day
from domain.models import OutOfBandConfirmation, PaymentRequest
from domain.money import fee_lines
from domain.refunds import refund_workflow_id
from domain.settlement import SettlementRequest
from domain.sweeper import SweepOutcome, SweepSummary
from tests.conftest import Stack, card, e_dirham, new_reference
from tests.history_files import read
from tests.support import decode_history_payloads, wait_until
from tests.support.payer import PayerPage
from workflows import patches
from workflows.payment import PaymentWorkflow
from workflows.settlement import SettlementWorkflow
from workflows.sweeper import SweeperWorkflow

HERE = Path(__file__).parent
VERSION = os.environ.get("EPAY_HISTORY_VERSION", "v8")


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


def test_record_second_method_history(stack: Stack) -> None:
    """The payment page's second method: a declined card leaves the payment open (the page
    submits with may_try_again), then an e-Dirham card pays."""
    payment = stack.created()
    page = PayerPage(stack, payment)
    declined = page.authorise(card("4000000000000002"))
    assert declined.status_code in (200, 202), declined.text
    wait_until(
        lambda: page.status().json().get("message") == "declined",
        timeout=60,
        what="the page offering another method",
    )
    assert stack.get(payment["id"])["state"] == "reserved"
    paid = page.authorise(e_dirham("7840000000000017"))
    assert paid.status_code in (200, 202), paid.text
    assert stack.wait_for(payment["id"])["state"] == "succeeded"
    _finished(stack, payment, "second_method_on_the_page")


def _has_marker(name: str, patch_id: str) -> bool:
    return patch_id in read(HERE / f"{VERSION}_{name}.json").markers


def test_record_confirmation_recorded_during_an_attempt_history(stack: Stack) -> None:
    """An operator records the department's confirmation while an attempt is in flight at
    a slow department, and that attempt gets no answer (the sandbox is killed): the
    recorded confirmation wins and the payment captures once the sandbox is back."""
    payment = stack.created(reference=new_reference("SLOW-"))
    assert stack.authorise(payment, e_dirham("7840000000000017")).status_code in (200, 202)
    stack.wait_for(payment["id"], {"confirming"})

    async def confirm() -> None:
        client = await stack.temporal_client()
        await client.get_workflow_handle(payment["workflow_id"]).execute_update(
            PaymentWorkflow.operator_record_confirmation,
            OutOfBandConfirmation("recorder", "confirmed by telephone", "DM-PHONE-1"),
        )

    asyncio.run(confirm())
    stack.restart_sandbox()  # within the slow department's seconds: the attempt in flight
    final = stack.wait_for(payment["id"])
    assert final["state"] == "succeeded"
    assert final["department_confirmation"] == "DM-PHONE-1"
    _finished(stack, payment, "confirmation_recorded_during_an_attempt")
    assert _has_marker("confirmation_recorded_during_an_attempt", patches.CONFIRMATION_WINS)


def _acquirer(stack: Stack, switch: str) -> None:
    httpx.post(f"{stack.sandbox_url}/acquirer/_admin/{switch}", timeout=10).raise_for_status()


def _challenge_refused(stack: Stack, payment_id: str) -> Callable[[], bool]:
    """Whether the acquirer has refused the payment's challenge, read from the sandbox's
    state file: its admin API answers too late to win the race with the void."""
    [auth] = stack.sandbox(f"/acquirer/_admin/authorisations?reference={payment_id}")["items"]
    state = sqlite3.connect(f"file:{stack.log_dir / 'sandbox.db'}?mode=ro", uri=True)

    def refused() -> bool:
        row = state.execute(
            "SELECT body FROM documents WHERE kind = 'authorisation' AND id = ?", (auth["id"],)
        ).fetchone()
        return bool(json.loads(row[0])["status"] == "failed")

    return refused


def test_record_cancel_during_a_challenge_void_history(stack: Stack) -> None:
    """On the payment page a wrong 3-D Secure code fails the challenge; the acquirer is
    down when its void comes, and a Temporal cancel stops the void as it retries: the
    cancel's compensation ends the payment once the acquirer is back.

    No sandbox switch holds a void, so the recorder makes the window: as soon as the
    acquirer has refused the challenge (its state file says so) it freezes the worker
    (SIGSTOP), switches the acquirer off and lets the worker go on, which then meets the
    acquirer down. Should the void have gone out before the freeze, it tries again with a
    new payment."""
    worker = stack.workers[0].proc
    for _ in range(5):
        payment = stack.created()
        page = PayerPage(stack, payment)
        assert page.authorise(card("4000000000003220")).status_code in (200, 202)
        stack.wait_for(payment["id"], {"requires_action"})
        submit = threading.Thread(  # the page waits for the challenge's answer
            target=page.client.post,
            args=(f"/pay/{payment['id']}/3ds",),
            kwargs={"json": {"otp": "000000"}, "headers": page.headers()},
        )
        refused = _challenge_refused(stack, payment["id"])
        submit.start()
        deadline = time.monotonic() + 30
        while not refused() and time.monotonic() < deadline:
            pass
        worker.send_signal(signal.SIGSTOP)
        try:
            _acquirer(stack, "down")
        finally:
            worker.send_signal(signal.SIGCONT)
        submit.join(timeout=60)
        if asyncio.run(_void_retrying(stack, payment["workflow_id"])):
            break
        _acquirer(stack, "up")  # the void went out before the freeze: the payer may retry
        stack.wait_for(payment["id"], {"reserved"})
    else:
        raise AssertionError("the void of a failed challenge never met the acquirer down")

    async def cancel() -> None:
        client = await stack.temporal_client()
        await client.get_workflow_handle(payment["workflow_id"]).cancel()

    try:
        asyncio.run(cancel())
        time.sleep(2)  # the cancel's own void retries while the acquirer is down
    finally:
        _acquirer(stack, "up")
    assert stack.wait_for(payment["id"])["state"] == "cancelled"
    _finished(stack, payment, "cancel_during_a_challenge_void")
    assert _has_marker("cancel_during_a_challenge_void", patches.CANCEL_DURING_CHALLENGE_VOID)


async def _void_retrying(stack: Stack, workflow_id: str) -> bool:
    """Whether the workflow's void has failed at least once and is being retried."""
    client = await stack.temporal_client()
    for _ in range(50):
        desc = await client.get_workflow_handle(workflow_id).describe()
        for pending in desc.raw_description.pending_activities:
            if pending.activity_type.name == "void_authorisation" and pending.attempt >= 2:
                return True
        if desc.close_time is not None:
            return False
        await asyncio.sleep(0.1)
    return False


def _terminate(stack: Stack, payment: dict[str, Any]) -> None:
    """An operator's Terminate, and the payment quiet past the sweeper's grace period."""

    async def terminate() -> None:
        client = await stack.temporal_client()
        await client.get_workflow_handle(payment["workflow_id"]).terminate(reason="recorded")

    asyncio.run(terminate())
    stack.fetch(
        "UPDATE payments SET updated_at = now() - interval '10 minutes' WHERE id = $1",
        payment["id"],
    )


def _sweep(stack: Stack, name: str) -> SweepSummary:
    """One sweep, as the schedule starts it, saved under ``name``."""

    async def sweep() -> SweepSummary:
        client = await stack.temporal_client()
        handle = await client.start_workflow(
            SweeperWorkflow.run,
            sweep_request(stack.settings()),
            id=f"{SWEEPER_SCHEDULE_ID}-recorded-{uuid.uuid4().hex[:8]}",
            task_queue=stack.env["EPAY_TASK_QUEUE"],
        )
        summary = await handle.result()
        await _save(client, handle.id, name)
        return summary

    return asyncio.run(sweep())


def _outcomes(summary: SweepSummary) -> dict[str, SweepOutcome]:
    return {p.payment_id: p.outcome for p in summary.payments}


def test_record_sweeper_history(stack: Stack) -> None:
    """A sweep that finds a payment whose workflow was terminated during its 3-D Secure
    challenge: it voids the authorisation and closes the payment, then restarts stranded
    refunds (patch sweep-refunds)."""
    payment = stack.created()
    stack.authorise(payment, card("4000000000003220"))
    stack.wait_for(payment["id"], {"requires_action"})
    _terminate(stack, payment)
    summary = _sweep(stack, "sweeper_terminated_challenge")
    assert _outcomes(summary) == {payment["id"]: SweepOutcome.CANCELLED}, summary
    assert stack.get(payment["id"])["state"] == "cancelled"


def test_record_sweeper_capture_refused_history(stack: Stack) -> None:
    """A sweep that finds a payment stranded at capturing (its workflow terminated while the
    acquirer was down for the capture) whose authorisation has since lapsed: the capture is
    refused for good and the payment ends failed, undone (patch sweep-final-refusals)."""
    payment = stack.created(reference=new_reference("SLOW-"))
    pid = payment["id"]
    assert stack.authorise(payment, card("4242424242424242")).status_code in (200, 202)
    stack.wait_for(pid, {"confirming"})
    _acquirer(stack, "down")
    try:
        stack.wait_for(pid, {"capturing"})
        _terminate(stack, payment)
    finally:
        _acquirer(stack, "up")
    [auth] = stack.sandbox(f"/acquirer/_admin/authorisations?reference={pid}")["items"]
    lapsed = httpx.post(  # the acquirer's own doing: the authorisation lapses
        f"{stack.sandbox_url}/acquirer/authorisations/{auth['id']}/void",
        headers={"Idempotency-Key": f"lapse-{pid}"},
        timeout=10,
    )
    assert lapsed.status_code == 200, lapsed.text
    summary = _sweep(stack, "sweeper_capture_refused")
    assert _outcomes(summary) == {pid: SweepOutcome.CAPTURE_FAILED}, summary
    final = stack.get(pid)
    assert final["state"] == "failed", final
    assert final["failure"]["code"] == "capture_failed", final
    assert _has_marker("sweeper_capture_refused", patches.SWEEP_FINAL_REFUSALS)


def test_record_webhook_delivery_history(stack: Stack) -> None:
    """A payment's event delivered to its department's endpoint after one refused attempt
    (the stack retries webhooks after seconds)."""
    receiver = f"{stack.sandbox_url}/departments/DM"
    with stack.client() as c:
        created = c.post("/v1/webhooks", json={"url": f"{receiver}/webhooks"})
        assert created.status_code == 201, created.text
        try:
            httpx.post(f"{receiver}/_admin/webhooks/down", timeout=10).raise_for_status()
            paid = stack.pay(card("4242424242424242"))
            assert paid["state"] == "succeeded"
            wait_until(
                lambda: bool(stack.fetch(_REFUSED, paid["id"])),
                timeout=60,
                what="an attempt refused while the endpoint is down",
            )
            httpx.post(f"{receiver}/_admin/webhooks/up", timeout=10).raise_for_status()
            [event] = stack.fetch("SELECT id FROM webhook_events WHERE payment_id = $1", paid["id"])
            workflow_id = f"webhook-{event['id']}"
            _closed(stack, workflow_id)
        finally:
            c.delete(f"/v1/webhooks/{created.json()['id']}")
            httpx.post(f"{receiver}/_admin/webhooks/up", timeout=10)

    async def save() -> None:
        client = await stack.temporal_client()
        outcome = await client.get_workflow_handle(workflow_id).result()
        assert outcome["delivered"], outcome
        assert outcome["attempts"] >= 2, outcome
        await _save(client, workflow_id, "webhook_delivered_after_a_refusal")

    asyncio.run(save())


_REFUSED = """SELECT d.id FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
               WHERE e.payment_id = $1 AND d.outcome = 'failed'"""


def test_record_settlement_history(stack: Stack) -> None:
    """Today's settlement (Asia/Dubai), with the payments and the refund recorded above."""

    async def settle() -> None:
        client = await stack.temporal_client()
        day = business_day(datetime.now(UTC)).isoformat()
        handle = await client.start_workflow(
            SettlementWorkflow.run,
            SettlementRequest(day),
            id=f"{SETTLEMENT_SCHEDULE_ID}-{day}-recorded",
            task_queue=stack.env["EPAY_TASK_QUEUE"],
        )
        settled = await handle.result()
        assert settled.day == day, settled
        assert settled.captured > 0, settled
        await _save(client, handle.id, "settlement_day")

    asyncio.run(settle())
