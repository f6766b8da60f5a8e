"""Queries over refunds, shared by the API (create, list) and the refund workflow's
database steps (begin, settle, fail). Each function is one transaction; those the workflow
calls are idempotent. A refund's end (``succeeded``, ``failed``) writes its webhook event
(``refund.succeeded``, ``refund.failed``) in the same transaction (store/webhooks.py).

The sum of a payment's refunds that have not failed never passes its total: ``create``
checks it and inserts the refund in one transaction that holds the payment's row
``FOR UPDATE``, so concurrent requests on one payment are decided one after the other.
The rules that need no database (the split over the lines, the idempotency key's scope, the
reversing entries) are in domain/refunds.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import asyncpg
from asyncpg import Pool

from domain.money import FeeLine
from domain.refunds import (
    RefundFailed,
    RefundRequest,
    RefundSettlement,
    RefundState,
    idempotency_scope,
    refund_postings,
    refund_workflow_id,
    request_hash,
    split_refund,
)
from domain.states import PaymentState
from store import ledger, webhooks
from store.idempotency import IDEMPOTENCY_TTL

REFUND_COLUMNS = """id, payment_id, department, amount, reason, state, failure_code, lines,
    workflow_id, created_at, updated_at"""


@dataclass(frozen=True, slots=True)
class Refund:
    """A refund's row: ``lines``, how its amount splits over the payment's lines."""

    id: str
    payment_id: str
    department: str
    amount: int
    reason: str | None
    state: Literal["pending", "succeeded", "failed"]  # RefundState's values
    failure_code: str | None
    lines: tuple[FeeLine, ...]
    workflow_id: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Refund:
        return cls(
            id=row["id"],
            payment_id=row["payment_id"],
            department=row["department"],
            amount=row["amount"],
            reason=row["reason"],
            state=row["state"],
            failure_code=row["failure_code"],
            lines=tuple(_lines(row["lines"])),
            workflow_id=row["workflow_id"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


@dataclass
class Created:
    """The answer to ``create``: the refund and its workflow's input, or why not (``refused``:
    ``payment_not_found``, ``not_refundable``, ``refund_exceeds_available`` with ``available``,
    ``idempotency_key_reused``). ``replayed``: the key's earlier refund, not a new one."""

    refund: Refund | None = None
    request: RefundRequest | None = None
    replayed: bool = False
    refused: str | None = None
    payment_state: str | None = None
    available: int = 0


class _KeyTaken(Exception):
    """Another payment's refund claimed the same key meanwhile: undo this one."""


async def create(
    pool: Pool,
    *,
    department: str,
    payment_id: str,
    refund_id: str,
    amount: int,
    reason: str | None,
    idempotency_key: str | None,
) -> Created:
    """Check and insert a refund of ``amount`` on the department's payment, all under the
    payment's row lock; with a key, claim it for the refund in the same transaction."""
    try:
        return await _create(
            pool, department, payment_id, refund_id, amount, reason, idempotency_key
        )
    except _KeyTaken:
        return Created(refused="idempotency_key_reused")


