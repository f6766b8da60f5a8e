"""The API's conversations with payment workflows."""

from __future__ import annotations

import asyncio

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from domain.models import PaymentMethodSubmission, PaymentRequest, ReservationResult
from epay.temporal import payment_workflow_id
from workflows.payment import PaymentWorkflow

RESERVATION_WAIT_SECONDS = 45.0


async def start_payment(client: Client, task_queue: str, req: PaymentRequest) -> ReservationResult:
    """Start the payment's workflow (or join it, if already started) and wait for its
    reservation: one round trip, thanks to update-with-start."""
    wf_id = payment_workflow_id(req.payment_id)
    start = WithStartWorkflowOperation(
        PaymentWorkflow.run,
        req,
        id=wf_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        static_summary=f"{req.department} {req.service_code} {req.reference}",
    )
    try:
        result: ReservationResult = await asyncio.wait_for(
            client.execute_update_with_start_workflow(
                PaymentWorkflow.reservation, start_workflow_operation=start
            ),
            timeout=RESERVATION_WAIT_SECONDS,
        )
        return result
    except TimeoutError:
        return ReservationResult(ok=False, code="reservation_pending")
    except WorkflowAlreadyStartedError:
        # The workflow ran and closed already (a replay after a crash): read its outcome.
        outcome = await client.get_workflow_handle_for(PaymentWorkflow.run, wf_id).result()
        if outcome.state == "rejected":
            return ReservationResult(ok=False, code=outcome.failure_code)
        return ReservationResult(ok=True)


class UpdateRejected(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


async def _update(client: Client, payment_id: str, update: object, arg: object) -> None:
    handle = client.get_workflow_handle(payment_workflow_id(payment_id))
    try:
        await handle.execute_update(update, arg)  # type: ignore[call-overload]
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.type:
            raise UpdateRejected(cause.type, cause.message) from None
        raise
    except RPCError as err:
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            raise UpdateRejected("payment_closed", "the payment has already ended") from err
        raise  # Temporal is unreachable: a 503 for the caller


async def submit_payment_method(
    client: Client, payment_id: str, submission: PaymentMethodSubmission
) -> None:
    await _update(client, payment_id, PaymentWorkflow.submit_payment_method, submission)


async def submit_challenge_answer(client: Client, payment_id: str, otp: str) -> None:
    await _update(client, payment_id, PaymentWorkflow.submit_challenge_answer, otp)


async def cancel(client: Client, payment_id: str, reason: str) -> None:
    await _update(client, payment_id, PaymentWorkflow.cancel, reason)
