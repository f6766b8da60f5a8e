"""One payment, from reservation to receipt, as a durable workflow.

reserve the fee -> wait for the payer's method -> authorise (3-D Secure if asked)
-> confirm with the department -> capture -> settle (ledger and receipt).

A step that fails for good is compensated in reverse order (revoke the department's
confirmation, void the hold or authorisation, release the reservation), so that every end
other than ``succeeded`` leaves nothing behind. Card data never enters this workflow: the
payer's method arrives as a summary and an opaque vault token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.departments import DepartmentSystems
    from activities.payment_methods import PaymentMethods
    from activities.records import PaymentRecords
    from domain.failures import FailureCode
    from domain.models import (
        AuthorisationResult,
        AuthoriseRequest,
        ChallengeAnswer,
        DepartmentRequest,
        FundsRequest,
        PaymentMethodSubmission,
        PaymentOutcome,
        PaymentRequest,
        Receipt,
        ReservationResult,
        Settlement,
        Transition,
    )
    from domain.states import CANCELLABLE_STATES, PaymentState

# Database steps: short local transactions, retried quickly, for as long as it takes.
RECORD_TIMEOUT = timedelta(seconds=10)
# The API's caller waits 45 s for the reservation: it starts within 15 s and ends within 30 s.
RESERVE_START_LIMIT = timedelta(seconds=15)
RESERVE_DEADLINE = timedelta(seconds=15)
RECORD_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10)
)
# Calls to issuers, acquirers and departments: retried with backoff on transient trouble.
OUTSIDE_CALL_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=["authorisation_failed", "capture_failed", "department_error"],
)
# Compensations must end up done: they retry without limit.
COMPENSATION_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)
)


class PaymentEnded(Exception):
    """The payment ends unpaid: cancelled, expired, or failed with a failure code."""

    def __init__(self, event: str, failure_code: str | None = None, detail: str | None = None):
        super().__init__(event)
        self.event = event
        self.failure_code = failure_code
        self.detail = detail


@workflow.defn
class PaymentWorkflow:
    def __init__(self) -> None:
        self._state: PaymentState | None = None
        self._reservation: ReservationResult | None = None
        self._submission: PaymentMethodSubmission | None = None
        self._otp: str | None = None
        self._cancel_reason: str | None = None
        self._compensations: list[Callable[[], Awaitable[Any]]] = []
        self._authorisation_id: str | None = None
        self._capture_decided = False
        self._ending = False  # compensations have begun: the payer and department are refused

    @workflow.run
    async def run(self, req: PaymentRequest) -> PaymentOutcome:
        self._req = req
        self._deadline = workflow.now() + timedelta(seconds=req.payment_window_seconds)
        self._reservation = await self._reserve_fee(req)
        if not self._reservation.ok:
            await workflow.wait_condition(workflow.all_handlers_finished)
            return PaymentOutcome(state="rejected", failure_code=self._reservation.code)
        self._state = PaymentState.RESERVED
        try:
            outcome = await self._pay(req)
        except PaymentEnded as end:
            outcome = await self._end_unpaid(end.event, end.failure_code, detail=end.detail)
        except asyncio.CancelledError:
            # Cancelled from Temporal itself (an operator, not the API): still undo
            # everything, unless the funds are already being taken.
            if not self._capture_decided:
                await self._end_unpaid(
                    "cancelled", None, detail="cancelled in Temporal", actor="operator"
                )
            raise
        await workflow.wait_condition(workflow.all_handlers_finished)
        return outcome

    async def _reserve_fee(self, req: PaymentRequest) -> ReservationResult:
        """Reserve, or refuse, within the time the API's caller waits for the answer."""
        queued = workflow.now().timestamp() - (req.requested_at or workflow.now().timestamp())
        if queued > RESERVE_START_LIMIT.total_seconds():
            # The API has already told its caller that nothing was reserved.
            return ReservationResult(ok=False, code=FailureCode.RESERVATION_FAILED)
        try:
            return await workflow.execute_local_activity_method(
                PaymentRecords.reserve_fee,
                req,
                start_to_close_timeout=RECORD_TIMEOUT,
                schedule_to_close_timeout=RESERVE_DEADLINE,
                retry_policy=RECORD_RETRY,
            )
        except ActivityError:
            # The reservation may have been made with its answer lost: undo it, if so,
            # once the database answers again. The caller is told at once.
            self._reservation = ReservationResult(ok=False, code=FailureCode.RESERVATION_FAILED)
            await self._local(
                PaymentRecords.close_unpaid,
                Transition(req.payment_id, "failed", failure_code=FailureCode.RESERVATION_FAILED),
            )
            return self._reservation

    async def _pay(self, req: PaymentRequest) -> PaymentOutcome:
        await self._wait_for_payer(lambda: self._submission is not None)
        assert self._submission is not None
        method = self._submission.method
        await self._record("method_submitted", method=method)

        # Registered before the call: a hold placed with its answer lost is voided too.
        self._compensations.append(self._void)
        auth = await self._call(
            PaymentMethods.authorise,
            AuthoriseRequest(req.payment_id, method.type, self._submission.vault_token, req.total),
            summary="authorise the payment method",
            failure_code=FailureCode.AUTHORISATION_FAILED,
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=timedelta(minutes=10),
        )
        if auth.status == "requires_action":
            auth = await self._three_d_secure(auth)
        if auth.status != "authorised":
            raise PaymentEnded("failed", auth.failure_code or FailureCode.CARD_DECLINED)
        await self._record("authorised")

        department = DepartmentRequest(
            req.payment_id, req.department, req.reference, req.service_code, req.total
        )
        # Revoking is harmless if the department never confirmed, and covers a confirmation
        # that lands just as the payment is cancelled.
        self._compensations.append(lambda: self._revoke(department))
        answer = await self._call(
            DepartmentSystems.confirm_with_department,
            department,
            summary="confirm with the department",
            failure_code=FailureCode.DEPARTMENT_UNAVAILABLE,
            abandon_on_cancel=True,
            start_to_close_timeout=timedelta(seconds=15),
            schedule_to_close_timeout=timedelta(seconds=req.confirm_deadline_seconds),
        )
        if not answer.confirmed:
            raise PaymentEnded("failed", answer.failure_code or FailureCode.DEPARTMENT_REJECTED)
        self._capture_decided = True  # from here on a cancel is refused: the service is granted
        await self._record("department_confirmed", confirmation=answer.confirmation_reference)

        await self._call(
            PaymentMethods.capture,
            FundsRequest(req.payment_id, method.type, auth.authorisation_id or "", req.total),
            summary="capture the funds",
            failure_code=FailureCode.CAPTURE_FAILED,
            # Past the point of no return: retried until the acquirer or issuer answers,
            # since a capture whose answer was lost may well have happened.
            start_to_close_timeout=timedelta(seconds=30),
        )
        receipt: Receipt = await self._local(
            PaymentRecords.settle,
            Settlement(req.payment_id, req.department, method.type, req.lines),
        )
        self._state = PaymentState.SUCCEEDED
        return PaymentOutcome(state="succeeded", receipt=receipt)

    async def _three_d_secure(self, auth: AuthorisationResult) -> AuthorisationResult:
        await self._record("challenge_required")
        await self._wait_for_payer(lambda: self._otp is not None)
        result = await self._call(
            PaymentMethods.complete_challenge,
            ChallengeAnswer(self._req.payment_id, auth.authorisation_id or "", self._otp or ""),
            summary="complete the 3-D Secure challenge",
            failure_code=FailureCode.AUTHORISATION_FAILED,
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=timedelta(minutes=10),
        )
        if result.status == "authorised":
            await self._record("challenge_passed")
        return result

    # --- the payer and the department talk to the workflow through these ----------------

    @workflow.update
    async def reservation(self) -> ReservationResult:
        """Answers once the fee is reserved (or could not be): the API's 201 waits on it."""
        await workflow.wait_condition(lambda: self._reservation is not None)
        assert self._reservation is not None
        return self._reservation

    @workflow.update
    def submit_payment_method(self, submission: PaymentMethodSubmission) -> None:
        self._submission = submission

    @submit_payment_method.validator
    def _validate_submission(self, submission: PaymentMethodSubmission) -> None:
        if (
            self._state != PaymentState.RESERVED
            or self._submission
            or self._cancel_reason
            or self._ending
        ):
            raise ApplicationError(
                "this payment is not waiting for a payment method", type="not_awaiting_method"
            )

    @workflow.update
    def submit_challenge_answer(self, otp: str) -> None:
        self._otp = otp

    @submit_challenge_answer.validator
    def _validate_challenge_answer(self, otp: str) -> None:
        if self._state != PaymentState.REQUIRES_ACTION or self._otp is not None or self._ending:
            raise ApplicationError(
                "this payment is not waiting for a 3-D Secure answer", type="not_awaiting_challenge"
            )

    @workflow.update
    def cancel(self, reason: str) -> None:
        self._cancel_reason = reason or "cancelled by the department"

    @cancel.validator
    def _validate_cancel(self, reason: str) -> None:
        if (
            self._state not in CANCELLABLE_STATES
            or self._cancel_reason
            or self._capture_decided
            or self._ending
        ):
            raise ApplicationError(
                "this payment can no longer be cancelled", type="not_cancellable"
            )

    @workflow.query
    def state(self) -> str | None:
        return self._state.value if self._state else None

    # --- helpers --------------------------------------------------------------------------

    async def _wait_for_payer(self, arrived: Callable[[], bool]) -> None:
        """Wait for the payer until the payment window closes; a cancel ends the wait."""
        remaining = (self._deadline - workflow.now()).total_seconds()
        try:
            await workflow.wait_condition(
                lambda: arrived() or self._cancel_reason is not None, timeout=max(remaining, 0.001)
            )
        except TimeoutError:
            raise PaymentEnded("expired", FailureCode.PAYMENT_WINDOW_EXPIRED) from None
        self._raise_if_cancelled()

    def _raise_if_cancelled(self) -> None:
        if self._cancel_reason is not None:
            raise PaymentEnded("cancelled", detail=self._cancel_reason)

    async def _call(
        self,
        activity: Any,
        arg: Any,
        *,
        summary: str,
        failure_code: str,
        abandon_on_cancel: bool = False,
        **timeouts: Any,
    ) -> Any:
        """Call the outside world through an activity, retrying transient trouble.

        A call that fails for good (or runs out of time) ends the payment with
        ``failure_code``. A cancel asked for meanwhile applies once the call is back, or at
        once for a call that may wait long (``abandon_on_cancel``).
        """
        task = asyncio.ensure_future(
            workflow.execute_activity_method(
                activity, arg, summary=summary, retry_policy=OUTSIDE_CALL_RETRY, **timeouts
            )
        )
        if abandon_on_cancel:
            await workflow.wait_condition(lambda: task.done() or self._cancel_reason is not None)
            if not task.done():
                task.cancel()
        try:
            result = await task
        except asyncio.CancelledError:
            self._raise_if_cancelled()
            raise
        except ActivityError as err:
            self._raise_if_cancelled()
            raise PaymentEnded("failed", failure_code, detail=f"{summary}: {err.cause}") from err
        if isinstance(result, AuthorisationResult) and result.authorisation_id:
            self._authorisation_id = result.authorisation_id
        self._raise_if_cancelled()
        return result

    async def _local(self, activity: Any, arg: Any) -> Any:
        """A database step: retried for as long as the database is away.

        One that fails for good is a defect, not a payment outcome: it fails the workflow
        task, which Temporal retries (the payment shows as stuck in the UI) until fixed.
        """
        try:
            return await workflow.execute_local_activity_method(
                activity, arg, start_to_close_timeout=RECORD_TIMEOUT, retry_policy=RECORD_RETRY
            )
        except ActivityError as err:
            raise RuntimeError(f"{activity.__name__} failed: {err.cause}") from err

    async def _record(
        self, event: str, *, method: Any = None, confirmation: str | None = None
    ) -> None:
        change = Transition(
            self._req.payment_id, event, method=method, department_confirmation=confirmation
        )
        self._state = PaymentState(await self._local(PaymentRecords.record_transition, change))

    async def _end_unpaid(
        self,
        event: str,
        failure_code: str | None,
        detail: str | None = None,
        actor: str | None = None,
    ) -> PaymentOutcome:
        """Undo what was done, in reverse order, then record the end state."""
        self._ending = True
        for compensate in reversed(self._compensations):
            await compensate()
        self._compensations.clear()
        actor = actor or ("department" if event == "cancelled" else "workflow")
        end = Transition(
            self._req.payment_id, event, actor=actor, failure_code=failure_code, detail=detail
        )
        state = await self._local(PaymentRecords.close_unpaid, end)
        self._state = PaymentState(state)
        return PaymentOutcome(state=state, failure_code=failure_code)

    async def _void(self) -> None:
        """Void the hold or authorisation: by id if known, else whatever the call made."""
        method = self._submission.method.type if self._submission else "card"
        await workflow.execute_activity_method(
            PaymentMethods.void_authorisation,
            FundsRequest(
                self._req.payment_id, method, self._authorisation_id or "", self._req.total
            ),
            summary="void the authorisation",
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=COMPENSATION_RETRY,
        )

    async def _revoke(self, department: DepartmentRequest) -> None:
        await workflow.execute_activity_method(
            DepartmentSystems.revoke_department_confirmation,
            department,
            summary="revoke the department's confirmation",
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=COMPENSATION_RETRY,
        )
