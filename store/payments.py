"""The payments' records: the payment row, its reservation, its audit trail, its ledger journal
and receipt, and the reads the API makes of them.

Each function is one transaction. Those the workflow calls are idempotent, because an
activity may run more than once: a repeated call finds its own earlier work and returns it.
Readers get ``PaymentRow`` and ``EventRow``, converted from the database's rows in one place
each (their ``of``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from asyncpg import Connection, Pool

from domain.failures import message_for
from domain.ledger import capture_postings
from domain.models import (
    AuditEntry,
    PaymentRequest,
    Receipt,
    ReservationResult,
    Settlement,
    Transition,
    attempt_key,
)
from domain.references import reference_key
from domain.states import Actor, AuditNote, PaymentEvent, PaymentState, actor_of, transition
from store import abuse as payer_attempts
from store import ledger, vault, webhooks

# --- the payment lifecycle (called from activities) -------------------------------------


async def _reserve_fee(
    pool: Pool, req: PaymentRequest, workflow_id: str, now: datetime
) -> ReservationResult:
    key = reference_key(req.reference)  # "inv-1" and "INV-1 " are one invoice
    async with pool.acquire() as conn, conn.transaction():
        exists = await conn.fetchval("SELECT 1 FROM payments WHERE id = $1", req.payment_id)
        if exists:
            return ReservationResult(ok=True)  # a retry of a reservation that was made
        await conn.execute(
            """INSERT INTO payments (id, department, service_code, reference, reference_key,
                   state, amount_total, lines, description, payer, return_url, metadata,
                   workflow_id, expires_at, created_at, updated_at)
               VALUES ($1, $2, $3, $4, $5, 'reserved', $6, $7, $8, $9, $10, $11, $12, $13, $14,
                   $14)""",
            req.payment_id,
            req.department,
            req.service_code,
            req.reference,
            key,
            req.total,
            [asdict(line) for line in req.lines],
            req.description,
            req.payer,
            req.return_url,
            req.metadata,
            workflow_id,
            now + timedelta(seconds=req.payment_window_seconds),
            now,
        )
        inserted = await conn.fetchval(
            """INSERT INTO fee_reservations (payment_id, department, reference, reference_key,
                   amount, status)
               VALUES ($1, $2, $3, $4, $5, 'held')
               ON CONFLICT (department, reference_key) WHERE status IN ('held', 'consumed')
               DO NOTHING RETURNING 1""",
            req.payment_id,
            req.department,
            req.reference,
            key,
            req.total,
        )
        if not inserted:
            status = await conn.fetchval(
                "SELECT status FROM fee_reservations WHERE department = $1 "
                "AND reference_key = $2 AND status IN ('held', 'consumed')",
                req.department,
                key,
            )
            # Undo the payment row: a payment that could not reserve never existed.
            raise _Rollback(
                ReservationResult(
                    ok=False,
                    code="reference_already_paid"
                    if status == "consumed"
                    else "reference_in_progress",
                )
            )
        await _insert_event(
            conn,
            req.payment_id,
            PaymentEvent.FEE_RESERVED,
            None,
            PaymentState.RESERVED,
            Actor.WORKFLOW,
            None,
        )
    return ReservationResult(ok=True)


class _Rollback(Exception):  # control flow: leaves the transaction undone
    def __init__(self, result: ReservationResult) -> None:
        self.result = result


async def reserve_fee(
    pool: Pool, req: PaymentRequest, workflow_id: str, now: datetime
) -> ReservationResult:
    """Create the payment and lock its reference, or say why the reference cannot be paid."""
    try:
        return await _reserve_fee(pool, req, workflow_id, now)
    except _Rollback as rollback:
        return rollback.result


async def _insert_event(
    conn: Connection,
    payment_id: str,
    event: str,
    from_state: str | None,
    to_state: str | None,
    actor: str,
    detail: str | None,
    dedupe_key: str | None = None,
) -> bool:
    inserted = await conn.fetchval(
        """INSERT INTO payment_events (payment_id, event, from_state, to_state, actor, detail,
               dedupe_key)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (dedupe_key) DO NOTHING RETURNING 1""",
        payment_id,
        event,
        from_state,
        to_state,
        actor,
        detail,
        dedupe_key or f"{payment_id}:{event}",
    )
    return bool(inserted)


async def _apply_transition(conn: Connection, t: Transition) -> str:
    """Move the read model by one event of the state machine, once."""
    row = await conn.fetchrow("SELECT state FROM payments WHERE id = $1 FOR UPDATE", t.payment_id)
    if row is None:
        raise LookupError(f"no payment {t.payment_id}")
    current = PaymentState(row["state"])
    dedupe_key = attempt_key(t.payment_id, t.event, t.attempt)
    already = await conn.fetchval(
        "SELECT to_state FROM payment_events WHERE dedupe_key = $1", dedupe_key
    )
    if already is not None:
        return str(already)
    target = transition(current, t.event)  # IllegalTransition if the machine forbids it
    if t.event == PaymentEvent.METHOD_DECLINED:
        # Back to waiting for the payer: the declined method is forgotten, the decline kept.
        await conn.execute(
            """UPDATE payments SET state = $2, method_type = NULL, method_brand = NULL,
                   method_last4 = NULL, authorisation_id = NULL, declines = declines + 1,
                   last_decline = $3, updated_at = clock_timestamp()
               WHERE id = $1""",
            t.payment_id,
            target.value,
            t.failure_code,
        )
        await vault.forget_payment(conn, t.payment_id)
        await payer_attempts.record_outcome(conn, t.payment_id, t.failure_code or "declined")
        await _insert_event(
            conn,
            t.payment_id,
            t.event,
            current.value,
            target.value,
            t.actor or actor_of(t.event),
            f"failure: {t.failure_code}; the payer may try another method",
            dedupe_key,
        )
        return target.value
    await conn.execute(
        """UPDATE payments SET state = $2,
               method_type = coalesce($3, method_type),
               method_brand = coalesce($4, method_brand),
               method_last4 = coalesce($5, method_last4),
               failure_code = coalesce($6, failure_code),
               failure_message = coalesce($7, failure_message),
               department_confirmation = coalesce($8, department_confirmation),
               authorisation_id = coalesce($9, authorisation_id),
               updated_at = clock_timestamp()
           WHERE id = $1""",
        t.payment_id,
        target.value,
        t.method.type if t.method else None,
        t.method.brand if t.method else None,
        t.method.last4 if t.method else None,
        t.failure_code,
        message_for(t.failure_code) if t.failure_code else None,
        t.department_confirmation,
        t.authorisation_id,
    )
    if t.event in (PaymentEvent.AUTHORISED, PaymentEvent.FAILED):
        await payer_attempts.record_outcome(conn, t.payment_id, t.failure_code or "authorised")
    detail = t.detail or (t.failure_code and f"failure: {t.failure_code}")
    actor = t.actor or actor_of(t.event)
    await _insert_event(
        conn, t.payment_id, t.event, current.value, target.value, actor, detail, dedupe_key
    )
    if target.is_terminal:  # the department hears of the end, through its webhooks
        await webhooks.record_payment_event(conn, t.payment_id)
    return target.value


async def record_note(pool: Pool, entry: AuditEntry) -> bool:
    """Add a note to the audit trail, once per payment, note and key; the state is kept."""
    async with pool.acquire() as conn, conn.transaction():
        return await record_note_in(conn, entry)


async def record_note_in(conn: Connection, entry: AuditEntry) -> bool:
    """``record_note`` in the caller's transaction (an operator's action written with it)."""
    state = await conn.fetchval("SELECT state FROM payments WHERE id = $1", entry.payment_id)
    if state is None:
        return False
    if entry.note in (AuditNote.DEPARTMENT_REVOKE_PENDING, AuditNote.DEPARTMENT_REVOKED):
        # What close_unpaid records as owed; a payment that replays the code from before the
        # column (patch revoke-owed-at-close) says it with the pending note instead.
        await conn.execute(
            "UPDATE payments SET department_revoke_owed = $2 WHERE id = $1",
            entry.payment_id,
            entry.note == AuditNote.DEPARTMENT_REVOKE_PENDING,
        )
    return await _insert_event(
        conn,
        entry.payment_id,
        entry.note,
        state,
        state,
        entry.actor,
        entry.detail,
        dedupe_key=f"{entry.payment_id}:{entry.note}:{entry.key}",
    )


# Once the issuer or acquirer has the method (a hold, an authorisation or a challenge), the
# card data is of no further use: it is deleted in the same transaction that records it.
CARD_DATA_SPENT_EVENTS = frozenset({PaymentEvent.AUTHORISED, PaymentEvent.CHALLENGE_REQUIRED})


async def record_transition(pool: Pool, t: Transition) -> str:
    async with pool.acquire() as conn, conn.transaction():
        state = await _apply_transition(conn, t)
        if t.event in CARD_DATA_SPENT_EVENTS:
            await vault.forget_payment(conn, t.payment_id)
        return state


ENDED_UNPAID = frozenset({PaymentState.FAILED, PaymentState.CANCELLED, PaymentState.EXPIRED})


async def close_unpaid(pool: Pool, t: Transition) -> str:
    """End a payment that was not paid: release its reservation, forget its card data.

    A payment whose reservation never committed has nothing to end. One that has already
    ended unpaid keeps its first end: the records can be a step ahead of the workflow when
    the workflow task that wrote them was lost with the update that led to them (a
    Temporal restart), and the workflow then ends the payment another way.
    """
    async with pool.acquire() as conn, conn.transaction():
        current = await conn.fetchval(
            "SELECT state FROM payments WHERE id = $1 FOR UPDATE", t.payment_id
        )
        if current is None:
            return PaymentState.FAILED.value
        if PaymentState(current) in ENDED_UNPAID:
            state = str(current)
        else:
            state = await _apply_transition(conn, t)
        if t.revoke_owed:  # with the end, so that no later step has to land for the sweeper
            await conn.execute(
                "UPDATE payments SET department_revoke_owed = true WHERE id = $1", t.payment_id
            )
        await conn.execute(
            "UPDATE fee_reservations SET status = 'released', updated_at = now() "
            "WHERE payment_id = $1 AND status = 'held'",
            t.payment_id,
        )
        await vault.forget_payment(conn, t.payment_id)
        return state


async def release_unanswered_reservation(pool: Pool, t: Transition) -> str:
    """End a payment whose reservation's answer came too late for its caller.

    Only a payment still merely ``reserved`` is ended. One that has moved on belongs to an
    earlier run of its workflow that an operator reset to its first task in Temporal: its
    workflow now ends without it, and the sweeper undoes what it holds at the partners.
    """
    state = await pool.fetchval("SELECT state FROM payments WHERE id = $1", t.payment_id)
    if state is not None and state != PaymentState.RESERVED:
        return str(state)
    return await close_unpaid(pool, t)


def ledger_postings(s: Settlement) -> list[tuple[str, int]]:
    """The balanced entries of a captured payment: debit the funds source, credit each line."""
    return capture_postings(s.method_type, s.department, s.lines)


async def settle(pool: Pool, s: Settlement) -> Receipt:
    """Post the ledger, issue the receipt and mark the payment succeeded, all or nothing."""
    async with pool.acquire() as conn, conn.transaction():
        existing = await conn.fetchrow(
            "SELECT receipt_number, issued_at FROM receipts WHERE payment_id = $1", s.payment_id
        )
        if existing:
            return Receipt(existing["receipt_number"], existing["issued_at"].isoformat())
        await ledger.post_journal(conn, s.payment_id, ledger_postings(s))
        await conn.execute(
            "INSERT INTO receipt_counters (department) VALUES ($1) ON CONFLICT DO NOTHING",
            s.department,
        )
        number = await conn.fetchval(
            "UPDATE receipt_counters SET last_number = last_number + 1 WHERE department = $1 "
            "RETURNING last_number",
            s.department,
        )
        receipt_number = f"{s.department}-{number:08d}"
        issued_at = await conn.fetchval(
            """INSERT INTO receipts (department, number, receipt_number, payment_id, amount)
               VALUES ($1, $2, $3, $4, $5) RETURNING issued_at""",
            s.department,
            number,
            receipt_number,
            s.payment_id,
            sum(line.amount for line in s.lines),
        )
        await conn.execute(
            "UPDATE fee_reservations SET status = 'consumed', updated_at = now() "
            "WHERE payment_id = $1",
            s.payment_id,
        )
        await vault.forget_payment(conn, s.payment_id)
        await _apply_transition(
            conn, Transition(s.payment_id, PaymentEvent.CAPTURED, detail=receipt_number)
        )
        return Receipt(receipt_number, issued_at.isoformat())


# --- reads for the API ------------------------------------------------------------------

PAYMENT_COLUMNS = """p.id, p.department, p.service_code, p.reference, p.state, p.amount_total,
    p.currency, p.lines, p.description, p.return_url, p.metadata, p.method_type,
    p.method_brand, p.method_last4, p.failure_code, p.failure_message,
    p.department_confirmation, p.workflow_id, p.expires_at, p.created_at, p.updated_at,
    p.declines, p.last_decline, r.receipt_number, r.issued_at AS receipt_issued_at,
    (SELECT coalesce(sum(f.amount), 0) FROM refunds f
      WHERE f.payment_id = p.id AND f.state = 'succeeded')::bigint AS refunded,
    (SELECT coalesce(sum(f.amount), 0) FROM refunds f
      WHERE f.payment_id = p.id AND f.state <> 'failed')::bigint AS refunds_held"""


@dataclass(frozen=True, slots=True)
class PaymentRow:
    """A payment as the API and the payer's page read it: its row, its receipt and what its
    refunds have taken (``PAYMENT_COLUMNS``)."""

    id: str
    department: str
    service_code: str
    reference: str
    state: PaymentState
    amount_total: int  # fils
    currency: str
    lines: list[dict[str, Any]]  # as stored: {"code", "amount"} each
    description: str | None
    return_url: str | None
    metadata: dict[str, Any]
    method_type: str | None
    method_brand: str | None
    method_last4: str | None
    failure_code: str | None
    failure_message: str | None
    department_confirmation: str | None
    workflow_id: str
    expires_at: datetime
    created_at: datetime
    updated_at: datetime
    declines: int  # the methods declined so far (the page lets the payer try another)
    last_decline: str | None
    receipt_number: str | None
    receipt_issued_at: datetime | None
    refunded: int  # fils refunded
    refunds_held: int  # fils taken by refunds done or in progress

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> PaymentRow:
        return cls(
            id=row["id"],
            department=row["department"],
            service_code=row["service_code"],
            reference=row["reference"],
            state=PaymentState(row["state"]),
            amount_total=row["amount_total"],
            currency=row["currency"],
            lines=row["lines"],
            description=row["description"],
            return_url=row["return_url"],
            metadata=row["metadata"],
            method_type=row["method_type"],
            method_brand=row["method_brand"],
            method_last4=row["method_last4"],
            failure_code=row["failure_code"],
            failure_message=row["failure_message"],
            department_confirmation=row["department_confirmation"],
            workflow_id=row["workflow_id"],
            expires_at=row["expires_at"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            declines=row["declines"],
            last_decline=row["last_decline"],
            receipt_number=row["receipt_number"],
            receipt_issued_at=row["receipt_issued_at"],
            refunded=row["refunded"],
            refunds_held=row["refunds_held"],
        )


async def get_payment(pool: Pool, department: str, payment_id: str) -> PaymentRow | None:
    row = await pool.fetchrow(
        f"SELECT {PAYMENT_COLUMNS} FROM payments p LEFT JOIN receipts r ON r.payment_id = p.id "
        "WHERE p.id = $1 AND p.department = $2",
        payment_id,
        department,
    )
    return None if row is None else PaymentRow.of(row)


async def get_payment_any_department(pool: Pool, payment_id: str) -> PaymentRow | None:
    """For the payer's side, where the token (not an API key) decides access."""
    row = await pool.fetchrow(
        f"SELECT {PAYMENT_COLUMNS} FROM payments p LEFT JOIN receipts r ON r.payment_id = p.id "
        "WHERE p.id = $1",
        payment_id,
    )
    return None if row is None else PaymentRow.of(row)


