"""What a payment left behind, as its records and the API show it: its fee reservation, its
ledger, its card data and its audit trail, and the two outcomes every end must match."""

from __future__ import annotations

from typing import Any

from tests.conftest import Stack


def reservation_status(stack: Stack, payment_id: str) -> str:
    rows = stack.fetch("SELECT status FROM fee_reservations WHERE payment_id = $1", payment_id)
    assert len(rows) == 1
    return str(rows[0]["status"])


def events(stack: Stack, payment_id: str) -> list[dict[str, Any]]:
    with stack.client() as c:
        items: list[dict[str, Any]] = c.get(f"/v1/payments/{payment_id}/events").json()["items"]
    return items


def assert_left_nothing_behind(
    stack: Stack, payment: dict[str, Any], funds: list[dict[str, Any]]
) -> None:
    """A payment that did not succeed: no capture, no open hold, reservation released."""
    assert all(
        r["status"] not in ("authorised", "held", "pending_3ds", "captured") for r in funds
    ), funds
    assert all(r["capture_count"] == 0 for r in funds), funds
    assert reservation_status(stack, payment["id"]) == "released"
    assert stack.fetch("SELECT 1 FROM ledger_journals WHERE payment_id = $1", payment["id"]) == []
    assert stack.fetch("SELECT 1 FROM card_vault WHERE payment_id = $1", payment["id"]) == []
    assert payment["receipt"] is None
    assert payment["next_url"] is None


def assert_paid_once(stack: Stack, payment: dict[str, Any], funds: list[dict[str, Any]]) -> None:
    assert len(funds) == 1, funds
    assert funds[0]["status"] == "captured", funds
    assert funds[0]["capture_count"] == 1, funds
    assert reservation_status(stack, payment["id"]) == "consumed"
    entries = stack.fetch(
        "SELECT e.account, e.amount FROM ledger_entries e "
        "JOIN ledger_journals j ON j.id = e.journal_id WHERE j.payment_id = $1",
        payment["id"],
    )
    assert sum(e["amount"] for e in entries) == 0, entries
    assert sum(e["amount"] for e in entries if e["amount"] > 0) == payment["amount"]["total"]
    assert payment["receipt"]["number"].startswith(payment["department"] + "-")
    assert payment["department_confirmation"]
    assert stack.fetch("SELECT 1 FROM card_vault WHERE payment_id = $1", payment["id"]) == []
