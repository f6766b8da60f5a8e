"""A department's refunds through the API, and what the department was told of them."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.conftest import Stack


def refund(
    stack: Stack,
    payment_id: str,
    amount: int,
    *,
    reason: str | None = "service not delivered",
    key: str | None = None,
    department: str = "DM",
) -> httpx.Response:
    body: dict[str, Any] = {"amount": amount}
    if reason is not None:
        body["reason"] = reason
    with stack.client(department) as c:
        return c.post(
            f"/v1/payments/{payment_id}/refunds",
            json=body,
            headers={"Idempotency-Key": key} if key else {},
        )


def refunds_of(stack: Stack, payment_id: str, department: str = "DM") -> httpx.Response:
    with stack.client(department) as c:
        return c.get(f"/v1/payments/{payment_id}/refunds")


def wait_for_refund(
    stack: Stack,
    payment_id: str,
    refund_id: str,
    states: frozenset[str] = frozenset({"succeeded", "failed"}),
) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        response = refunds_of(stack, payment_id)
        assert response.status_code == 200, response.text
        found: dict[str, Any] = next(r for r in response.json()["items"] if r["id"] == refund_id)
        if found["state"] in states:
            return found
        assert time.monotonic() < deadline, f"refund still {found['state']}"
        time.sleep(0.2)


def department_notices(
    stack: Stack, payment_id: str, department: str = "DM"
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = stack.sandbox(
        f"/departments/{department}/_admin/refunds?payment_id={payment_id}"
    )["items"]
    return items
