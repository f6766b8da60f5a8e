"""The payment window (90 minutes by default) closes on a payer who never pays, and leaves
nothing behind. Runs on a time-skipping Temporal dev server, so the 90 minutes pass in
seconds, with a worker in this process over the test database and the sandbox."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
from temporalio.testing import WorkflowEnvironment

from domain.cards import MethodSummary, MethodType
from domain.models import PaymentMethodSubmission, PaymentOutcome, PaymentRequest
from domain.money import fee_lines
from domain.search import SEARCH_ATTRIBUTES
from epay import crypto
from epay.config import Settings
from epay.db import create_pool
from epay.temporal import data_converter
from store import vault
from tests.conftest import Stack, new_reference
from tests.support import BIN
from workers.main import payment_worker
from workflows.payment import PaymentWorkflow

DEFAULT_WINDOW = 90 * 60


async def _run_expiring_payment(
    stack: Stack, *, with_challenge: bool
) -> tuple[PaymentOutcome, str]:
    settings = Settings.from_env_mapping(stack.env)
    env = await WorkflowEnvironment.start_time_skipping_v2(
        dev_server_existing_path=str(BIN / "temporal"),
        data_converter=data_converter(settings.payload_keys),
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.WorkflowTimeSkippingEnabled=true",
        ],
    )
    pool = await create_pool(stack.dsn)
    task_queue = f"window-{uuid.uuid4().hex[:6]}"
    try:
        async with (
            httpx.AsyncClient(timeout=5) as http,
            payment_worker(env.client, task_queue, pool, http, settings),
        ):
            payment_id = "pay_" + uuid.uuid4().hex
            req = PaymentRequest(
                payment_id=payment_id,
                department="DM",
                service_code="HEALTH_CERT",
                reference=new_reference("WINDOW-"),
                lines=fee_lines(22000, exempt_from_added_fees=False),
                payment_window_seconds=DEFAULT_WINDOW,
            )
            handle = await env.client.start_workflow(
                PaymentWorkflow.run, req, id=f"payment-{payment_id}", task_queue=task_queue
            )
            if with_challenge:
                await _enter_challenge(handle, pool, settings, payment_id)
            outcome: PaymentOutcome = await asyncio.wait_for(handle.result(), timeout=120)
            return outcome, payment_id
    finally:
        await pool.close()
        await env.shutdown()


async def _enter_challenge(handle: Any, pool: Any, settings: Settings, payment_id: str) -> None:
    """Hand the workflow a 3-D Secure card, then never answer the challenge."""
    await handle.execute_update(PaymentWorkflow.reservation)
    token = crypto.new_vault_token()
    data = {
        "card_number": "4000000000003220",
        "expiry_month": 12,
        "expiry_year": 2031,
        "cvv": "737",
        "cardholder_name": "Test Payer",
    }
    nonce, ciphertext = crypto.seal(settings.vault_key, token, payment_id, data)
    await vault.vault_put(pool, token, payment_id, nonce, ciphertext)
    submission = PaymentMethodSubmission(MethodSummary(MethodType.CARD, "visa", "3220"), token)
    await handle.execute_update(PaymentWorkflow.submit_payment_method, submission)
    for _ in range(200):
        if await handle.query(PaymentWorkflow.state) == "requires_action":
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the payment never reached requires_action")


def _assert_expired(stack: Stack, outcome: PaymentOutcome, payment_id: str) -> None:
    assert outcome.state == "expired"
    assert outcome.failure_code == "payment_window_expired"
    [row] = stack.fetch(
        "SELECT p.state, p.failure_code, p.created_at, p.expires_at, r.status FROM payments p "
        "JOIN fee_reservations r ON r.payment_id = p.id WHERE p.id = $1",
        payment_id,
    )
    assert row["state"] == "expired"
    assert row["failure_code"] == "payment_window_expired"
    assert row["status"] == "released"
    assert row["expires_at"] - row["created_at"] == timedelta(seconds=DEFAULT_WINDOW)
    assert stack.fetch("SELECT 1 FROM card_vault WHERE payment_id = $1", payment_id) == []


def test_unpaid_payment_expires_after_its_window(stack: Stack) -> None:
    outcome, payment_id = asyncio.run(_run_expiring_payment(stack, with_challenge=False))
    _assert_expired(stack, outcome, payment_id)


def test_unanswered_challenge_expires_and_voids_the_authorisation(stack: Stack) -> None:
    outcome, payment_id = asyncio.run(_run_expiring_payment(stack, with_challenge=True))
    _assert_expired(stack, outcome, payment_id)
    records = stack.sandbox(f"/acquirer/_admin/authorisations?reference={payment_id}")["items"]
    assert [r["status"] for r in records] == ["voided"]
