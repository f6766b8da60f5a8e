"""Refunds against the real stack: the money goes back through the payment's method, the
ledger reverses it, the department is told, and the refunds never pass the payment's total,
whatever the concurrency."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import asyncpg
import httpx

from domain.refunds import RefundFailed, RefundFailure, refund_workflow_id
from epay.db import create_pool
from store import refunds
from tests.conftest import Stack, card, e_dirham, new_reference
from tests.support import wait_until
from tests.support.partners import acquirer_record, fresh_e_dirham_card
from tests.support.refunds import department_notices, refund, refunds_of, wait_for_refund

CARD = "4242424242424242"


def ledger_by_account(stack: Stack, payment_id: str) -> dict[str, int]:
    rows = stack.fetch(
        """SELECT e.account, sum(e.amount)::bigint AS total FROM ledger_journals j
           JOIN ledger_entries e ON e.journal_id = j.id WHERE j.payment_id = $1
           GROUP BY e.account""",
        payment_id,
    )
    return {row["account"]: row["total"] for row in rows}


def journals(stack: Stack, payment_id: str) -> list[tuple[str, str | None]]:
    rows = stack.fetch(
        "SELECT kind, refund_id FROM ledger_journals WHERE payment_id = $1 ORDER BY id",
        payment_id,
    )
    return [(row["kind"], row["refund_id"]) for row in rows]


def webhook_events(stack: Stack, refund_id: str) -> list[str]:
    rows = stack.fetch("SELECT type FROM webhook_events WHERE refund_id = $1", refund_id)
    return [row["type"] for row in rows]


def test_a_full_refund_of_a_card_payment(stack: Stack) -> None:
    paid = stack.pay(card(CARD))  # a health certificate: 22000 + 1000 + 1000
    assert paid["state"] == "succeeded"
    assert paid["refund_summary"] == {"refunded": 0, "available": 24000}
    response = refund(stack, paid["id"], 24000)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["id"].startswith("rf_")
    assert created["payment_id"] == paid["id"]
    assert (created["amount"], created["currency"]) == (24000, "AED")
    assert created["reason"] == "service not delivered"
    assert created["lines"] == [
        {"code": "service_fee", "amount": 22000},
        {"code": "knowledge_fee", "amount": 1000},
        {"code": "innovation_fee", "amount": 1000},
    ]
    done = wait_for_refund(stack, paid["id"], created["id"])
    assert done["state"] == "succeeded"
    assert done["failure"] is None

    record = acquirer_record(stack, paid["id"])
    assert (record["captured_amount"], record["refunded_amount"], record["refund_count"]) == (
        24000,
        24000,
        1,
    )
    assert journals(stack, paid["id"]) == [("capture", None), ("refund", created["id"])]
    balances = ledger_by_account(stack, paid["id"])
    assert set(balances) == {
        "card_acquirer_receivable",
        "department_payable:DM",
        "knowledge_dirham_fund",
        "innovation_dirham_fund",
    }
    assert all(total == 0 for total in balances.values()), balances
    assert stack.get(paid["id"])["refund_summary"] == {"refunded": 24000, "available": 0}
    assert webhook_events(stack, created["id"]) == ["refund.succeeded"]
    deadline = time.monotonic() + 30
    while not department_notices(stack, paid["id"]):
        assert time.monotonic() < deadline, "the department never got the notice"
        time.sleep(0.2)
    [notice] = department_notices(stack, paid["id"])
    assert (notice["refund_id"], notice["amount"]) == (created["id"], 24000)
    assert notice["reference"] == paid["reference"]


def test_a_full_refund_of_an_e_dirham_payment_credits_the_card(stack: Stack) -> None:
    number = fresh_e_dirham_card(stack, pin="1234", balance=100_000)
    paid = stack.pay(e_dirham(number))
    assert paid["state"] == "succeeded"
    view = f"/issuer/_admin/cards/{number}"
    assert stack.sandbox(view)["balance"] == 100_000 - 24000
    response = refund(stack, paid["id"], 24000, reason=None)
    assert response.status_code == 201, response.text
    assert response.json()["reason"] is None
    assert wait_for_refund(stack, paid["id"], response.json()["id"])["state"] == "succeeded"
    assert stack.sandbox(view)["balance"] == 100_000
    [hold] = stack.sandbox(f"/issuer/_admin/holds?reference={paid['id']}")["items"]
    assert (hold["refunded_amount"], hold["refund_count"]) == (24000, 1)
    balances = ledger_by_account(stack, paid["id"])
    assert "e_dirham_issuer_receivable" in balances
    assert all(total == 0 for total in balances.values()), balances


def test_partial_refunds_return_the_service_fee_first_and_never_pass_the_total(
    stack: Stack,
) -> None:
    paid = stack.pay(card(CARD))
    first = refund(stack, paid["id"], 10000)
    assert first.status_code == 201, first.text
    assert first.json()["lines"] == [{"code": "service_fee", "amount": 10000}]
    second = refund(stack, paid["id"], 12500)
    assert second.status_code == 201, second.text
    assert second.json()["lines"] == [
        {"code": "service_fee", "amount": 12000},
        {"code": "knowledge_fee", "amount": 500},
    ]
    too_much = refund(stack, paid["id"], 1501)
    assert too_much.status_code == 409, too_much.text
    assert too_much.headers["content-type"].startswith("application/problem+json")
    assert too_much.json()["code"] == "refund_exceeds_available"
    assert "AED 15.00" in too_much.json()["detail"]
    for created in (first, second):
        assert wait_for_refund(stack, paid["id"], created.json()["id"])["state"] == "succeeded"
    assert stack.get(paid["id"])["refund_summary"] == {"refunded": 22500, "available": 1500}
    listed = refunds_of(stack, paid["id"]).json()["items"]
    assert [r["id"] for r in listed] == [second.json()["id"], first.json()["id"]]  # newest first
    balances = ledger_by_account(stack, paid["id"])
    assert balances["department_payable:DM"] == 0  # the service fee went back in full
    assert balances["knowledge_dirham_fund"] == -500
    assert balances["innovation_dirham_fund"] == -1000
    assert acquirer_record(stack, paid["id"])["refunded_amount"] == 22500


def test_twenty_concurrent_refunds_of_aed_60_on_aed_100_refund_once(stack: Stack) -> None:
    # A parking fine is exempt from the added fees: its total is the department's amount.
    paid = stack.pay(card(CARD), service_code="PARKING_FINE", amount=10000)
    assert paid["amount"]["total"] == 10000

    clients = [stack.client() for _ in range(20)]
    for c in clients:  # connected before the race, so that the requests arrive together
        assert c.get(f"/v1/payments/{paid['id']}").status_code == 200
    start = threading.Barrier(20)

    def one(c: httpx.Client) -> httpx.Response:
        start.wait()
        return c.post(f"/v1/payments/{paid['id']}/refunds", json={"amount": 6000})

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(one, clients))
    for c in clients:
        c.close()
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] + [409] * 19, statuses
    assert {a.json()["code"] for a in answers if a.status_code == 409} == {
        "refund_exceeds_available"
    }
    [created] = [a.json() for a in answers if a.status_code == 201]
    assert wait_for_refund(stack, paid["id"], created["id"])["state"] == "succeeded"
    record = acquirer_record(stack, paid["id"])
    assert (record["refund_count"], record["refunded_amount"]) == (1, 6000)
    assert len(refunds_of(stack, paid["id"]).json()["items"]) == 1
    assert stack.get(paid["id"])["refund_summary"] == {"refunded": 6000, "available": 4000}


def test_the_same_idempotency_key_returns_the_same_refund(stack: Stack) -> None:
    paid = stack.pay(card(CARD), service_code="PARKING_FINE", amount=5000)
    key = f"refund-{uuid.uuid4().hex}"
    first = refund(stack, paid["id"], 2000, key=key)
    assert first.status_code == 201, first.text
    again = refund(stack, paid["id"], 2000, key=key)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    other = refund(stack, paid["id"], 2500, key=key)
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_key_reused"
    # A payment's Idempotency-Key and a refund's do not meet.
    fresh = stack.create(service_code="PARKING_FINE", amount=700, headers={"Idempotency-Key": key})
    assert fresh.status_code == 201, fresh.text
    assert len(refunds_of(stack, paid["id"]).json()["items"]) == 1
    wait_for_refund(stack, paid["id"], first.json()["id"])
    assert acquirer_record(stack, paid["id"])["refund_count"] == 1


def test_another_departments_payment_is_not_found(stack: Stack) -> None:
    paid = stack.pay(card(CARD), service_code="PARKING_FINE", amount=3000)
    response = refund(stack, paid["id"], 1000, department="RTA")
    assert response.status_code == 404
    assert response.json()["code"] == "payment_not_found"
    assert refunds_of(stack, paid["id"], department="RTA").status_code == 404
    unknown = refund(stack, "pay_" + uuid.uuid4().hex, 1000)
    assert unknown.status_code == 404
    assert refunds_of(stack, paid["id"]).json()["items"] == []


def test_a_payment_that_has_not_succeeded_is_not_refundable(stack: Stack) -> None:
    reserved = stack.created()
    response = refund(stack, reserved["id"], 1000)
    assert response.status_code == 409
    assert response.json()["code"] == "not_refundable"
    declined = stack.pay(card("4000000000000002"))
    assert refund(stack, declined["id"], 1000).json()["code"] == "not_refundable"
    assert stack.get(declined["id"])["refund_summary"] == {"refunded": 0, "available": 0}


def test_amounts_and_reasons_are_checked(stack: Stack) -> None:
    paid = stack.pay(card(CARD), service_code="PARKING_FINE", amount=2000)
    for body in ({"amount": 0}, {"amount": 10.5}, {"amount": "100"}, {"amount": 100, "x": 1}):
        with stack.client() as c:
            response = c.post(f"/v1/payments/{paid['id']}/refunds", json=body)
        assert response.status_code == 422, body
    assert refund(stack, paid["id"], 100, reason="r" * 256).status_code == 422


def test_a_refund_the_acquirer_refuses_fails_and_frees_its_amount(stack: Stack) -> None:
    paid = stack.pay(card(CARD), service_code="PARKING_FINE", amount=4000)
    auth = acquirer_record(stack, paid["id"])
    # Refunded at the acquirer outside ePay: ePay's refund is then refused there.
    outside = httpx.post(
        f"{stack.sandbox_url}/acquirer/authorisations/{auth['id']}/refunds",
        json={"amount": 4000},
        headers={"Idempotency-Key": uuid.uuid4().hex},
        timeout=10,
    )
    assert outside.status_code == 201
    response = refund(stack, paid["id"], 4000)
    assert response.status_code == 201, response.text
    failed = wait_for_refund(stack, paid["id"], response.json()["id"])
    assert failed["state"] == "failed"
    assert failed["failure"]["code"] == "refund_refused"
    assert failed["failure"]["message"]
    assert stack.get(paid["id"])["refund_summary"] == {"refunded": 0, "available": 4000}
    assert journals(stack, paid["id"]) == [("capture", None)]
    assert department_notices(stack, paid["id"]) == []
    assert webhook_events(stack, response.json()["id"]) == ["refund.failed"]


def test_the_openapi_describes_refunds(stack: Stack) -> None:
    document = httpx.get(f"{stack.api_url}/openapi.json", timeout=10).json()
    calls = document["paths"]["/v1/payments/{payment_id}/refunds"]
    assert calls["post"]["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Refund"
    }
    assert "409" in calls["post"]["responses"]
    assert calls["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RefundList"
    }
    assert "CreateRefund" in document["components"]["schemas"]


def department_switch(stack: Stack, mode: str) -> None:
    response = httpx.post(f"{stack.sandbox_url}/departments/DM/_admin/{mode}", timeout=10)
    response.raise_for_status()


def workflow_closed(stack: Stack, workflow_id: str) -> bool:
    async def describe() -> bool:
        client = await stack.temporal_client()
        return (await client.get_workflow_handle(workflow_id).describe()).close_time is not None

    result: bool = asyncio.run(describe())
    return result


def refused_calls(stack: Stack, workflow_id: str, activity: str) -> int:
    """How many times the workflow's pending ``activity`` has been tried and refused so far
    (Temporal's attempt number counts the try under way or to come)."""

    async def describe() -> int:
        client = await stack.temporal_client()
        found = (await client.get_workflow_handle(workflow_id).describe()).raw_description
        return max(
            (
                pending.attempt - 1
                for pending in found.pending_activities
                if pending.activity_type.name == activity
            ),
            default=0,
        )

    result: int = asyncio.run(describe())
    return result


def test_the_department_is_told_once_it_is_back(stack: Stack) -> None:
    """A refund whose department is down succeeds (the money is back) and its workflow keeps
    telling the department until it takes the notice, then closes."""
    department_switch(stack, "up")
    try:
        paid = stack.pay(card(CARD), reference=new_reference("DOWN-"))
    finally:
        department_switch(stack, "down")
    assert paid["state"] == "succeeded"
    response = refund(stack, paid["id"], 24000)
    assert response.status_code == 201, response.text
    refund_id = response.json()["id"]
    assert wait_for_refund(stack, paid["id"], refund_id)["state"] == "succeeded"
    wait_until(
        lambda: refused_calls(stack, refund_workflow_id(refund_id), "notify_refund") >= 2,
        timeout=30,
        what="notices refused by the department",
    )
    assert department_notices(stack, paid["id"]) == []
    assert not workflow_closed(stack, refund_workflow_id(refund_id))
    department_switch(stack, "up")
    try:
        deadline = time.monotonic() + 90
        while not workflow_closed(stack, refund_workflow_id(refund_id)):
            assert time.monotonic() < deadline, "the refund never closed"
            time.sleep(0.5)
    finally:
        department_switch(stack, "down")
    [notice] = department_notices(stack, paid["id"])
    assert (notice["refund_id"], notice["notices"]) == (refund_id, 1)


def test_a_refund_whose_start_failed_is_left_to_the_workflow_that_took_it(stack: Stack) -> None:
    """The API fails a refund whose workflow it could not start only if no workflow has taken
    it, so that a start whose answer was lost cannot free an amount being refunded."""
    paid = stack.pay(card(CARD), service_code="PARKING_FINE", amount=9000)

    async def state(pool: asyncpg.Pool, refund_id: str) -> str:
        row = await refunds.get(pool, refund_id)
        assert row is not None
        return row.state

    async def race() -> None:
        pool = await create_pool(stack.dsn)
        try:
            taken, untaken = [f"rf_{uuid.uuid4().hex}" for _ in range(2)]
            for refund_id in (taken, untaken):
                created = await refunds.create(
                    pool,
                    department="DM",
                    payment_id=paid["id"],
                    refund_id=refund_id,
                    amount=3000,
                    reason=None,
                    idempotency_key=None,
                )
                assert created.refused is None
            # A workflow took the first: the API's failed start leaves it pending.
            assert await refunds.begin(pool, taken) == "pending"
            assert not await refunds.fail_unstarted(pool, taken, RefundFailure.NOT_STARTED)
            assert await state(pool, taken) == "pending"
            # No workflow took the second: it fails, and a workflow starting late finds that.
            assert await refunds.fail_unstarted(pool, untaken, RefundFailure.NOT_STARTED)
            assert await refunds.begin(pool, untaken) == "failed"
            assert stack.get(paid["id"])["refund_summary"]["available"] == 6000
            await refunds.fail(pool, RefundFailed(taken, RefundFailure.REFUSED))
        finally:
            await pool.close()

    asyncio.run(race())
    assert stack.get(paid["id"])["refund_summary"] == {"refunded": 0, "available": 9000}


def test_a_refund_waits_out_an_acquirer_outage_and_refunds_once(stack: Stack) -> None:
    paid = stack.pay(card(CARD), service_code="PARKING_FINE", amount=8000)
    httpx.post(f"{stack.sandbox_url}/acquirer/_admin/down", timeout=10).raise_for_status()
    try:
        response = refund(stack, paid["id"], 8000)
        assert response.status_code == 201, response.text
        refund_id = response.json()["id"]
        wait_until(
            lambda: refused_calls(stack, refund_workflow_id(refund_id), "refund") >= 2,
            timeout=30,
            what="refunds refused with 503 by the acquirer",
        )
        listed = refunds_of(stack, paid["id"]).json()["items"]
        assert [r["state"] for r in listed] == ["pending"]
        assert stack.get(paid["id"])["refund_summary"] == {"refunded": 0, "available": 0}
    finally:
        httpx.post(f"{stack.sandbox_url}/acquirer/_admin/up", timeout=10).raise_for_status()
    assert wait_for_refund(stack, paid["id"], refund_id)["state"] == "succeeded"
    record = acquirer_record(stack, paid["id"])
    assert (record["refund_count"], record["refunded_amount"]) == (1, 8000)