async def _create(
    pool: Pool,
    department: str,
    payment_id: str,
    refund_id: str,
    amount: int,
    reason: str | None,
    idempotency_key: str | None,
) -> Created:
    digest = request_hash(payment_id, amount, reason)
    async with pool.acquire() as conn, conn.transaction():
        payment = await conn.fetchrow(
            """SELECT id, department, reference, state, amount_total, lines, method_type,
                   authorisation_id
               FROM payments WHERE id = $1 AND department = $2 FOR UPDATE""",
            payment_id,
            department,
        )
        if payment is None:
            return Created(refused="payment_not_found")
        if idempotency_key is not None:
            scoped = idempotency_scope(idempotency_key)
            await conn.execute(
                "DELETE FROM idempotency_keys WHERE department = $1 AND key = $2 "
                "AND created_at < $3",
                department,
                scoped,
                datetime.now().astimezone() - IDEMPOTENCY_TTL,
            )
            earlier = await conn.fetchrow(
                "SELECT request_hash, payment_id FROM idempotency_keys "
                "WHERE department = $1 AND key = $2",
                department,
                scoped,
            )
            if earlier is not None:
                if earlier["request_hash"] != digest:
                    return Created(refused="idempotency_key_reused")
                row = await _get(conn, earlier["payment_id"])  # the column holds the refund id
                assert row is not None  # a refund's key goes with it, in its transaction
                return Created(refund=row, request=_request(payment, row), replayed=True)
        if payment["state"] != PaymentState.SUCCEEDED:
            return Created(refused="not_refundable", payment_state=payment["state"])
        held = await conn.fetch(
            "SELECT amount, lines FROM refunds WHERE payment_id = $1 AND state <> 'failed'",
            payment_id,
        )
        available = payment["amount_total"] - sum(r["amount"] for r in held)
        if amount > available:
            return Created(refused="refund_exceeds_available", available=available)
        by_code: Counter[str] = Counter()
        for earlier_refund in held:
            for part in earlier_refund["lines"]:
                by_code[part["code"]] += part["amount"]
        lines = split_refund(_lines(payment["lines"]), by_code, amount)
        inserted = await conn.fetchrow(
            f"""INSERT INTO refunds (id, payment_id, department, amount, reason, state, lines,
                   workflow_id)
               VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7) RETURNING {REFUND_COLUMNS}""",
            refund_id,
            payment_id,
            department,
            amount,
            reason,
            [{"code": code, "amount": share} for code, share in lines],
            refund_workflow_id(refund_id),
        )
        if idempotency_key is not None:
            claimed = await conn.fetchval(
                """INSERT INTO idempotency_keys (department, key, request_hash, payment_id)
                   VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING 1""",
                department,
                idempotency_scope(idempotency_key),
                digest,
                refund_id,
            )
            if not claimed:
                raise _KeyTaken
        row = Refund.of(inserted)
        return Created(refund=row, request=_request(payment, row))


def _lines(stored: list[dict[str, Any]]) -> list[FeeLine]:
    return [FeeLine(line["code"], line["amount"]) for line in stored]


# A refund its workflow has not finished: the money not back yet, or the department not told.
_UNFINISHED = "(state = 'pending' OR (state = 'succeeded' AND department_notified_at IS NULL))"


async def stranded_candidates(pool: Pool, quiet_for: timedelta, limit: int) -> list[str]:
    """Unfinished refunds (pending, or succeeded with the department not yet told) unchanged
    for ``quiet_for``: their workflow may have closed without them (terminated in Temporal,
    or failed on a defect); the sweeper looks."""
    rows = await pool.fetch(
        f"""SELECT id FROM refunds WHERE {_UNFINISHED} AND updated_at < now() - $1::interval
            ORDER BY updated_at LIMIT $2""",
        quiet_for,
        limit,
    )
    return [r["id"] for r in rows]


async def request_for(pool: Pool, refund_id: str) -> RefundRequest | None:
    """What an unfinished refund's workflow is started with; None once it is finished."""
    refund = await pool.fetchrow(
        f"SELECT {REFUND_COLUMNS} FROM refunds WHERE id = $1 AND {_UNFINISHED}", refund_id
    )
    if refund is None:
        return None
    payment = await pool.fetchrow(
        "SELECT id, department, reference, method_type, authorisation_id FROM payments "
        "WHERE id = $1",
        refund["payment_id"],
    )
    return _request(payment, Refund.of(refund))


def _request(payment: Mapping[str, Any], refund: Refund) -> RefundRequest:
    return RefundRequest(
        refund_id=refund.id,
        payment_id=payment["id"],
        department=payment["department"],
        reference=payment["reference"],
        method_type=payment["method_type"],
        authorisation_id=payment["authorisation_id"] or "",
        amount=refund.amount,
        lines=list(refund.lines),
    )


async def _get(conn: asyncpg.Connection | Pool, refund_id: str) -> Refund | None:
    row = await conn.fetchrow(f"SELECT {REFUND_COLUMNS} FROM refunds WHERE id = $1", refund_id)
    return None if row is None else Refund.of(row)


