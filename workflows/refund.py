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

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.departments import DepartmentSystems
    from activities.payment_methods import PaymentMethods
    from activities.records import PaymentRecords
    from domain.money import format_aed
    from domain.queues import Role, payment_method_role, task_queue
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
    from workflows.payment import LOCAL_RETRY_THRESHOLD, RECORD_RETRY, RECORD_TIMEOUT

A = TypeVar("A")
T = TypeVar("T")

# Returning the money: retried with backoff for as long as the acquirer or issuer does not
# answer (an unclear answer may hide a refund that was made, and giving up would free an
# amount that went back); its explicit refusal is final.
REFUND_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=["refund_refused"],
)
# The department's notice: the refund is done, so it retries until the department takes it.
NOTICE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)
)


@workflow.defn
class RefundWorkflow:
    @workflow.run
    async def run(self, req: RefundRequest) -> RefundOutcome:
        self._req = req
        self._show(f"refunding {format_aed(req.amount)} of {req.payment_id}")
        state = await self._local(
            PaymentRecords.begin_refund, req.refund_id, summary="take the refund"
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
        partner = "e-Dirham issuer" if req.method_type == "e_dirham" else "card acquirer"
        self._show(f"returning the money through the {partner}: retried until it answers")
        try:
            await workflow.execute_activity_method(
                PaymentMethods.refund,
                RefundCall(req.refund_id, req.method_type, req.authorisation_id, req.amount),
                summary=f"refund {format_aed(req.amount)} through the {partner}",
                task_queue=_queue(payment_method_role(req.method_type)),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=REFUND_RETRY,
            )
        except ActivityError as err:
            cause = err.cause
            if not (isinstance(cause, ApplicationError) and cause.type == "refund_refused"):
                raise
            await self._local(
                PaymentRecords.fail_refund,
                RefundFailed(req.refund_id, RefundFailure.REFUSED, detail=cause.message),
                summary="record the refusal: the refund failed",
            )
            self._show(f"failed: {cause.message}")
            return RefundOutcome(RefundState.FAILED, RefundFailure.REFUSED)
        await self._local(
            PaymentRecords.settle_refund,
            RefundSettlement(
                req.refund_id, req.payment_id, req.department, req.method_type, req.lines
            ),
            summary="post the reversing journal: the refund succeeded",
        )
        return None

    async def _tell_the_department(self) -> None:
        req = self._req
        self._show(f"succeeded; telling {req.department} (retried until it takes it)")
        await workflow.execute_activity_method(
            DepartmentSystems.notify_refund,
            RefundNotice(req.refund_id, req.payment_id, req.department, req.reference, req.amount),
            summary=f"tell {req.department} of the refund",
            task_queue=_queue(Role.DEPARTMENTS),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=NOTICE_RETRY,
        )
        self._show(f"succeeded; {req.department} has the notice")

    def _show(self, doing: str) -> None:
        workflow.set_current_details(f"refund {self._req.refund_id}: {doing}")

    async def _local(
        self, activity: Callable[[Any, A], Awaitable[T]], arg: A, *, summary: str
    ) -> T:
        """A database step, retried while the database is away, as the payment's are."""
        return await workflow.execute_local_activity_method(
            activity,
            arg,
            summary=summary,
            start_to_close_timeout=RECORD_TIMEOUT,
            local_retry_threshold=LOCAL_RETRY_THRESHOLD,
            retry_policy=RECORD_RETRY,
        )


def _queue(role: Role) -> str:
    return task_queue(workflow.info().task_queue, role)
