"""One payment, from reservation to receipt, as a durable workflow.

reserve the fee -> wait for the payer's method -> authorise (3-D Secure if asked)
-> confirm with the department -> capture -> settle (ledger and receipt).

A step that fails for good ends the payment unpaid: the payer's hold or authorisation is
voided first and on its own, the payment then records its end state (releasing the
reservation), and the department's confirmation is revoked for as long as that takes.
Once the department has confirmed, the payment is past the point of no return: it captures
and settles whatever arrives, a Temporal cancel included. Card data never enters this
workflow: the payer's method arrives as a summary and an opaque vault token.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

from workflows import patches
from workflows.steps import (
    COMPENSATION_RETRY,
    ONE_ATTEMPT,
    OUTSIDE_CALL_RETRY,
    RECORD_RETRY,
    RECORD_TIMEOUT,
    Steps,
    TryAgain,
    call,
    count,
    is_error,
    stopped_by_cancel,
)

with workflow.unsafe.imports_passed_through():
    from activities.departments import DepartmentSystems
    from activities.payment_methods import PaymentMethods
    from activities.records import PaymentRecords
    from domain import search
    from domain.cards import MethodSummary, MethodType
    from domain.failures import ErrorType, FailureCode, UpdateRefusal
    from domain.models import (
        MAX_METHODS,
        AuditEntry,
        AuthorisationResult,
        AuthorisationStatus,
        AuthoriseRequest,
        ChallengeAnswer,
        DepartmentAnswer,
        DepartmentRequest,
        FundsRequest,
        OperatorAction,
        OutOfBandConfirmation,
        PaymentMethodSubmission,
        PaymentOutcome,
        PaymentRequest,
        PaymentStatus,
        ReservationResult,
        Settlement,
        Transition,
    )
    from domain.proofs import proof_name, proven
    from domain.queues import Role, partner_name, payment_method_role
    from domain.references import reference_key
    from domain.states import (
        CANCELLABLE_STATES,
        WAITING_FOR,
        Actor,
        AuditNote,
        PaymentEvent,
        PaymentState,
    )

E = PaymentEvent
# Events a payment records once per payment method it is handed (domain.models.attempt_key).
PER_METHOD_EVENTS = frozenset(
    {E.METHOD_SUBMITTED, E.CHALLENGE_REQUIRED, E.CHALLENGE_PASSED, E.METHOD_DECLINED}
)
# The API's caller waits 45 s for the reservation: it starts within 15 s of the workflow's
# start and ends within 30 s.
RESERVE_START_LIMIT = timedelta(seconds=15)
RESERVE_DEADLINE = timedelta(seconds=15)
# Workflow changes that alter the commands of a running payment are guarded by a patch id
# (docs/design.md, "Safe upgrades"): histories recorded before it replay the old way. A patch
# retires in two releases: its old branch goes and the call becomes deprecate_patch (which
# still writes the marker, flagged deprecated), then the call goes too.
# Retired (calls deleted; histories recorded while they were live are no longer replayed):
# payer-first-compensation, operator-view, steerable-confirmation.
CONFIRM_BACKOFF = timedelta(seconds=1)  # doubling between attempts, up to:
CONFIRM_BACKOFF_MAX = timedelta(minutes=1)
COMPENSATING = "compensating: compensation ran to its end"


class PaymentEnded(Exception):
    """The payment ends unpaid: cancelled, expired, or failed with a failure code."""

    def __init__(
        self, event: PaymentEvent, failure_code: str | None = None, detail: str | None = None
    ):
        super().__init__(event)
        self.event = event
        self.failure_code = failure_code
        self.detail = detail


@dataclass
class Method:
    """The payer's current method: what the payer handed over, and the partner's id for
    the authorisation it opened."""

    number: int = 1  # the payer's n-th method (the hosted page allows another)
    submission: PaymentMethodSubmission | None = None
    otp: str | None = None
    authorisation_id: str | None = None

    @property
    def type(self) -> str | None:
        return self.submission.method.type if self.submission else None


@dataclass
class Saga:
    """What may need undoing, set before the call that may do it (its answer may be lost),
    and how far the payment has gone past it."""

    funds_may_be_held: bool = False
    department_asked: bool = False
    capture_decided: bool = False  # the point of no return: capture and settle
    ending: bool = False  # compensations have begun: the payer and department are refused


@dataclass
class Confirmation:
    """The department confirmation under way: its attempts, and what an operator asked of
    it."""

    attempt: int = 0
    last_error: str | None = None
    retry_now: bool = False  # an operator asked to try the department again at once
    out_of_band: OutOfBandConfirmation | None = None  # an operator recorded it


@dataclass
class View:
    """Where the payment is, as the Temporal UI and the status query show it."""

    doing: str = "starting"  # the current details line
    step_started_at: datetime | None = None
    gives_up_at: datetime | None = None


@workflow.defn
class PaymentWorkflow:
    @workflow.init
    def __init__(self, req: PaymentRequest) -> None:
        self._req = req
        self._deadline = workflow.info().workflow_start_time + timedelta(
            seconds=req.payment_window_seconds
        )
        self._state: PaymentState | None = None
        self._reservation: ReservationResult | None = None
        self._cancel: PaymentEnded | None = None  # asked by the department or an operator
        self._failure_code: str | None = None
        self._method = Method()
        self._saga = Saga()
        self._confirmation = Confirmation()
        self._view = View()
        self._notes = 0  # audit notes recorded, to tell two of one kind apart
        self._steps = Steps(
            cancel=lambda: self._cancel,
            failed=lambda code, detail: PaymentEnded(E.FAILED, code, detail=detail),
            cancel_refused=lambda doing: self._note(
                AuditNote.OPERATOR_CANCEL_REFUSED,
                f"cancel requested in Temporal while {doing}",
                actor=Actor.OPERATOR,
            ),
        )

    @workflow.run
    async def run(self, req: PaymentRequest) -> PaymentOutcome:
        count("epay_payments_started", "Payments started", department=req.department)
        self._show("reserving the fee")
        try:
            self._reservation = await self._reserve_fee(req)
            if not self._reservation.ok:
                self._show(f"not started: {self._reservation.code}")
                self._count_end("rejected", self._reservation.code)
                await workflow.wait_condition(workflow.all_handlers_finished)
                return PaymentOutcome(state="rejected", failure_code=self._reservation.code)
            self._set_state(PaymentState.RESERVED)
            outcome = await self._pay(req)
        except PaymentEnded as end:
            outcome = await self._steps.unstoppable(self._end_unpaid(end), COMPENSATING)
        except asyncio.CancelledError:
            # Cancelled in Temporal (an operator, not the API) before the point of no
            # return: undo everything, then end as cancelled in Temporal too.
            cancelled = PaymentEnded(E.CANCELLED_BY_OPERATOR, detail="cancelled in Temporal")
            await self._steps.unstoppable(self._end_unpaid(cancelled), COMPENSATING)
            raise
        await workflow.wait_condition(workflow.all_handlers_finished)
        return outcome

    async def _reserve_fee(self, req: PaymentRequest) -> ReservationResult:
        """Reserve, or refuse, within the time the API's caller waits for the answer."""
        # Both times are Temporal's, and the start time stays the same when this first
        # task is retried; whichever branch a retry takes releases what an earlier attempt
        # may have reserved.
        queued = workflow.now() - workflow.info().workflow_start_time
        if queued <= RESERVE_START_LIMIT:
            try:
                return await workflow.execute_local_activity_method(
                    PaymentRecords.reserve_fee,
                    req,
                    summary=f"reserve {req.department} {req.reference}",
                    start_to_close_timeout=RECORD_TIMEOUT,
                    schedule_to_close_timeout=RESERVE_DEADLINE,
                    retry_policy=RECORD_RETRY,
                )
            except FailureError as err:
                if stopped_by_cancel(err):
                    raise asyncio.CancelledError from err
                # Its answer may have been lost: undo it, once the database answers.
        # The API has told (or is about to tell) its caller that nothing was reserved.
        self._reservation = ReservationResult(ok=False, code=FailureCode.RESERVATION_FAILED)
        await self._steps.local(
            PaymentRecords.release_unanswered_reservation,
            Transition(req.payment_id, E.FAILED, failure_code=FailureCode.RESERVATION_FAILED),
            summary="undo a reservation whose answer came too late",
            retry_policy=RECORD_RETRY,
        )
        return self._reservation

    async def _pay(self, req: PaymentRequest) -> PaymentOutcome:
        method, auth = await self._authorised_method(req)
        await self._record(E.AUTHORISED, authorisation_id=auth.authorisation_id)

        self._saga.department_asked = True
        answer = await self._confirm_with_department(
            timedelta(seconds=req.confirm_deadline_seconds)
        )
        if not answer.confirmed:
            raise PaymentEnded(E.FAILED, answer.failure_code or FailureCode.DEPARTMENT_REJECTED)
        # The point of no return: the department has granted the service, so the payment
        # captures and settles whatever arrives; a department's cancel is refused from here.
        self._saga.capture_decided = True
        return await self._steps.unstoppable(
            self._capture(method, auth.authorisation_id or "", answer.confirmation_reference),
            "capturing: the payment was finished",
        )

    async def _authorised_method(
        self, req: PaymentRequest
    ) -> tuple[MethodSummary, AuthorisationResult]:
        """Wait for the payer's method and authorise it (3-D Secure if asked).

        A declined method ends the payment, as the contract says, unless it came from the
        hosted page: there the payment goes back to waiting for the payer, who may try
        another method, up to MAX_METHODS a payment.
        """
        while True:
            self._show("waiting for the payer to pay", until=self._deadline)
            await self._wait_for_payer(lambda: self._method.submission is not None)
            submission = self._method.submission
            assert submission is not None
            method = submission.method
            await self._record(E.METHOD_SUBMITTED, method=method)

            self._saga.funds_may_be_held = True
            self._show(f"authorising with the {partner_name(method.type)}")
            auth = await self._steps.call(
                PaymentMethods.authorise,
                AuthoriseRequest(
                    req.payment_id,
                    method.type,
                    submission.vault_token,
                    req.total,
                    attempt=self._method.number,
                ),
                summary="authorise the payment method",
                role=payment_method_role(method.type),
                failure_code=FailureCode.AUTHORISATION_FAILED,
                retry_policy=OUTSIDE_CALL_RETRY,
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=timedelta(minutes=10),
            )
            self._method.authorisation_id = auth.authorisation_id
            if auth.status == AuthorisationStatus.REQUIRES_ACTION:
                auth = await self._three_d_secure(auth)
            if auth.status == AuthorisationStatus.AUTHORISED:
                return method, auth
            code = auth.failure_code or FailureCode.CARD_DECLINED
            if not submission.may_try_again or self._method.number >= MAX_METHODS:
                raise PaymentEnded(E.FAILED, code)
            if self._method.authorisation_id:  # a challenge failed: release what it opened
                await self._void(cancellable=True)
            self._saga.funds_may_be_held = False
            await self._record(E.METHOD_DECLINED, failure_code=code)
            self._method = Method(number=self._method.number + 1)

    async def _three_d_secure(self, auth: AuthorisationResult) -> AuthorisationResult:
        await self._record(E.CHALLENGE_REQUIRED, authorisation_id=auth.authorisation_id)
        self._show("waiting for the payer's 3-D Secure code", until=self._deadline)
        await self._wait_for_payer(lambda: self._method.otp is not None)
        self._show("completing the 3-D Secure challenge with the card acquirer")
        result = await self._steps.call(
            PaymentMethods.complete_challenge,
            ChallengeAnswer(
                self._req.payment_id,
                auth.authorisation_id or "",
                self._method.otp or "",
                attempt=self._method.number,
            ),
            summary="complete the 3-D Secure challenge",
            role=Role.ACQUIRER,  # 3-D Secure is a card's
            failure_code=FailureCode.AUTHORISATION_FAILED,
            retry_policy=OUTSIDE_CALL_RETRY,
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=timedelta(minutes=10),
        )
        if result.status == AuthorisationStatus.AUTHORISED:
            await self._record(E.CHALLENGE_PASSED)
        return result

    async def _confirm_with_department(self, patience: timedelta) -> DepartmentAnswer:
        """Ask the department until it answers or ``patience`` runs out, backing off between
        attempts. An operator can wake the wait (retry now), cancel the payment, or record
        a confirmation the department gave out of band."""
        req, tries = self._req, self._confirmation
        gives_up_at = workflow.now() + patience
        while True:
            tries.attempt += 1
            self._show(self._confirming(), until=gives_up_at)
            answer: DepartmentAnswer | None = None
            try:
                answer = await self._steps.call(
                    DepartmentSystems.confirm_with_department,
                    self._department_request(),
                    summary=f"confirm with the department (attempt {tries.attempt})",
                    role=Role.DEPARTMENTS,
                    failure_code=FailureCode.DEPARTMENT_UNAVAILABLE,
                    abandon_on_cancel=True,
                    retry_policy=ONE_ATTEMPT,
                    start_to_close_timeout=timedelta(seconds=15),
                )
            except TryAgain as trouble:
                tries.last_error = f"{trouble} at {workflow.now():%H:%M:%S}"
            except PaymentEnded as end:  # a final error; an operator's cancel stands
                if end is self._cancel or not self._recorded_confirmation_wins():
                    raise
            if answer is not None:  # its confirmation, or its system's explicit refusal
                return answer
            if tries.out_of_band is not None and workflow.patched(patches.CONFIRMATION_WINS):
                return DepartmentAnswer(True, tries.out_of_band.confirmation_reference)
            left = gives_up_at - workflow.now()
            if left <= timedelta(0):
                raise PaymentEnded(
                    E.FAILED,
                    FailureCode.DEPARTMENT_UNAVAILABLE,
                    detail=f"no answer from {req.department} after {tries.attempt} attempts: "
                    f"{tries.last_error}",
                )
            pause = min(
                CONFIRM_BACKOFF * 2 ** min(tries.attempt - 1, 10), CONFIRM_BACKOFF_MAX, left
            )
            self._show(
                f"{self._confirming()}; next attempt at {workflow.now() + pause:%H:%M:%S}",
                until=gives_up_at,
            )
            with contextlib.suppress(TimeoutError):  # the pause is over: try again
                await workflow.wait_condition(
                    lambda: tries.retry_now or self._cancel is not None or bool(tries.out_of_band),
                    timeout=pause,
                )
            self._steps.raise_if_cancelled()
            if tries.out_of_band is not None:
                return DepartmentAnswer(True, tries.out_of_band.confirmation_reference)
            tries.retry_now = False

    def _recorded_confirmation_wins(self) -> bool:
        """An operator recorded the department's confirmation while an attempt was in
        flight: it stands, whether that attempt had no answer by the deadline or ended in an
        error. The department's own explicit refusal is an answer, not trouble, and stands:
        capturing a service its system refused would take money that must go back."""
        return self._confirmation.out_of_band is not None and workflow.patched(
            patches.CONFIRMATION_WINS
        )

    def _confirming(self) -> str:
        line = f"confirming with {self._req.department}: attempt {self._confirmation.attempt}"
        return line + (
            f", last error {self._confirmation.last_error}" if self._confirmation.last_error else ""
        )

    async def _capture(
        self, method: MethodSummary, authorisation_id: str, confirmation: str | None
    ) -> PaymentOutcome:
        """Take the funds and settle. Only the acquirer's or issuer's explicit refusal ends
        the capture; an unclear answer (a timeout, a request still in progress) is asked
        again with the same idempotency key, for as long as it takes."""
        req = self._req
        await self._record(E.DEPARTMENT_CONFIRMED, confirmation=confirmation)
        self._show(
            f"capturing with the {partner_name(method.type)}: retried until it answers (past the "
            "point of no return)"
        )
        await self._steps.call(
            PaymentMethods.capture,
            FundsRequest(req.payment_id, method.type, authorisation_id, req.total),
            summary="capture the funds",
            role=payment_method_role(method.type),
            failure_code=FailureCode.CAPTURE_FAILED,
            retry_policy=OUTSIDE_CALL_RETRY,
            start_to_close_timeout=timedelta(seconds=30),
        )
        receipt = await self._steps.local(
            PaymentRecords.settle,
            Settlement(req.payment_id, req.department, method.type, req.lines),
            summary="post the ledger journal and issue the receipt",
            retry_policy=RECORD_RETRY,
        )
        self._set_state(PaymentState.SUCCEEDED)
        self._show(f"succeeded: receipt {receipt.number}")
        return PaymentOutcome(state=PaymentState.SUCCEEDED, receipt=receipt)

    # --- the payer and the department talk to the workflow through these ----------------

    @workflow.update
    async def reservation(self) -> ReservationResult:
        """Answers once the fee is reserved (or could not be): the API's 201 waits on it."""
        await workflow.wait_condition(lambda: self._reservation is not None)
        assert self._reservation is not None
        return self._reservation

    @workflow.update
    def submit_payment_method(self, submission: PaymentMethodSubmission) -> None:
        self._method.submission = submission

    @submit_payment_method.validator
    def _validate_submission(self, submission: PaymentMethodSubmission) -> None:
        self._require_proof(
            proof_name("submit_payment_method", self._method.number), submission.proof
        )
        if (
            self._state != PaymentState.RESERVED
            or self._method.submission
            or self._cancel
            or self._saga.ending
        ):
            raise ApplicationError(
                "this payment is not waiting for a payment method",
                type=UpdateRefusal.NOT_AWAITING_METHOD,
            )

    @workflow.update
    def submit_challenge_answer(self, otp: str, proof: str = "") -> None:
        self._method.otp = otp

    @submit_challenge_answer.validator
    def _validate_challenge_answer(self, otp: str, proof: str = "") -> None:
        self._require_proof(proof_name("submit_challenge_answer", self._method.number), proof)
        if (
            self._state != PaymentState.REQUIRES_ACTION
            or self._method.otp is not None
            or self._saga.ending
        ):
            raise ApplicationError(
                "this payment is not waiting for a 3-D Secure answer",
                type=UpdateRefusal.NOT_AWAITING_CHALLENGE,
            )

    @workflow.update
    def cancel(self, reason: str, proof: str = "") -> None:
        """The department's cancel, through the API (operators use ``operator_cancel``)."""
        self._cancel = PaymentEnded(
            E.CANCELLED_BY_DEPARTMENT, detail=reason or "cancelled by the department"
        )

    @cancel.validator
    def _validate_cancel(self, reason: str, proof: str = "") -> None:
        self._require_proof("cancel", proof)
        self._require_cancellable()

    def _require_cancellable(self) -> None:
        if (
            self._state not in CANCELLABLE_STATES
            or self._cancel
            or self._saga.capture_decided
            or self._saga.ending
        ):
            raise ApplicationError(
                "this payment can no longer be cancelled", type=UpdateRefusal.NOT_CANCELLABLE
            )

    # --- operators act through these: each needs who and why, and is audited ---------------

    @workflow.update
    async def operator_retry_now(self, action: OperatorAction) -> None:
        """Wake a department confirmation that waits between attempts: try again now."""
        self._confirmation.retry_now = True
        await self._note(AuditNote.OPERATOR_RETRY_REQUESTED, _said(action), actor=Actor.OPERATOR)

    @operator_retry_now.validator
    def _validate_retry_now(self, action: OperatorAction) -> None:
        _require_operator(action)
        self._require_steerable_confirmation("retried")

    @workflow.update
    async def operator_cancel(self, action: OperatorAction) -> None:
        """Cancel before the point of no return: compensate and end ``cancelled``."""
        self._cancel = PaymentEnded(E.CANCELLED_BY_OPERATOR, detail=_said(action))
        await self._note(AuditNote.OPERATOR_CANCEL_REQUESTED, _said(action), actor=Actor.OPERATOR)

    @operator_cancel.validator
    def _validate_operator_cancel(self, action: OperatorAction) -> None:
        _require_operator(action)
        self._require_cancellable()

    @workflow.update
    async def operator_record_confirmation(self, confirmation: OutOfBandConfirmation) -> None:
        """The department confirmed outside its system: capture and succeed with it."""
        self._confirmation.out_of_band = confirmation
        detail = (
            f"{_said(confirmation)} (department reference {confirmation.confirmation_reference})"
        )
        await self._note(AuditNote.CONFIRMATION_RECORDED, detail, actor=Actor.OPERATOR)

    @operator_record_confirmation.validator
    def _validate_record_confirmation(self, confirmation: OutOfBandConfirmation) -> None:
        _require_operator(confirmation)
        reference = confirmation.confirmation_reference.strip()
        if not reference or len(reference) > 64:
            raise ApplicationError(
                "give the department's confirmation reference (1-64 characters)",
                type=UpdateRefusal.INVALID_CONFIRMATION_REFERENCE,
            )
        self._require_steerable_confirmation("confirmed by an operator")

    def _require_proof(self, update: str, proof: str) -> None:
        """The payer's and the department's updates come from the API alone."""
        expected = self._req.update_commitments.get(update)
        if expected is not None and not proven(proof, expected):
            raise ApplicationError(
                f"{update} is sent by ePay's API only (operators: use the operator_* updates)",
                type=UpdateRefusal.UPDATE_NOT_PROVEN,
            )

    def _require_steerable_confirmation(self, what: str) -> None:
        if (
            self._state != PaymentState.CONFIRMING
            or self._confirmation.out_of_band is not None
            or self._cancel is not None
            or self._saga.capture_decided
            or self._saga.ending
        ):
            raise ApplicationError(
                f"this payment is {self._state or 'not reserved'}, not waiting for its "
                f"department: it cannot be {what}",
                type=UpdateRefusal.NOT_AWAITING_DEPARTMENT,
            )

    @workflow.query
    def state(self) -> str | None:
        return self._state.value if self._state else None

    @workflow.query
    def status(self) -> PaymentStatus:
        """Everything an operator asks of a payment: where it is, why, since and until when."""
        req = self._req
        return PaymentStatus(
            payment_id=req.payment_id,
            department=req.department,
            service_code=req.service_code,
            reference=req.reference,
            amount=req.total,
            state=self._state.value if self._state else None,
            waiting_for=WAITING_FOR[self._state] if self._state else None,
            doing=self._view.doing,
            step_started_at=_iso(self._view.step_started_at),
            gives_up_at=_iso(self._view.gives_up_at),
            method=self._method.submission.method if self._method.submission else None,
            authorisation_id=self._method.authorisation_id,
            failure_code=self._failure_code,
            cancel_requested=self._cancel is not None,
            compensating=self._saga.ending,
            capture_decided=self._saga.capture_decided,
            attempt=self._confirmation.attempt,
            last_error=self._confirmation.last_error,
        )

    # --- ending unpaid ---------------------------------------------------------------------

    async def _end_unpaid(self, end: PaymentEnded) -> PaymentOutcome:
        """Undo what was done and record the end state.

        The payer's money is released first and on its own: a department that cannot take
        the revocation must not keep a resident's balance or card limit frozen. The payment
        ends as soon as that is done; the revocation goes on being retried (noted in the
        audit trail) and the workflow closes once the department has taken it.
        """
        self._saga.ending = True
        self._show(f"compensating before ending {end.event}: releasing the payer's money first")
        revoke = asyncio.ensure_future(self._revoke()) if self._saga.department_asked else None
        if self._saga.funds_may_be_held:
            await self._void()
        if revoke is not None and workflow.patched(patches.REVOKE_OWED_AT_CLOSE):
            # What is owed is recorded with the end state, in its transaction; the note that
            # the department took the revocation clears it.
            owed = not revoke.done()
            outcome = await self._close_unpaid(end, revoke_owed=owed)
            if owed:
                await self._finish_revocation(revoke)
            return outcome
        outcome = await self._close_unpaid(end)
        if revoke is not None and not revoke.done():
            await self._finish_revocation(revoke)
        return outcome

    async def _finish_revocation(self, revoke: asyncio.Future[None]) -> None:
        """The payment has ended; wait for the department to take the revocation, saying
        so in the audit trail while it has not, and note when it has."""
        if not revoke.done():
            self._show(
                f"ended {self._state}; revoking the department's confirmation (it has not "
                "taken it yet: retried until it does)"
            )
            await self._note(
                AuditNote.DEPARTMENT_REVOKE_PENDING,
                "the department has not taken the revocation yet: still retried",
            )
        await revoke
        await self._note(AuditNote.DEPARTMENT_REVOKED, "the department took the revocation")
        self._show(f"ended {self._state}; the department took the revocation")

    async def _close_unpaid(
        self, end: PaymentEnded, *, revoke_owed: bool = False
    ) -> PaymentOutcome:
        change = Transition(
            self._req.payment_id,
            end.event,
            failure_code=end.failure_code,
            detail=end.detail,
            revoke_owed=revoke_owed,
        )
        state = PaymentState(
            await self._steps.local(
                PaymentRecords.close_unpaid,
                change,
                summary=f"end {end.event}: release the reservation, forget the card data",
                retry_policy=RECORD_RETRY,
            )
        )
        self._failure_code = end.failure_code
        self._set_state(state)
        self._show(f"ended {state}" + (f": {end.failure_code}" if end.failure_code else ""))
        return PaymentOutcome(state=state, failure_code=end.failure_code)

    async def _void(self, *, cancellable: bool = False) -> None:
        """Void the hold or authorisation: by id if known, else whatever the call made.

        Retried until done; only the partner's final refusal (it captured or does not know
        the authorisation) ends it, recorded for an operator, since ePay then holds nothing
        more. A ``cancellable`` void (a failed challenge's, while the payment goes on) that
        a Temporal cancel stops gives way to the cancel's own compensation.
        """
        method = self._method.type or MethodType.CARD
        try:
            await call(
                PaymentMethods.void_authorisation,
                FundsRequest(
                    self._req.payment_id,
                    method,
                    self._method.authorisation_id or "",
                    self._req.total,
                    attempt=self._method.number,
                ),
                summary="void the authorisation",
                role=payment_method_role(method),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=COMPENSATION_RETRY,
            )
        except ActivityError as err:
            if (
                cancellable
                and stopped_by_cancel(err)
                and workflow.patched(patches.CANCEL_DURING_CHALLENGE_VOID)
            ):
                raise asyncio.CancelledError from err
            if not is_error(err, ErrorType.VOID_REFUSED):
                raise
            await self._note(
                AuditNote.VOID_REFUSED,
                f"the {partner_name(method)} refused for good to void the authorisation of "
                f"method {self._method.number}: {err.cause}; ePay holds nothing more, an "
                "operator checks with the partner",
            )

    async def _revoke(self) -> None:
        """Revoking is harmless if the department never confirmed, and covers a
        confirmation that lands just as the payment ends."""
        await call(
            DepartmentSystems.revoke_department_confirmation,
            self._department_request(),
            summary="revoke the department's confirmation",
            role=Role.DEPARTMENTS,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=COMPENSATION_RETRY,
        )

    # --- helpers --------------------------------------------------------------------------

    def _show(self, doing: str, *, until: datetime | None = None) -> None:
        """Say in one line, on the payment's page in the Temporal UI, where it is and until
        when it waits (the workflow's current details; the status query has the rest)."""
        self._view.doing = doing
        self._view.gives_up_at = until
        when = f", until {until:%Y-%m-%d %H:%M:%S} UTC" if until else ""
        workflow.set_current_details(f"{self._state or 'new'}: {doing}{when}")

    def _set_state(self, state: PaymentState) -> None:
        """The payment's new state, published as search attributes for operators to filter,
        logged and measured (the time spent in the step it leaves, and its end)."""
        left, since = self._state, self._view.step_started_at
        self._state = state
        self._view.step_started_at = workflow.now()
        workflow.logger.info("%s -> %s", left or "new", state)
        if left is not None and since is not None:
            workflow.metric_meter().create_histogram_timedelta(
                "epay_payment_step_seconds", "Time payments spent in each step", "s"
            ).record(
                self._view.step_started_at - since,
                {"step": left.value, "department": self._req.department},
            )
        if state.is_terminal:
            self._count_end(state.value, self._failure_code)
        req = self._req
        updates: list[SearchAttributeUpdate[Any]] = [
            search.PAYMENT_STATE.value_set(state.value),
            search.WAITING_FOR.value_set(WAITING_FOR[state]),
            search.STEP_STARTED_AT.value_set(self._view.step_started_at),
        ]
        if state == PaymentState.RESERVED:  # the first state: what the payment is for
            updates += [
                search.DEPARTMENT.value_set(req.department),
                search.SERVICE_CODE.value_set(req.service_code),
                search.PAYMENT_REFERENCE.value_set(reference_key(req.reference)),
                search.AMOUNT_FILS.value_set(req.total),
            ]
        if self._method.type is not None:
            updates.append(search.PAYMENT_METHOD.value_set(self._method.type))
        if self._failure_code:
            updates.append(search.FAILURE_CODE.value_set(self._failure_code))
        workflow.upsert_search_attributes(updates)

    def _count_end(self, state: str, failure_code: str | None) -> None:
        count(
            "epay_payments_ended",
            "Payments ended, by end state, failure code and method",
            department=self._req.department,
            state=state,
            failure_code=failure_code or "none",
            method=self._method.type or "none",
        )

    async def _wait_for_payer(self, arrived: Callable[[], bool]) -> None:
        """Wait for the payer until the payment window closes; a cancel ends the wait."""
        remaining = (self._deadline - workflow.now()).total_seconds()
        try:
            await workflow.wait_condition(
                lambda: arrived() or self._cancel is not None, timeout=max(remaining, 0.001)
            )
        except TimeoutError:
            raise PaymentEnded(E.EXPIRED, FailureCode.PAYMENT_WINDOW_EXPIRED) from None
        self._steps.raise_if_cancelled()

    async def _record(
        self,
        event: PaymentEvent,
        *,
        method: MethodSummary | None = None,
        confirmation: str | None = None,
        authorisation_id: str | None = None,
        failure_code: str | None = None,
    ) -> None:
        change = Transition(
            self._req.payment_id,
            event,
            method=method,
            failure_code=failure_code,
            department_confirmation=confirmation,
            authorisation_id=authorisation_id,
            attempt=self._method.number if event in PER_METHOD_EVENTS else 1,
        )
        state = await self._steps.local(
            PaymentRecords.record_transition,
            change,
            summary=f"record {event}",
            retry_policy=RECORD_RETRY,
        )
        self._set_state(PaymentState(state))

    async def _note(self, note: AuditNote, detail: str, actor: Actor = Actor.WORKFLOW) -> None:
        self._notes += 1
        entry = AuditEntry(self._req.payment_id, note, actor, detail, key=str(self._notes))
        await self._steps.local(
            PaymentRecords.record_note, entry, summary=f"note {note}", retry_policy=RECORD_RETRY
        )

    def _department_request(self) -> DepartmentRequest:
        req = self._req
        return DepartmentRequest(
            req.payment_id, req.department, req.reference, req.service_code, req.total
        )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _require_operator(action: OperatorAction | OutOfBandConfirmation) -> None:
    if not action.operator.strip() or not action.reason.strip():
        raise ApplicationError(
            "an operator action needs the operator's identity and a reason",
            type=UpdateRefusal.OPERATOR_IDENTITY_REQUIRED,
        )


def _said(action: OperatorAction | OutOfBandConfirmation) -> str:
    return f"{action.operator.strip()}: {action.reason.strip()}"