async def get(pool: Pool, refund_id: str) -> Refund | None:
    return await _get(pool, refund_id)


async def list_for_payment(pool: Pool, payment_id: str) -> list[Refund]:
    """A payment's refunds, newest first."""
    rows = await pool.fetch(
        f"SELECT {REFUND_COLUMNS} FROM refunds WHERE payment_id = $1 "
        "ORDER BY created_at DESC, id DESC",
        payment_id,
    )
    return [Refund.of(r) for r in rows]


async def begin(pool: Pool, refund_id: str) -> str:
    """The workflow's first step: the refund's state, and the refund taken by its workflow.

    Taking it moves ``updated_at`` off ``created_at`` (they are equal from the insert until
    then), under the row lock: ``fail_unstarted`` then leaves it alone, so an API whose
    start call failed (its answer lost, say) cannot free an amount a running workflow is
    refunding. A refund already failed so is not refunded by a workflow that started late.
    """
    state = await pool.fetchval(
        """UPDATE refunds SET updated_at = greatest(clock_timestamp(), created_at
               + interval '1 microsecond')
           WHERE id = $1 RETURNING state""",
        refund_id,
    )
    if state is None:
        raise LookupError(f"no refund {refund_id}")
    return str(state)


async def department_notified(pool: Pool, refund_id: str) -> None:
    """The department took the refund's notice: the refund is finished."""
    await pool.execute(
        "UPDATE refunds SET department_notified_at = clock_timestamp() "
        "WHERE id = $1 AND department_notified_at IS NULL",
        refund_id,
    )


async def fail_unstarted(pool: Pool, refund_id: str, failure_code: str) -> bool:
    """Fail a refund whose workflow never took it, freeing its amount; False if it did."""
    async with pool.acquire() as conn, conn.transaction():
        status = await conn.execute(
            """UPDATE refunds SET state = 'failed', failure_code = $2,
                   updated_at = clock_timestamp()
               WHERE id = $1 AND state = 'pending' AND updated_at = created_at""",
            refund_id,
            failure_code,
        )
        if not status.endswith(" 1"):
            return False
        await webhooks.record_refund_event(conn, refund_id)
        return True


async def settle(pool: Pool, s: RefundSettlement) -> str:
    """Post the reversing journal and mark the refund ``succeeded``, all or nothing, once:
    a repeat finds the journal (one per refund id) and changes nothing."""
    async with pool.acquire() as conn, conn.transaction():
        state = await conn.fetchval(
            "SELECT state FROM refunds WHERE id = $1 FOR UPDATE", s.refund_id
        )
        if state is None:
            raise LookupError(f"no refund {s.refund_id}")
        if state == RefundState.SUCCEEDED:
            return str(state)
        if state != RefundState.PENDING:
            raise ValueError(f"refund {s.refund_id} is {state}: it cannot succeed")
        await ledger.post_journal(conn, s.payment_id, refund_postings(s), s.refund_id)
        await conn.execute(
            "UPDATE refunds SET state = 'succeeded', updated_at = clock_timestamp() WHERE id = $1",
            s.refund_id,
        )
        await webhooks.record_refund_event(conn, s.refund_id)  # refund.succeeded
        return RefundState.SUCCEEDED.value


async def fail(pool: Pool, f: RefundFailed) -> str:
    """Mark a pending refund ``failed`` (nothing went back), once; its amount is free again."""
    async with pool.acquire() as conn, conn.transaction():
        state = await conn.fetchval(
            """UPDATE refunds SET state = 'failed', failure_code = $2,
                   updated_at = clock_timestamp()
               WHERE id = $1 AND state = 'pending' RETURNING state""",
            f.refund_id,
            f.failure_code,
        )
        if state is None:  # already ended: as it was
            return str(await conn.fetchval("SELECT state FROM refunds WHERE id = $1", f.refund_id))
        await webhooks.record_refund_event(conn, f.refund_id)  # refund.failed
        return str(state)
