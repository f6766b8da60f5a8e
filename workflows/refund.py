"""One refund of a succeeded payment, as a durable workflow (id ``refund-<refund id>``).

take the refund -> return the money through the payment's method -> post the reversing
journal and mark the refund succeeded -> tell the department.

The money goes back through the authorisation or hold the payment was captured on, retried
until the acquirer or issuer answers; only its explicit refusal fails the refund (its
amount is then free to refund again). Once the money is back, the refund is ``succeeded``
whatever follows, and the department's notice is retried until the department takes it;
the workflow closes then, as a payment's does once its department took a revocation.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.steps import COMPENSATION_RETRY, OUTSIDE_CALL_RETRY, RECORD_RETRY, call, local

with workflow.unsafe.imports_passed_through():
    from activities.departments import DepartmentSystems
    from activities.payment_methods import PaymentMethods
    from activities.records import PaymentRecords
    from domain.failures import ErrorType
    from domain.money import format_aed
    from domain.queues import Role, partner_name, payment_method_role
    from domain.refunds import (
        RefundCall,
        RefundFailed,
        RefundFailure,
        RefundNotice,
        RefundOutcome,
        RefundRequest,
        RefundSettlement,
        RefundState,
    )

# Returning the money: retried with backoff, as every outside call is, for as long as the
# acquirer or issuer does not answer (an unclear answer may hide a refund that was made, and
# giving up would free an amount that went back); its explicit refusal is final.
REFUND_RETRY = replace(OUTSIDE_CALL_RETRY, non_retryable_error_types=[ErrorType.REFUND_REFUSED])


@workflow.defn
class RefundWorkflow:
    @workflow.run
    async def run(self, req: RefundRequest) -> RefundOutcome:
        self._req = req
        self._show(f"refunding {format_aed(req.amount)} of {req.payment_id}")
        state = await local(
            PaymentRecords.begin_refund,
            req.refund_id,
            summary="take the refund",
            retry_policy=RECORD_RETRY,
        )
        if state == RefundState.FAILED:  # failed before it was taken (its start was lost)
            self._show("failed before it started")
            return RefundOutcome(RefundState.FAILED, RefundFailure.NOT_STARTED)
        if state == RefundState.PENDING:
            refused = await self._return_the_money()
            if refused is not None:
                return refused
        await self._tell_the_department()
        return RefundOutcome(RefundState.SUCCEEDED)

    async def _return_the_money(self) -> RefundOutcome | None:
        """Refund through the payment's method and settle; the outcome if it was refused."""
        req = self._req
        partner = partner_name(req.method_type)
        self._show(f"returning the money through the {partner}: retried until it answers")
        try:
            await call(
                PaymentMethods.refund,
                RefundCall(req.refund_id, req.method_type, req.authorisation_id, req.amount),
                summary=f"refund {format_aed(req.amount)} through the {partner}",
                role=payment_method_role(req.method_type),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=REFUND_RETRY,
            )
        except ActivityError as err:
            cause = err.cause
            if not (isinstance(cause, ApplicationError) and cause.type == ErrorType.REFUND_REFUSED):
                raise
            await local(
                PaymentRecords.fail_refund,
                RefundFailed(req.refund_id, RefundFailure.REFUSED, detail=cause.message),
                summary="record the refusal: the refund failed",
                retry_policy=RECORD_RETRY,
            )
            self._show(f"failed: {cause.message}")
            return RefundOutcome(RefundState.FAILED, RefundFailure.REFUSED)
        await local(
            PaymentRecords.settle_refund,
            RefundSettlement(
                req.refund_id, req.payment_id, req.department, req.method_type, req.lines
            ),
            summary="post the reversing journal: the refund succeeded",
            retry_policy=RECORD_RETRY,
        )
        return None

    async def _tell_the_department(self) -> None:
        req = self._req
        self._show(f"succeeded; telling {req.department} (retried until it takes it)")
        await call(
            DepartmentSystems.notify_refund,
            RefundNotice(req.refund_id, req.payment_id, req.department, req.reference, req.amount),
            summary=f"tell {req.department} of the refund",
            role=Role.DEPARTMENTS,
            start_to_close_timeout=timedelta(seconds=30),
            # The refund is done: like a compensation, the notice retries until it is taken.
            retry_policy=COMPENSATION_RETRY,
        )
        self._show(f"succeeded; {req.department} has the notice")

    def _show(self, doing: str) -> None:
        workflow.set_current_details(f"refund {self._req.refund_id}: {doing}")
