"""An Idempotency-Key after a 503: the caller stopped waiting for the reservation
(`reservation_unavailable`, "retry with the same Idempotency-Key"), and the reservation
landed afterwards. A retry with the key gets that payment while it stands, and a new payment
once its workflow has ended it for answering too late; never a 409 `reference_in_progress`
that the key then keeps for 24 hours.

The caller stops waiting sooner than the workflow answers through an API of the test's own
that waits 2 s (`EPAY_RESERVATION_WAIT_SECONDS`), while the payments table is locked; the
session's API, with its 45 s, takes the retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from domain.models import PaymentRequest
from domain.money import fee_lines
from epay.db import create_pool
from epay.temporal import payment_workflow_id
from store import payments
from tests.conftest import Stack, new_reference
from tests.support import apis, wait_until
from tests.support.apis import create_with_key
from workflows.payment import RESERVE_START_LIMIT


@pytest.fixture(scope="module")
def impatient_api(stack: Stack) -> Iterator[str]:
    """An API of the session's stack that waits 2 s for a reservation instead of 45 s."""
    with apis.impatient_api(stack) as url:
        yield url


@contextlib.contextmanager
def _holding(dsn: str, lock: str, *args: Any) -> Iterator[None]:
    """``lock`` (a LOCK or a SELECT ... FOR UPDATE) held in an open transaction until the
    block ends, from a connection of its own."""
    locked, done = threading.Event(), threading.Event()

    async def hold() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            async with conn.transaction():
                await conn.execute(lock, *args)
                locked.set()
                await asyncio.to_thread(done.wait)
        finally:
            await conn.close()

    holder = threading.Thread(target=asyncio.run, args=(hold(),))
    holder.start()
    try:
        assert locked.wait(10), f"could not take {lock}"
        yield
    finally:
        done.set()
        holder.join(10)


def _assert_503(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "reservation_unavailable", response.text


def _payments_of(stack: Stack, reference: str) -> list[dict[str, Any]]:
    return stack.fetch(
        "SELECT id, state, failure_code FROM payments WHERE reference = $1 ORDER BY created_at",
        reference,
    )


def test_a_reservation_that_lands_after_the_503_is_what_a_retry_with_the_key_gets(
    stack: Stack, impatient_api: str
) -> None:
    key, reference = uuid.uuid4().hex, new_reference()
    with _holding(stack.dsn, "LOCK TABLE payments IN SHARE MODE"):  # no reservation lands
        first = create_with_key(stack, impatient_api, reference, key)
    _assert_503(first)
    wait_until(
        lambda: [p["state"] for p in _payments_of(stack, reference)] == ["reserved"],
        timeout=30,
        what="the late reservation",
    )
    [late] = _payments_of(stack, reference)

    retry = stack.create(reference=reference, headers={"Idempotency-Key": key})
    assert retry.status_code == 200, retry.text
    assert (retry.json()["id"], retry.json()["state"]) == (late["id"], "reserved")
    again = stack.create(reference=reference, headers={"Idempotency-Key": key})
    assert again.status_code == 200, again.text
    assert again.json()["id"] == late["id"], again.text


async def _reserve_without_telling_the_workflow(dsn: str, payment_id: str, reference: str) -> None:
    """The reservation a worker made for the payment before it died, its workflow never told
    (``store.payments.reserve_fee``, what the ``reserve_fee`` activity runs)."""
    pool = await create_pool(dsn, max_size=1)
    try:
        fee = await pool.fetchval(
            "SELECT fee FROM services WHERE department = 'DM' AND code = 'HEALTH_CERT'"
        )
        req = PaymentRequest(
            payment_id,
            "DM",
            "HEALTH_CERT",
            reference,
            fee_lines(fee, exempt_from_added_fees=False),
            payment_window_seconds=5400,
        )
        made = await payments.reserve_fee(
            pool, req, payment_workflow_id(payment_id), datetime.now(UTC)
        )
        assert made.ok, made
    finally:
        await pool.close()


def test_a_reservation_its_workflow_ends_for_answering_too_late_does_not_hold_the_key(
    stack: Stack, impatient_api: str
) -> None:
    """The workflow's first task runs after the reservation may start, so it releases the
    reservation that a lost worker made. While that release waits on the database, a retry
    is told 503 again (the payment is being ended, not live); once released, a retry with
    the key starts a new payment."""
    key, reference = uuid.uuid4().hex, new_reference()
    for worker in stack.workers:
        worker.stop()
    stack.workers.clear()
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(create_with_key, stack, impatient_api, reference, key)
            claim: list[dict[str, Any]] = []
            while not claim:
                claim = stack.fetch("SELECT payment_id FROM idempotency_keys WHERE key = $1", key)
                time.sleep(0.05)
            first = waiting.result(timeout=60)
        _assert_503(first)
        late = claim[0]["payment_id"]
        asyncio.run(_reserve_without_telling_the_workflow(stack.dsn, late, reference))
        time.sleep(max(0.0, RESERVE_START_LIMIT.total_seconds() + 1 - (time.monotonic() - started)))
        with _holding(stack.dsn, "SELECT 1 FROM payments WHERE id = $1 FOR UPDATE", late):
            stack.start_worker()
            while_ending = stack.create(reference=reference, headers={"Idempotency-Key": key})
            _assert_503(while_ending)
            assert [(p["id"], p["state"]) for p in _payments_of(stack, reference)] == [
                (late, "reserved")
            ]
    finally:
        if not stack.workers:
            stack.start_worker()
    wait_until(
        lambda: _payments_of(stack, reference)[0]["state"] == "failed",
        timeout=60,
        what="the workflow's release of its late reservation",
    )
    assert _payments_of(stack, reference)[0]["failure_code"] == "reservation_failed"

    retry = stack.create(reference=reference, headers={"Idempotency-Key": key})
    assert retry.status_code == 201, retry.text
    fresh = retry.json()
    assert fresh["id"] != late
    assert fresh["state"] == "reserved"
    again = stack.create(reference=reference, headers={"Idempotency-Key": key})
    assert again.status_code == 200, again.text
    assert again.json()["id"] == fresh["id"], again.text
