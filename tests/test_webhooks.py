"""Webhooks on the real stack: a department's endpoint that is down for a while receives
every event of its payments once it is back, each once by its id and each signed; every
attempt is in the delivery log; an event can be sent again; the receiver refuses what ePay
did not sign. The stack retries webhooks after seconds, not minutes to days
(``EPAY_WEBHOOK_RETRY_SCHEDULE`` in tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from temporalio.service import RPCError

from tests.conftest import Stack, card
from tests.support import wait_until

DEPT = "DM"


def _receiver(stack: Stack, action: str) -> None:
    httpx.post(
        f"{stack.sandbox_url}/departments/{DEPT}/_admin/webhooks/{action}", timeout=10
    ).raise_for_status()


def _received(stack: Stack) -> dict[str, dict[str, Any]]:
    items = stack.sandbox(f"/departments/{DEPT}/_admin/webhooks")["items"]
    return {item["event_id"]: item for item in items}


def _deliveries(stack: Stack, **params: str) -> list[dict[str, Any]]:
    with stack.client(DEPT) as c:
        response = c.get("/v1/webhooks/deliveries", params={"limit": "200", **params})
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items


@pytest.fixture(scope="module")
def endpoint(stack: Stack) -> Iterator[dict[str, Any]]:
    with stack.client(DEPT) as c:
        response = c.post(
            "/v1/webhooks", json={"url": f"{stack.sandbox_url}/departments/{DEPT}/webhooks"}
        )
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        try:
            yield created
        finally:
            c.delete(f"/v1/webhooks/{created['id']}")
            _receiver(stack, "up")


def test_an_endpoint_down_for_a_while_gets_every_event_once_it_is_back(
    stack: Stack, endpoint: dict[str, Any]
) -> None:
    _receiver(stack, "down")
    paid = stack.pay(card("4242424242424242"))
    declined = stack.pay(card("4000000000000002"))
    cancelled = stack.created()
    with stack.client(DEPT) as c:
        assert c.post(f"/v1/payments/{cancelled['id']}/cancel").status_code == 202
    assert stack.wait_for(cancelled["id"])["state"] == "cancelled"
    expected = {
        paid["id"]: "payment.succeeded",
        declined["id"]: "payment.failed",
        cancelled["id"]: "payment.cancelled",
    }

    def refused_while_down() -> bool:
        failed = {d["payment_id"] for d in _deliveries(stack) if d["outcome"] == "failed"}
        return set(expected) <= failed

    wait_until(refused_while_down, timeout=60, what="attempts refused while the receiver is down")
    down_attempts = [d for d in _deliveries(stack) if d["payment_id"] in expected]
    assert all(d["status_code"] == 503 for d in down_attempts), down_attempts

    _receiver(stack, "up")

    def all_received() -> bool:
        got = {r["payment_id"]: r["type"] for r in _received(stack).values()}
        return all(got.get(p) == t for p, t in expected.items())

    wait_until(all_received, timeout=60, what="every event received once the receiver is back")
    mine = [r for r in _received(stack).values() if r["payment_id"] in expected]
    assert sorted(r["type"] for r in mine) == sorted(expected.values())  # one event each
    assert all(r["deliveries"] == 1 for r in mine), mine  # accepted once, never sent again
    for payment_id in expected:
        log = [d for d in _deliveries(stack) if d["payment_id"] == payment_id]
        assert log[0]["outcome"] == "delivered"
        assert log[0]["status_code"] == 200
        assert all(d["outcome"] == "failed" for d in log[1:])
        assert len(log) >= 2
        assert [d["attempt"] for d in reversed(log)] == list(range(1, len(log) + 1))
    # What was sent holds no card data.
    payloads = stack.fetch(
        "SELECT payload::text AS p FROM webhook_events WHERE payment_id = $1", paid["id"]
    )
    assert payloads
    assert "4242424242424242" not in payloads[0]["p"]
    assert json.loads(payloads[0]["p"])["data"]["payment"]["receipt"]["number"]


def test_an_event_can_be_delivered_again(stack: Stack, endpoint: dict[str, Any]) -> None:
    paid = stack.pay(card("4242424242424242"))

    def received() -> dict[str, Any] | None:
        return next((r for r in _received(stack).values() if r["payment_id"] == paid["id"]), None)

    wait_until(lambda: received() is not None, timeout=30, what="the event")
    first = received()
    assert first is not None
    stack.epay("webhooks", "redeliver", first["event_id"])
    wait_until(lambda: (received() or {}).get("deliveries") == 2, timeout=30, what="the redelivery")
    log = _deliveries(stack, event_id=first["event_id"])
    assert [d["outcome"] for d in log] == ["delivered", "delivered"]


def test_a_destination_no_longer_allowed_is_refused_at_delivery(
    stack: Stack, endpoint: dict[str, Any]
) -> None:
    """An endpoint in the table whose destination the rule refuses now (registered before
    the rule, or a name that has since moved inside: here ``localhost``, the sandbox's own
    receiver by a name the allowlist does not hold) is never sent to: each attempt is logged
    failed, no status, ``destination_not_allowed``, while the allowed endpoint gets the
    event. Written in the table, as the API would refuse to register it."""
    port = stack.sandbox_url.rsplit(":", 1)[1]
    [row] = stack.fetch(
        """INSERT INTO webhook_endpoints (id, department, url, events)
           VALUES ($1, $2, $3, ARRAY['payment.succeeded']) RETURNING id""",
        f"wh_{uuid.uuid4().hex[:24]}",
        DEPT,
        f"http://localhost:{port}/departments/{DEPT}/webhooks",
    )
    try:
        paid = stack.pay(card("4242424242424242"))

        def attempts() -> list[dict[str, Any]]:
            return [
                d
                for d in _deliveries(stack)
                if d["payment_id"] == paid["id"] and d["endpoint_id"] == row["id"]
            ]

        wait_until(lambda: len(attempts()) >= 2, timeout=60, what="two refused attempts")
    finally:
        stack.fetch(
            "UPDATE webhook_endpoints SET disabled_at = now() WHERE id = $1 RETURNING id", row["id"]
        )
    assert {(d["outcome"], d["status_code"], d["error"]) for d in attempts()} == {
        ("failed", None, "destination_not_allowed")
    }
    wait_until(
        lambda: any(r["payment_id"] == paid["id"] for r in _received(stack).values()),
        timeout=30,
        what="the event at the allowed endpoint",
    )


def test_the_receiver_refuses_an_event_epay_did_not_sign(stack: Stack) -> None:
    body = json.dumps({"id": "evt_" + "0" * 32, "type": "payment.succeeded", "data": {}})
    unsigned = httpx.post(f"{stack.sandbox_url}/departments/{DEPT}/webhooks", content=body)
    forged = httpx.post(
        f"{stack.sandbox_url}/departments/{DEPT}/webhooks",
        content=body,
        headers={"ePay-Signature": f"t={int(time.time())},v1={'0' * 64}"},
    )
    assert (unsigned.status_code, forged.status_code) == (401, 401)
    assert "evt_" + "0" * 32 not in _received(stack)


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://example.com/hook"},
        {"url": "not a url at all"},
        {"url": "https://example.com/hook", "events": ["payment.unknown"]},
        {"url": "https://example.com/hook", "events": []},
        {"url": "https://example.com/hook", "secret": "x"},
    ],
)
def test_a_bad_endpoint_is_refused(stack: Stack, body: dict[str, Any]) -> None:
    with stack.client(DEPT) as c:
        response = c.post("/v1/webhooks", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


def test_a_department_sees_and_removes_only_its_own_endpoints(
    stack: Stack, endpoint: dict[str, Any]
) -> None:
    with stack.client("RTA") as rta:
        assert endpoint["id"] not in {e["id"] for e in rta.get("/v1/webhooks").json()["items"]}
        assert rta.delete(f"/v1/webhooks/{endpoint['id']}").status_code == 404
        assert rta.get("/v1/webhooks/deliveries").json()["items"] == []
    with stack.client(DEPT) as dm:
        assert endpoint["id"] in {e["id"] for e in dm.get("/v1/webhooks").json()["items"]}


def test_an_event_that_no_endpoint_takes_starts_no_delivery(stack: Stack) -> None:
    """Most departments register no endpoint: their outcomes' events are written and marked
    dispatched, but start no delivery workflow (which would double Temporal's work a
    payment for nothing)."""
    endpoints = stack.fetch(
        "SELECT id FROM webhook_endpoints WHERE department = 'RTA' AND disabled_at IS NULL"
    )
    assert endpoints == [], "this test needs a department without endpoints"
    paid = stack.pay(card("4242424242424242"), service_code="VEHICLE_RENEWAL", department="RTA")
    assert paid["state"] == "succeeded"

    def dispatched() -> list[dict[str, Any]]:
        return stack.fetch(
            "SELECT id FROM webhook_events WHERE payment_id = $1 AND dispatched_at IS NOT NULL",
            paid["id"],
        )

    wait_until(lambda: bool(dispatched()), timeout=30, what="the event marked dispatched")
    [event] = dispatched()

    async def delivery_status() -> str:
        client = await stack.temporal_client()
        try:
            await client.get_workflow_handle(f"webhook-{event['id']}").describe()
        except RPCError as err:
            return err.status.name
        return "found"

    assert asyncio.run(delivery_status()) == "NOT_FOUND"
    assert stack.fetch("SELECT id FROM webhook_deliveries WHERE event_id = $1", event["id"]) == []
