"""The sweeper: ends the payments whose workflow ended without them.

An operator's Terminate in the Temporal UI skips every compensation; a workflow that fails
on a defect, or is lost, leaves its payment open too. Each run (a Temporal Schedule starts
one every few minutes):

forget card data past its use -> find the stranded payments -> for each one:
before capture: void the hold or authorisation, revoke the department's confirmation,
close the payment (cancelled by the operator, or failed as abandoned);
capture decided: capture and settle, as the workflow would have;
already ended with the department's revocation pending: revoke.

Every step is idempotent, so a payment swept twice is changed once. A step that fails
leaves its payment for the next run and the sweep goes on with the others.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from workflows.patches import SWEEP_FINAL_REFUSALS, SWEEP_REFUNDS
from workflows.steps import RECORD_TIMEOUT, call, count, is_error

with workflow.unsafe.imports_passed_through():
    from activities.departments import DepartmentSystems
    from activities.payment_methods import PaymentMethods
    from activities.records import PaymentRecords
    from activities.sweeper import Sweeps
    from domain.failures import ErrorType, FailureCode
    from domain.models import (
        AuditEntry,
        DepartmentRequest,
        FundsRequest,
        Settlement,
        Transition,
    )
    from domain.queues import Role, payment_method_role
    from domain.states import Actor, AuditNote, PaymentEvent, PaymentState
    from domain.sweeper import (
        STOPPED_BY_OPERATOR,
        FindStranded,
        StrandedPayment,
        SweepOutcome,
        SweepRequest,
        SweepSummary,
        SweptPayment,
    )

A = TypeVar("A")
T = TypeVar("T")

# The sweep itself: a few tries, then this run fails (visible in the schedule's recent
# actions) and the next one starts afresh.
SWEEP_QUERY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=3,
)
# One payment's steps: a few tries, then the payment waits for the next run, so that one
# partner that is down does not hold up the others.
PAYMENT_STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=3,
)
PARTNER_CALL_TIMEOUT = timedelta(seconds=30)


@workflow.defn
class SweeperWorkflow:
    @workflow.run
    async def run(self, req: SweepRequest) -> SweepSummary:
        summary = SweepSummary()
        summary.card_data_deleted = await call(
            Sweeps.delete_expired_card_data,
            req.card_data_max_age_seconds,
            summary="delete card data past the payment window",
            role=Role.RECORDS,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=SWEEP_QUERY_RETRY,
        )
        stranded = await call(
            Sweeps.find_stranded_payments,
            FindStranded(grace_seconds=req.grace_seconds, limit=req.batch),
            summary="find open payments whose workflow has closed",
            role=Role.RECORDS,
            start_to_close_timeout=timedelta(minutes=5),
            heartbeat_timeout=timedelta(minutes=1),
            retry_policy=SWEEP_QUERY_RETRY,
        )
        summary.stranded = len(stranded)
        for payment in stranded:
            swept = await self._sweep(payment)
            count(
                "epay_payments_swept",
                "Stranded payments the sweeper handled, by outcome",
                department=payment.department,
                outcome=swept.outcome.value,
            )
            summary.add(swept)
        workflow.deprecate_patch(SWEEP_REFUNDS)  # workflows/patches.py: the call goes next
        summary.refunds_restarted = await call(
            Sweeps.restart_stranded_refunds,
            FindStranded(grace_seconds=req.grace_seconds, limit=req.batch),
            summary="restart refunds whose workflow closed without them",
            role=Role.RECORDS,
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=SWEEP_QUERY_RETRY,
        )
        return summary

    async def _sweep(self, payment: StrandedPayment) -> SweptPayment:
        try:
            if PaymentState(payment.state).is_terminal:
                return await self._revoke(payment)
            if payment.state == PaymentState.CAPTURING:
                return await self._finish(payment)
            return await self._undo(payment)
        except ActivityError as err:
            # Left open for the next run: what was done is done (each step is idempotent).
            detail = f"{err.activity_type} failed: {err.cause}"
            workflow.logger.warning("sweeping %s: %s", payment.payment_id, detail)
            return SweptPayment(payment.payment_id, SweepOutcome.ERROR, detail)

    async def _undo(self, p: StrandedPayment) -> SweptPayment:
        """Before capture: undo what is open at the partners, then close the payment.

        The read model records each step before the call it leads to, so its state says
        what may be open: a method means an authorising request may have been sent, and
        ``confirming`` that the department may have been asked. The payer's money is
        released first; a department that cannot take the revocation yet keeps its payment
        open (and so found again by the next run) until it can.
        """
        done, refused = await self._release_methods(p)
        if p.state == PaymentState.CONFIRMING:
            await self._revoke_confirmation(p)
            done.append("department confirmation revoked")
        detail = f"{_workflow_ended(p)}; {', '.join(done) or 'nothing was open at the partners'}"
        by_operator = p.workflow_status in STOPPED_BY_OPERATOR
        await self._record(
            PaymentRecords.close_unpaid,
            Transition(
                p.payment_id,
                PaymentEvent.CANCELLED_BY_OPERATOR if by_operator else PaymentEvent.FAILED,
                actor=Actor.SWEEPER,
                failure_code=None if by_operator else FailureCode.PAYMENT_ABANDONED,
                detail=detail,
            ),
        )
        if refused:
            return SweptPayment(p.payment_id, SweepOutcome.NEEDS_OPERATOR, detail)
        outcome = SweepOutcome.CANCELLED if by_operator else SweepOutcome.ABANDONED
        return SweptPayment(p.payment_id, outcome, detail)

    async def _release_methods(self, p: StrandedPayment) -> tuple[list[str], bool]:
        """Release every hold or authorisation the payer's methods may have made.

        The method the payment is on is voided by its authorisation id, or reversed by its
        authorising call's idempotency key when that call's answer was lost; the methods
        declined before it hold nothing once declined, but are reversed by their own keys
        all the same, since the records may be a step behind. Each method's calls carry keys
        of its own (``attempt_key``), so no void answers for another's. A partner's final
        refusal is recorded for an operator rather than retried for ever. Returns what was
        done, and whether a partner refused.
        """
        done, refusals = [], 0
        methods = p.methods_to_release()
        for method, authorisation_id in methods:
            refused = await self._void(p, method.method_type, authorisation_id, method.attempt)
            what = "authorisation voided" if authorisation_id else "authorising call reversed"
            if len(methods) > 1 or method.attempt > 1:  # the payer tried more than one
                what = f"method {method.attempt}: {what}"
            done.append(refused or what)
            refusals += refused is not None
        return done, refusals > 0

    async def _void(
        self, p: StrandedPayment, method_type: str, authorisation_id: str, attempt: int
    ) -> str | None:
        """Void one method's hold or authorisation; what the partner refused, if it did."""
        try:
            await self._partner_call(
                PaymentMethods.void_authorisation,
                FundsRequest(p.payment_id, method_type, authorisation_id, p.amount, attempt),
                f"void the authorisation of {p.payment_id} (method {attempt})",
                payment_method_role(method_type),
            )
        except ActivityError as err:
            if not (
                is_error(err, ErrorType.VOID_REFUSED) and workflow.patched(SWEEP_FINAL_REFUSALS)
            ):
                raise
            refused = f"void refused for good for method {attempt}: {err.cause}"
            await self._record(
                PaymentRecords.record_note,
                AuditEntry(
                    p.payment_id,
                    AuditNote.VOID_REFUSED,
                    Actor.SWEEPER,
                    f"{refused}; ePay holds nothing more: an operator checks with the partner "
                    "(epay ops resolve)",
                    key=f"sweeper:{attempt}",
                ),
            )
            return refused
        return None

    async def _revoke_confirmation(self, p: StrandedPayment) -> None:
        await self._partner_call(
            DepartmentSystems.revoke_department_confirmation,
            DepartmentRequest(p.payment_id, p.department, p.reference, p.service_code, p.amount),
            f"revoke the department's confirmation of {p.payment_id}",
            Role.DEPARTMENTS,
        )

    async def _revoke(self, p: StrandedPayment) -> SweptPayment:
        """Already ended, with the department's revocation still owed: revoke it."""
        await self._revoke_confirmation(p)
        detail = f"{_workflow_ended(p)} before the department took the revocation; revoked"
        await self._record(
            PaymentRecords.record_note,
            AuditEntry(p.payment_id, AuditNote.DEPARTMENT_REVOKED, Actor.SWEEPER, detail),
        )
        return SweptPayment(p.payment_id, SweepOutcome.REVOKED, detail)

    async def _finish(self, p: StrandedPayment) -> SweptPayment:
        """Capture decided (the department has granted the service): capture and settle."""
        if not (p.authorisation_id and p.method_type):
            detail = (
                f"{_workflow_ended(p)} after the department confirmed, but the authorisation "
                "to capture is not known: an operator must capture or refund it"
            )
            await self._record(
                PaymentRecords.record_note,
                AuditEntry(p.payment_id, AuditNote.NEEDS_OPERATOR, Actor.SWEEPER, detail),
            )
            return SweptPayment(p.payment_id, SweepOutcome.NEEDS_OPERATOR, detail)
        await self._record(
            PaymentRecords.record_note,
            AuditEntry(
                p.payment_id,
                AuditNote.FINISHED_BY_SWEEPER,
                Actor.SWEEPER,
                f"{_workflow_ended(p)} after the department confirmed; capturing and settling",
            ),
        )
        try:
            await self._partner_call(
                PaymentMethods.capture,
                FundsRequest(p.payment_id, p.method_type, p.authorisation_id, p.amount),
                f"capture the funds of {p.payment_id}",
                payment_method_role(p.method_type),
            )
        except ActivityError as err:
            if not (
                is_error(err, ErrorType.CAPTURE_REFUSED) and workflow.patched(SWEEP_FINAL_REFUSALS)
            ):
                raise
            return await self._capture_refused(p, err)
        receipt = await self._record(
            PaymentRecords.settle, Settlement(p.payment_id, p.department, p.method_type, p.lines)
        )
        return SweptPayment(p.payment_id, SweepOutcome.SUCCEEDED, f"receipt {receipt.number}")

    async def _capture_refused(self, p: StrandedPayment, err: ActivityError) -> SweptPayment:
        """The partner refused the capture for good (the authorisation lapsed or was
        voided): the payment cannot be paid, so it is undone as the workflow undoes one,
        the payer's money first, and ends failed (``capture_failed``); the department hears
        of it through the revocation and its webhooks, and the reference can be paid again."""
        released, refused = await self._release_methods(p)
        done = [f"capture refused: {err.cause}", *released]
        await self._revoke_confirmation(p)
        done.append("department confirmation revoked")
        detail = f"{_workflow_ended(p)} after the department confirmed; {', '.join(done)}"
        await self._record(
            PaymentRecords.close_unpaid,
            Transition(
                p.payment_id,
                PaymentEvent.FAILED,
                actor=Actor.SWEEPER,
                failure_code=FailureCode.CAPTURE_FAILED,
                detail=detail,
            ),
        )
        outcome = SweepOutcome.NEEDS_OPERATOR if refused else SweepOutcome.CAPTURE_FAILED
        return SweptPayment(p.payment_id, outcome, detail)

    async def _partner_call(
        self, activity: Callable[[Any, A], Awaitable[None]], arg: A, summary: str, partner: Role
    ) -> None:
        await call(
            activity,
            arg,
            summary=summary,
            role=partner,
            start_to_close_timeout=PARTNER_CALL_TIMEOUT,
            retry_policy=PAYMENT_STEP_RETRY,
        )

    async def _record(self, activity: Callable[[Any, A], Awaitable[T]], arg: A) -> T:
        return await call(
            activity,
            arg,
            role=Role.RECORDS,
            start_to_close_timeout=RECORD_TIMEOUT,
            retry_policy=PAYMENT_STEP_RETRY,
        )


def _workflow_ended(p: StrandedPayment) -> str:
    """``workflow terminated``, ``workflow not found`` ..., for the audit trail."""
    return f"workflow {p.workflow_status.replace('_', ' ')}"