async def list_payments(
    pool: Pool,
    department: str,
    *,
    state: str | None,
    reference: str | None,
    created_from: datetime | None,
    created_to: datetime | None,
    limit: int,
    after: tuple[datetime, str] | None,
) -> list[PaymentRow]:
    """Newest first; one row more than ``limit`` tells the caller there is a next page."""
    clauses = ["p.department = $1"]
    args: list[object] = [department]

    def arg(value: object) -> str:
        args.append(value)
        return f"${len(args)}"

    if state:
        clauses.append(f"p.state = {arg(state)}")
    if reference:
        clauses.append(f"p.reference_key = {arg(reference_key(reference))}")
    if created_from:
        clauses.append(f"p.created_at >= {arg(created_from)}")
    if created_to:
        clauses.append(f"p.created_at < {arg(created_to)}")
    if after:
        clauses.append(f"(p.created_at, p.id) < ({arg(after[0])}, {arg(after[1])})")
    sql = (
        f"SELECT {PAYMENT_COLUMNS} FROM payments p LEFT JOIN receipts r ON r.payment_id = p.id "
        f"WHERE {' AND '.join(clauses)} ORDER BY p.created_at DESC, p.id DESC "
        f"LIMIT {arg(limit + 1)}"
    )
    return [PaymentRow.of(r) for r in await pool.fetch(sql, *args)]


@dataclass(frozen=True, slots=True)
class EventRow:
    """One entry of a payment's audit trail: a state change or a note (from and to the same
    state)."""

    event: str
    from_state: str | None
    to_state: str | None
    actor: str
    detail: str | None
    occurred_at: datetime

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> EventRow:
        return cls(
            row["event"],
            row["from_state"],
            row["to_state"],
            row["actor"],
            row["detail"],
            row["occurred_at"],
        )


async def list_events(pool: Pool, payment_id: str) -> list[EventRow]:
    """The payment's audit trail, oldest first."""
    rows = await pool.fetch(
        "SELECT event, from_state, to_state, actor, detail, occurred_at FROM payment_events "
        "WHERE payment_id = $1 ORDER BY id",
        payment_id,
    )
    return [EventRow.of(r) for r in rows]
