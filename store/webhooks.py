"""Webhooks: departments learn every outcome, even when their system was down.

An event (domain/webhooks.py) is written in the same transaction as the state change it
tells of, with an id of its own (a transactional outbox: no outcome without its event, no
event without its outcome). A relay in the records workers (workers/webhook_relay.py) starts
one durable delivery workflow per event (workflows/webhook.py), which POSTs it, signed like
every call to a department (domain/signing.py), to each of the department's endpoints that
takes its type, and retries on a schedule (about 1 min, 5 min, 1 h, 1 day, 2 days) until
each has accepted it (a 2xx) or the schedule is spent. Every attempt is logged
(``webhook_deliveries``); ``epay webhooks redeliver EVENT_ID`` sends an event again. A
receiver dedupes by the event's id.

Payloads hold what a department already sees of its payments: no card data, no payer data.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from domain.webhooks import PAYMENT_EVENTS, REFUND_EVENTS


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """A department's endpoint and the event types it takes."""

    id: str
    url: str
    events: list[str]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """An event as delivered: ``payload`` is the JSON document every endpoint is sent."""

    id: str
    department: str
    type: str
    payload: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PendingEndpoint:
    """An endpoint an event is still to be delivered to."""

    id: str
    url: str


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One logged attempt to deliver an event to an endpoint, with the event's type and
    payment (and refund) and the endpoint's URL."""

    id: int
    event_id: str
    type: str
    payment_id: str
    refund_id: str | None
    endpoint_id: str
    url: str
    attempt: int
    status_code: int | None
    outcome: str  # delivered | failed
    error: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class UndispatchedEvent:
    """An event not yet handed to a delivery, and whether an active endpoint of its
    department takes it now."""

    id: str
    department: str
    has_endpoint: bool


def document(value: Any) -> Any:
    """A jsonb value as read: decoded by the pool's codec (epay.db), or text without it."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def new_event_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


def new_endpoint_id() -> str:
    return f"wh_{uuid.uuid4().hex[:24]}"


_PAYMENT_PAYLOAD = """
    SELECT p.department, p.state, jsonb_build_object(
        'id', p.id, 'department', p.department, 'service_code', p.service_code,
        'reference', p.reference, 'state', p.state,
        'amount', jsonb_build_object('total', p.amount_total, 'currency', p.currency),
        'failure', CASE WHEN p.failure_code IS NULL THEN NULL
                   ELSE jsonb_build_object('code', p.failure_code) END,
        'department_confirmation', p.department_confirmation,
        'receipt', CASE WHEN r.receipt_number IS NULL THEN NULL
                   ELSE jsonb_build_object('number', r.receipt_number,
                                           'issued_at', r.issued_at) END,
        'updated_at', p.updated_at) AS payment
    FROM payments p LEFT JOIN receipts r ON r.payment_id = p.id WHERE p.id = $1"""


async def record_payment_event(conn: asyncpg.Connection, payment_id: str) -> str | None:
    """The event of the payment's end state, in the caller's transaction (once)."""
    row = await conn.fetchrow(_PAYMENT_PAYLOAD, payment_id)
    if row is None or row["state"] not in PAYMENT_EVENTS:
        return None
    return await _insert(
        conn,
        row["department"],
        PAYMENT_EVENTS[row["state"]],
        payment_id,
        None,
        {"payment": document(row["payment"])},
    )


async def record_refund_event(conn: asyncpg.Connection, refund_id: str) -> str | None:
    """The event of the refund's end state, in the caller's transaction (once)."""
    row = await conn.fetchrow(
        """SELECT department, payment_id, state, jsonb_build_object(
               'id', id, 'payment_id', payment_id, 'amount', amount, 'currency', 'AED',
               'state', state, 'failure', CASE WHEN failure_code IS NULL THEN NULL
                   ELSE jsonb_build_object('code', failure_code) END,
               'updated_at', updated_at) AS refund
           FROM refunds WHERE id = $1""",
        refund_id,
    )
    if row is None or row["state"] not in REFUND_EVENTS:
        return None
    return await _insert(
        conn,
        row["department"],
        REFUND_EVENTS[row["state"]],
        row["payment_id"],
        refund_id,
        {"refund": document(row["refund"])},
    )


async def _insert(
    conn: asyncpg.Connection,
    department: str,
    type_: str,
    payment_id: str,
    refund_id: str | None,
    data: dict[str, Any],
) -> str | None:
    event_id = new_event_id()
    created = await conn.fetchval(
        """INSERT INTO webhook_events (id, department, type, payment_id, refund_id, payload)
           VALUES ($1, $2, $3, $4, $5, '{}') ON CONFLICT DO NOTHING RETURNING created_at""",
        event_id,
        department,
        type_,
        payment_id,
        refund_id,
    )
    if created is None:
        return None  # this outcome's event was written before
    payload = {"id": event_id, "type": type_, "created_at": created.isoformat(), "data": data}
    await conn.execute("UPDATE webhook_events SET payload = $2 WHERE id = $1", event_id, payload)
    return event_id


# --- endpoints -------------------------------------------------------------------------------


def _endpoint(row: Mapping[str, Any]) -> WebhookEndpoint:
    return WebhookEndpoint(row["id"], row["url"], list(row["events"]), row["created_at"])


async def count_active_endpoints(conn: asyncpg.Pool | asyncpg.Connection, department: str) -> int:
    """The department's endpoints not disabled (what its cap counts)."""
    count: int = await conn.fetchval(
        "SELECT count(*) FROM webhook_endpoints WHERE department = $1 AND disabled_at IS NULL",
        department,
    )
    return count


