"""The API's conversations with payment workflows.

A payment's workflow may have ended while the read model still shows the payment open: an
operator cancelled or terminated it in Temporal, or it failed. Temporal says so in several
ways (an RPC error about a closed workflow, an update aborted by the closing workflow, a
failed result); this module turns each of them into one answer, ``PAYMENT_CLOSED``, and the
API then answers from the read model: the payment as it stands, or a 409 naming its state.
"""

from __future__ import annotations

import asyncio
import dataclasses

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowFailureError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from domain.models import PaymentMethodSubmission, PaymentRequest, ReservationResult
from domain.money import format_aed
from domain.proofs import proof_name, update_proof
from epay.temporal import payment_workflow_id
from workflows.payment import PaymentWorkflow

PAYMENT_CLOSED = "payment_closed"
"""The payment's workflow has ended: what became of the payment, the read model says."""

RESERVATION_PENDING = "reservation_pending"
"""No answer within the wait: the reservation may still be made."""


def _closed(err: RPCError) -> bool:
    """Temporal's answer to a call on a workflow that has ended (or an update it aborted)."""
    return err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION)


async def start_payment(
    client: Client, task_queue: str, req: PaymentRequest, wait_seconds: float
) -> ReservationResult:
    """Start the payment's workflow (or join it, if already started) and wait up to
    ``wait_seconds`` for its reservation: one round trip, thanks to update-with-start."""
    wf_id = payment_workflow_id(req.payment_id)
    start = WithStartWorkflowOperation(
        PaymentWorkflow.run,
        req,
        id=wf_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        static_summary=f"{req.department} {req.service_code} {req.reference} "
        f"{format_aed(req.total)}",
        static_details=_static_details(req),
    )
    try:
        result: ReservationResult = await asyncio.wait_for(
            client.execute_update_with_start_workflow(
                PaymentWorkflow.reservation, start_workflow_operation=start
            ),
            timeout=wait_seconds,
        )
        return result
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        # No answer in time (the SDK reports the wait being given up as its own error).
        return ReservationResult(ok=False, code=RESERVATION_PENDING)
    except WorkflowAlreadyStartedError:
        # The workflow ran and closed already (a replay after a crash): read its outcome.
        try:
            outcome = await client.get_workflow_handle_for(PaymentWorkflow.run, wf_id).result()
        except WorkflowFailureError:  # cancelled, terminated, failed or timed out
            return ReservationResult(ok=False, code=PAYMENT_CLOSED)
        if outcome.state == "rejected":
            return ReservationResult(ok=False, code=outcome.failure_code)
        return ReservationResult(ok=True)
    except WorkflowUpdateFailedError:
        # The reservation update refuses nothing: it fails only when the workflow ends
        # before answering it.
        return ReservationResult(ok=False, code=PAYMENT_CLOSED)
    except RPCError as err:
        if _closed(err):  # the workflow ended while the update waited for it
            return ReservationResult(ok=False, code=PAYMENT_CLOSED)
        raise  # Temporal is unreachable: a 503 for the caller


def _static_details(req: PaymentRequest) -> str:
    """What the payment is for, on its page in the Temporal UI (no personal data)."""
    lines = "\n".join(f"- {line.code}: {format_aed(line.amount)}" for line in req.lines)
    return (
        f"Department: {req.department}\nService: {req.service_code}\n"
        f"Reference: {req.reference}\nTotal: {format_aed(req.total)}\n{lines}"
    )


class UpdateRejected(Exception):
    """The workflow refused the update (``code`` is its validator's) or has ended
    (``PAYMENT_CLOSED``): either way the payment stays as the read model shows it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


async def _update(client: Client, payment_id: str, update: object, *args: object) -> None:
    handle = client.get_workflow_handle(payment_workflow_id(payment_id))
    try:
        await handle.execute_update(update, args=list(args))  # type: ignore[call-overload]
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.type:
            raise UpdateRejected(cause.type, cause.message) from None
        # accepted, then aborted by the closing workflow
        raise UpdateRejected(PAYMENT_CLOSED, "the payment's workflow has ended") from None
    except RPCError as err:
        if _closed(err):
            raise UpdateRejected(PAYMENT_CLOSED, "the payment's workflow has ended") from None
        raise  # Temporal is unreachable: a 503 for the caller


# The payer's and the department's updates carry a proof that this API sent them, checked by
# the workflow's validators against the commitments in its input (domain.proofs).


async def submit_payment_method(
    client: Client,
    secret: bytes,
    payment_id: str,
    submission: PaymentMethodSubmission,
    method_number: int = 1,
) -> None:
    """Hand the payment its ``method_number``-th method (the hosted page allows another
    after a decline: each has a proof of its own)."""
    proof = update_proof(secret, payment_id, proof_name("submit_payment_method", method_number))
    proven = dataclasses.replace(submission, proof=proof)
    await _update(client, payment_id, PaymentWorkflow.submit_payment_method, proven)


async def submit_challenge_answer(
    client: Client, secret: bytes, payment_id: str, otp: str, method_number: int = 1
) -> None:
    proof = update_proof(secret, payment_id, proof_name("submit_challenge_answer", method_number))
    await _update(client, payment_id, PaymentWorkflow.submit_challenge_answer, otp, proof)


async def cancel(client: Client, secret: bytes, payment_id: str, reason: str) -> None:
    proof = update_proof(secret, payment_id, "cancel")
    await _update(client, payment_id, PaymentWorkflow.cancel, reason, proof)
