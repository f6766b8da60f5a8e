"""The payment's records in PostgreSQL: reservation, state changes, ledger and receipt.

These run as local activities: they are short database transactions, and each is
idempotent so that a retry after a lost answer changes nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.models import (
    AuditEntry,
    PaymentRequest,
    Receipt,
    ReservationResult,
    Settlement,
    Transition,
)
from domain.refunds import RefundFailed, RefundSettlement
from domain.states import IllegalTransition
from store import payments, refunds


class PaymentRecords:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @activity.defn
    async def reserve_fee(self, req: PaymentRequest) -> ReservationResult:
        """Create the payment and lock its reference for this payment alone."""
        info = activity.info()
        result = await payments.reserve_fee(
            self.pool, req, info.workflow_id or req.payment_id, info.current_attempt_scheduled_time
        )
        activity.logger.info("fee %s", "reserved" if result.ok else f"not reserved: {result.code}")
        return result

    @activity.defn
    async def record_transition(self, change: Transition) -> str:
        with _illegal_transitions_are_final():
            state = await payments.record_transition(self.pool, change)
        activity.logger.info("%s: now %s", change.event, state)
        return state

    @activity.defn
    async def record_note(self, entry: AuditEntry) -> None:
        """Add a note (an operator's refused cancel, a pending revoke) to the audit trail."""
        await payments.record_note(self.pool, entry)

    @activity.defn
    async def close_unpaid(self, change: Transition) -> str:
        """Record the end state, release the reservation and forget the card data."""
        with _illegal_transitions_are_final():
            state = await payments.close_unpaid(self.pool, change)
        activity.logger.info("%s: ended %s, reservation released", change.event, state)
        return state

    @activity.defn
    async def release_unanswered_reservation(self, change: Transition) -> str:
        """Release a reservation made too late for its caller (only if nothing followed)."""
        with _illegal_transitions_are_final():
            return await payments.release_unanswered_reservation(self.pool, change)

    @activity.defn
    async def settle(self, settlement: Settlement) -> Receipt:
        """Post the balanced ledger journal and issue the receipt, once."""
        with _illegal_transitions_are_final():
            receipt = await payments.settle(self.pool, settlement)
        activity.logger.info("settled: receipt %s", receipt.number)
        return receipt

    # --- a refund's steps (RefundWorkflow) ---------------------------------------------------

    @activity.defn
    async def begin_refund(self, refund_id: str) -> str:
        """Take the refund for its workflow and say its state (store.refunds.begin)."""
        return await refunds.begin(self.pool, refund_id)

    @activity.defn
    async def settle_refund(self, settlement: RefundSettlement) -> str:
        """Post the refund's reversing journal and mark it succeeded, once."""
        try:
            state = await refunds.settle(self.pool, settlement)
        except ValueError as exc:  # a refund that failed cannot succeed, on any retry
            raise ApplicationError(str(exc), type="refund_not_pending", non_retryable=True) from exc
        activity.logger.info("refund %s: %s", settlement.refund_id, state)
        return state

    @activity.defn
    async def fail_refund(self, failure: RefundFailed) -> str:
        """Mark the refund failed (nothing went back): its amount can be refunded again."""
        state = await refunds.fail(self.pool, failure)
        activity.logger.info("refund %s: %s (%s)", failure.refund_id, state, failure.failure_code)
        return state


@contextmanager
def _illegal_transitions_are_final() -> Iterator[None]:
    """An event the state machine forbids now is forbidden on every retry too."""
    try:
        yield
    except IllegalTransition as exc:
        raise ApplicationError(str(exc), type="IllegalTransition", non_retryable=True) from exc
