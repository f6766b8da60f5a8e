"""The sweeper's queries: open payments to hold against Temporal, and card data past its use.

The payment lifecycle's own steps (``close_unpaid``, ``settle``, ``record_note``) are the
payment store's; the sweeper reaches them through the same activities as the workflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from asyncpg import Pool

from domain.money import FeeLine
from domain.sweeper import MethodAttempt, StrandedPayment

# The predicate of the ``payments_open`` index (003_saga.sql), written the same way so that
# PostgreSQL uses it: the payments not in an end state of ``domain.states``.
OPEN = "state NOT IN ('succeeded', 'failed', 'cancelled', 'expired')"


@dataclass(frozen=True, slots=True)
class SweptPayment:
    """A payment the sweeper holds against its workflow: ``updated_at`` and ``id`` are where
    the next page of open payments starts."""

    id: str
    workflow_id: str
    updated_at: datetime

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> SweptPayment:
        return cls(row["id"], row["workflow_id"], row["updated_at"])


async def open_payments(
    pool: Pool, *, quiet_for: timedelta, after: tuple[datetime, str] | None, limit: int
) -> list[SweptPayment]:
    """Open payments unchanged for ``quiet_for``, least recently changed first, a page at a
    time (``after``: the last row of the previous page)."""
    after_clause = "AND (updated_at, id) > ($3, $4)" if after else ""
    rows = await pool.fetch(
        f"""SELECT id, workflow_id, updated_at FROM payments
            WHERE {OPEN} AND updated_at < clock_timestamp() - $1::interval {after_clause}
            ORDER BY updated_at, id LIMIT $2""",
        quiet_for,
        limit,
        *(after or ()),
    )
    return [SweptPayment.of(r) for r in rows]


# Ended payments whose department had not yet taken the revocation of its confirmation when
# the payment ended (recorded by close_unpaid in the same transaction; the workflow goes on
# retrying it, and the sweeper takes over if the workflow stops). The notes' predicate
# covers what workers from before migration 013 wrote without the column; it goes once no
# such payment can be left (docs/design.md, "Sweeper").
REVOKE_PENDING = """(department_revoke_owed OR (
    EXISTS (SELECT 1 FROM payment_events e WHERE e.payment_id = payments.id
        AND e.event = 'department_revoke_pending')
    AND NOT EXISTS (SELECT 1 FROM payment_events e WHERE e.payment_id = payments.id
        AND e.event = 'department_revoked')))"""


async def revokes_pending(pool: Pool, *, quiet_for: timedelta, limit: int) -> list[SweptPayment]:
    """Ended payments whose department revocation is still pending, oldest first."""
    rows = await pool.fetch(
        f"""SELECT id, workflow_id, updated_at FROM payments
            WHERE NOT ({OPEN}) AND {REVOKE_PENDING}
              AND updated_at < clock_timestamp() - $1::interval
            ORDER BY updated_at, id LIMIT $2""",
        quiet_for,
        limit,
    )
    return [SweptPayment.of(r) for r in rows]


async def stranded_payment(
    pool: Pool, payment_id: str, workflow_status: str
) -> StrandedPayment | None:
    """The payment as the read model has it now, if it is still open or still owes the
    department a revocation."""
    found = await _payment(pool, payment_id, workflow_status, f"({OPEN} OR {REVOKE_PENDING})")
    return found[0] if found else None


async def _payment(
    pool: Pool, payment_id: str, workflow_status: str, condition: str = "true"
) -> tuple[StrandedPayment, bool] | None:
    """The payment as a StrandedPayment, and whether a revocation is owed to its department,
    if it meets ``condition``."""
    row = await pool.fetchrow(
        f"""SELECT id, state, department, service_code, reference, amount_total, lines,
                   method_type, authorisation_id, declines, department_revoke_owed
            FROM payments WHERE id = $1 AND {condition}""",
        payment_id,
    )
    if row is None:
        return None
    earlier = await pool.fetch(
        """SELECT DISTINCT attempt, method_type FROM payer_attempts
            WHERE payment_id = $1 AND attempt <= $2 ORDER BY attempt, method_type""",
        payment_id,
        row["declines"] + 1,
    )
    payment = StrandedPayment(
        payment_id=row["id"],
        state=row["state"],
        workflow_status=workflow_status,
        department=row["department"],
        service_code=row["service_code"],
        reference=row["reference"],
        amount=row["amount_total"],
        lines=[FeeLine(line["code"], line["amount"]) for line in row["lines"]],
        method_type=row["method_type"],
        authorisation_id=row["authorisation_id"],
        attempt=row["declines"] + 1,
        earlier_methods=[MethodAttempt(r["attempt"], r["method_type"]) for r in earlier],
    )
    return payment, row["department_revoke_owed"]


# What the sweeper, or a payment's workflow, leaves to an operator, until an operator
# resolves it (``epay ops resolve``).
LEFT_TO_OPERATOR = ("needs_operator", "void_refused")


async def left_to_operator(pool: Pool, payment_id: str) -> tuple[StrandedPayment, bool, set[str]]:
    """For ``epay ops resolve``: the payment (LookupError if there is none), whether a
    revocation is owed to its department, and the notes left to an operator since the last
    time one resolved it."""
    found = await _payment(pool, payment_id, "left to an operator")
    if found is None:
        raise LookupError(payment_id)
    notes = await pool.fetch(
        """SELECT DISTINCT event FROM payment_events
            WHERE payment_id = $1 AND event = ANY($2::text[])
              AND id > coalesce((SELECT max(id) FROM payment_events
                  WHERE payment_id = $1 AND event = 'operator_resolved'), 0)""",
        payment_id,
        list(LEFT_TO_OPERATOR),
    )
    return found[0], found[1], {r["event"] for r in notes}


async def delete_card_data_older_than(pool: Pool, age: timedelta) -> int:
    """Delete sealed card data older than ``age``, whatever its payment's state."""
    status = await pool.execute(
        "DELETE FROM card_vault WHERE created_at < clock_timestamp() - $1::interval", age
    )
    return int(status.split()[-1])