async def create_endpoint_within(
    pool: asyncpg.Pool, department: str, url: str, events: Sequence[str], cap: int
) -> WebhookEndpoint | None:
    """Register an endpoint, unless the department has ``cap`` active ones already (None).
    Counted and written under a lock on the department, so two registrations at once
    cannot both pass the cap."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('webhook_endpoints:' || $1))", department
        )
        if await count_active_endpoints(conn, department) >= cap:
            return None
        row = await conn.fetchrow(
            """INSERT INTO webhook_endpoints (id, department, url, events) VALUES ($1, $2, $3, $4)
               RETURNING id, url, events, created_at""",
            new_endpoint_id(),
            department,
            url,
            list(events),
        )
        assert row is not None
        return _endpoint(row)


async def list_endpoints(pool: asyncpg.Pool, department: str) -> list[WebhookEndpoint]:
    rows = await pool.fetch(
        """SELECT id, url, events, created_at FROM webhook_endpoints
           WHERE department = $1 AND disabled_at IS NULL ORDER BY created_at""",
        department,
    )
    return [_endpoint(r) for r in rows]


async def disable_endpoint(pool: asyncpg.Pool, department: str, endpoint_id: str) -> bool:
    done: str = await pool.execute(
        """UPDATE webhook_endpoints SET disabled_at = now()
           WHERE id = $1 AND department = $2 AND disabled_at IS NULL""",
        endpoint_id,
        department,
    )
    return done.endswith(" 1")


# --- deliveries ------------------------------------------------------------------------------


async def event(pool: asyncpg.Pool, event_id: str) -> WebhookEvent | None:
    row = await pool.fetchrow(
        "SELECT id, department, type, payload, created_at FROM webhook_events WHERE id = $1",
        event_id,
    )
    if row is None:
        return None
    return WebhookEvent(
        row["id"], row["department"], row["type"], document(row["payload"]), row["created_at"]
    )


async def pending_endpoints(
    pool: asyncpg.Pool, event_id: str, since_delivery: int = 0
) -> list[PendingEndpoint]:
    """The department's active endpoints that take this event and have not accepted it
    (in a delivery logged after ``since_delivery``: a redelivery sends it again to all)."""
    rows = await pool.fetch(
        """SELECT w.id, w.url FROM webhook_events e
           JOIN webhook_endpoints w ON w.department = e.department AND w.disabled_at IS NULL
                AND e.type = ANY (w.events)
           WHERE e.id = $1 AND NOT EXISTS (
               SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id
                   AND d.endpoint_id = w.id AND d.outcome = 'delivered' AND d.id > $2)
           ORDER BY w.created_at""",
        event_id,
        since_delivery,
    )
    return [PendingEndpoint(r["id"], r["url"]) for r in rows]


async def last_delivery(pool: asyncpg.Pool, event_id: str) -> int:
    """The id of the event's latest logged delivery (0 if none): what a redelivery starts
    after."""
    return int(
        await pool.fetchval(
            "SELECT coalesce(max(id), 0) FROM webhook_deliveries WHERE event_id = $1", event_id
        )
    )


async def record_delivery(
    pool: asyncpg.Pool,
    event_id: str,
    endpoint_id: str,
    attempt: int,
    status_code: int | None,
    error: str | None,
) -> None:
    outcome = "delivered" if status_code is not None and 200 <= status_code < 300 else "failed"
    await pool.execute(
        """INSERT INTO webhook_deliveries (event_id, endpoint_id, attempt, status_code, outcome,
               error) VALUES ($1, $2, $3, $4, $5, $6)""",
        event_id,
        endpoint_id,
        attempt,
        status_code,
        outcome,
        error,
    )


async def list_deliveries(
    pool: asyncpg.Pool, department: str, event_id: str | None, limit: int
) -> list[DeliveryRecord]:
    """The department's logged deliveries (one event's with ``event_id``), newest first."""
    rows = await pool.fetch(
        """SELECT d.id, d.event_id, e.type, e.payment_id, e.refund_id, d.endpoint_id, w.url,
                  d.attempt, d.status_code, d.outcome, d.error, d.created_at
           FROM webhook_deliveries d
           JOIN webhook_events e ON e.id = d.event_id
           JOIN webhook_endpoints w ON w.id = d.endpoint_id
           WHERE e.department = $1 AND ($2::text IS NULL OR d.event_id = $2)
           ORDER BY d.id DESC LIMIT $3""",
        department,
        event_id,
        limit,
    )
    return [DeliveryRecord(**dict(r)) for r in rows]


# --- the relay -------------------------------------------------------------------------------


async def undispatched(pool: asyncpg.Pool, limit: int = 100) -> list[UndispatchedEvent]:
    """Events not yet handed to a delivery, oldest first, each with whether an active
    endpoint of its department takes it now (``has_endpoint``)."""
    rows = await pool.fetch(
        """SELECT e.id, e.department, EXISTS (
                   SELECT 1 FROM webhook_endpoints w
                   WHERE w.department = e.department AND w.disabled_at IS NULL
                     AND e.type = ANY (w.events)) AS has_endpoint
           FROM webhook_events e WHERE e.dispatched_at IS NULL
           ORDER BY e.created_at LIMIT $1""",
        limit,
    )
    return [UndispatchedEvent(r["id"], r["department"], r["has_endpoint"]) for r in rows]


async def mark_dispatched(pool: asyncpg.Pool, event_id: str) -> None:
    await pool.execute(
        "UPDATE webhook_events SET dispatched_at = now() WHERE id = $1 AND dispatched_at IS NULL",
        event_id,
    )
