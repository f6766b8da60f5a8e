"""The payment saga, branch by branch, in seconds: the real workflow on a time-skipping
Temporal dev server (the 90-minute window and hours of retries pass in seconds), with fake
activities registered under the real names (no database, no sandbox).

The end-to-end suite shows the same against the real partners; these pin the workflow's
own decisions: what a Temporal cancel does at each point, the order of compensations, what
counts as a final answer, and how long a database outage may last."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from domain.cards import MethodSummary, MethodType
from domain.models import (
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
    Receipt,
    ReservationResult,
    Settlement,
    Transition,
)
from domain.money import fee_lines
from domain.proofs import commitments, update_proof
from domain.queues import Role, roles_in, task_queue
from domain.search import SEARCH_ATTRIBUTES
from domain.states import PaymentState, transition
from tests.support import BIN
from workers.main import SERVED
from workflows import payment as payment_workflow
from workflows import steps
from workflows.payment import PaymentWorkflow

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.workflow]


class Partners:
    """Fake activities: the calls made, in order, and knobs for each behaviour."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.state: PaymentState | None = None
        self.gates: dict[str, asyncio.Event] = {}  # activity -> answer only once set
        self.reached: dict[str, asyncio.Event] = {}  # activity -> set when first called
        self.failures: dict[str, int] = {}  # activity -> transient failures before success
        self.auth_status = AuthorisationStatus.AUTHORISED
        self.challenge_status = AuthorisationStatus.AUTHORISED
        self.void_refused = False  # the partner refuses every void for good
        self.department_confirms = True
        self.department_up = True
        self.department_final_error = False
        self.capture_refused = False
        self.database_up = True
        self.applied: dict[str, str] = {}  # event -> state: each recorded once, as the store does

    def apply(self, event: str) -> str:
        if event not in self.applied:
            self.state = transition(self.state, event)
            self.applied[event] = self.state.value
        return self.applied[event]

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def args(self, name: str) -> list[Any]:
        return [arg for n, arg in self.calls if n == name]

    def reached_event(self, name: str) -> asyncio.Event:
        return self.reached.setdefault(name, asyncio.Event())

    async def _enter(self, name: str, arg: Any) -> None:
        self.calls.append((name, arg))
        self.reached_event(name).set()
        if name in self.gates:
            await self.gates[name].wait()
        if self.failures.get(name, 0) > 0:
            self.failures[name] -= 1
            raise ApplicationError(f"{name}: transient trouble")

    def _database(self) -> None:
        if not self.database_up:
            raise ApplicationError("database unreachable")

    def activities(self) -> list[Callable[..., Any]]:
        @activity.defn(name="reserve_fee")
        async def reserve_fee(req: PaymentRequest) -> ReservationResult:
            await self._enter("reserve_fee", req)
            self.state = PaymentState.RESERVED
            return ReservationResult(ok=True)

        @activity.defn(name="record_transition")
        async def record_transition(change: Transition) -> str:
            self._database()
            await self._enter("record_transition", change)
            return self.apply(change.event)

        @activity.defn(name="record_note")
        async def record_note(entry: AuditEntry) -> None:
            await self._enter("record_note", entry)

        @activity.defn(name="close_unpaid")
        async def close_unpaid(change: Transition) -> str:
            await self._enter("close_unpaid", change)
            if self.state is None:
                return PaymentState.FAILED.value
            return self.apply(change.event)

        @activity.defn(name="release_unanswered_reservation")
        async def release_unanswered_reservation(change: Transition) -> str:
            await self._enter("release_unanswered_reservation", change)
            if self.state not in (None, PaymentState.RESERVED):
                return str(self.state)
            return PaymentState.FAILED.value if self.state is None else self.apply(change.event)

        @activity.defn(name="settle")
        async def settle(settlement: Settlement) -> Receipt:
            await self._enter("settle", settlement)
            self.apply("captured")
            return Receipt("DM-00000001", "2026-11-28T00:00:00+00:00")

        @activity.defn(name="authorise")
        async def authorise(req: AuthoriseRequest) -> AuthorisationResult:
            await self._enter("authorise", req)
            code = None if self.auth_status != AuthorisationStatus.DECLINED else "card_declined"
            return AuthorisationResult(self.auth_status, "auth_1", code)

        @activity.defn(name="complete_challenge")
        async def complete_challenge(answer: ChallengeAnswer) -> AuthorisationResult:
            await self._enter("complete_challenge", answer)
            code = None if self.challenge_status != AuthorisationStatus.DECLINED else "3ds_failed"
            return AuthorisationResult(self.challenge_status, answer.authorisation_id, code)

        @activity.defn(name="capture")
        async def capture(req: FundsRequest) -> None:
            await self._enter("capture", req)
            if self.capture_refused:
                raise ApplicationError("not_capturable", type="capture_refused")

        @activity.defn(name="void_authorisation")
        async def void_authorisation(req: FundsRequest) -> None:
            await self._enter("void_authorisation", req)
            if self.void_refused:
                raise ApplicationError(
                    "void refused: not_voidable", type="void_refused", non_retryable=True
                )

        @activity.defn(name="confirm_with_department")
        async def confirm_with_department(req: DepartmentRequest) -> DepartmentAnswer:
            await self._enter("confirm_with_department", req)
            if not self.department_up:
                raise ApplicationError("department answered 503")
            if self.department_final_error:
                raise ApplicationError(
                    "department answered 400", type="department_error", non_retryable=True
                )
            if self.department_confirms:
                return DepartmentAnswer(True, "DM-C-1")
            return DepartmentAnswer(False, failure_code="department_rejected")

        @activity.defn(name="revoke_department_confirmation")
        async def revoke_department_confirmation(req: DepartmentRequest) -> None:
            await self._enter("revoke_department_confirmation", req)

        return [
            reserve_fee,
            record_transition,
            record_note,
            close_unpaid,
            release_unanswered_reservation,
            settle,
            authorise,
            complete_challenge,
            capture,
            void_authorisation,
            confirm_with_department,
            revoke_department_confirmation,
        ]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping_v2(
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.WorkflowTimeSkippingEnabled=true",
            "--log-level",
            "error",
        ],
    )
    try:
        yield environment
    finally:
        await environment.shutdown()


@pytest.fixture
def partners() -> Partners:
    return Partners()


def request(**overrides: Any) -> PaymentRequest:
    payment_id = "pay_" + uuid.uuid4().hex
    fields: dict[str, Any] = {
        "payment_id": payment_id,
        "department": "DM",
        "service_code": "HEALTH_CERT",
        "reference": "INV-1",
        "lines": fee_lines(22000, exempt_from_added_fees=False),
        "payment_window_seconds": 5400,
        "confirm_deadline_seconds": 60,
    }
    return PaymentRequest(**(fields | overrides))


def routed_workers(
    client: Client, workflow_queue: str, fakes: list[Callable[..., Any]], **worker_options: Any
) -> list[Worker]:
    """The fakes served as ``epay worker`` serves the real activities, each on its role's
    queue (a call sent to the wrong queue finds no fake, and its test times out)."""

    def served(role: Role) -> list[Callable[..., Any]]:
        names = {definition.__name__ for definition in SERVED[role]}
        return [fake for fake in fakes if fake.__name__ in names]

    return [
        Worker(
            client,
            task_queue=task_queue(workflow_queue, role),
            workflows=[PaymentWorkflow],
            activities=served(role),
            no_remote_activities=True,
            **worker_options,
        )
        if role is Role.WORKFLOWS
        else Worker(client, task_queue=task_queue(workflow_queue, role), activities=served(role))
        for role in roles_in(Role.ALL)
    ]


class Run:
    """One payment workflow on its own task queue, served by workers with the fakes."""

    def __init__(
        self,
        client: Client,
        partners: Partners,
        req: PaymentRequest,
        activities: list[Callable[..., Any]] | None = None,
        **worker_options: Any,
    ) -> None:
        self.client = client
        self.partners = partners
        self.req = req
        self.task_queue = f"saga-{uuid.uuid4().hex[:8]}"
        self.workers = routed_workers(
            client, self.task_queue, activities or partners.activities(), **worker_options
        )
        self.handle: WorkflowHandle[Any, Any] | None = None

    async def __aenter__(self) -> Run:
        for worker in self.workers:
            await worker.__aenter__()
        self.handle = await self.client.start_workflow(
            PaymentWorkflow.run,
            self.req,
            id=f"payment-{self.req.payment_id}",
            task_queue=self.task_queue,
        )
        await self.handle.execute_update(PaymentWorkflow.reservation)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for gate in self.partners.gates.values():  # a failed test must not hang the worker
            gate.set()
        for worker in self.workers:
            await worker.__aexit__(None, None, None)

    @property
    def wf(self) -> WorkflowHandle[Any, Any]:
        assert self.handle is not None
        return self.handle

    async def submit(self, method: str = "e_dirham", *, may_try_again: bool = False) -> None:
        summary = MethodSummary(
            MethodType(method), "e_dirham" if method == "e_dirham" else "visa", "0017"
        )
        await self.wf.execute_update(
            PaymentWorkflow.submit_payment_method,
            PaymentMethodSubmission(summary, "vt_1", may_try_again=may_try_again),
        )

    async def reached(self, name: str) -> None:
        await asyncio.wait_for(self.partners.reached_event(name).wait(), timeout=30)

    async def outcome(self) -> PaymentOutcome:
        result = await asyncio.wait_for(self.wf.result(), timeout=60)
        assert isinstance(result, PaymentOutcome)
        return result


def notes(partners: Partners) -> list[str]:
    return [entry.note for entry in partners.args("record_note")]


def events(partners: Partners, name: str = "close_unpaid") -> list[str]:
    return [change.event for change in partners.args(name)]


async def test_happy_path_captures_and_settles(
    env: WorkflowEnvironment, partners: Partners
) -> None:
    async with Run(env.client, partners, request()) as run:
        await run.submit()
        outcome = await run.outcome()
    assert outcome.state == "succeeded"
    assert outcome.receipt is not None
    assert "void_authorisation" not in partners.names()
    [authorised] = [c for c in partners.args("record_transition") if c.event == "authorised"]
    assert authorised.authorisation_id == "auth_1"  # the read model can find the hold


# --- defect 1: a Temporal cancel after the point of no return ---------------------------


@pytest.mark.parametrize("blocked", ["capture", "settle"])
async def test_a_temporal_cancel_after_the_department_confirmed_finishes_the_payment(
    env: WorkflowEnvironment, partners: Partners, blocked: str
) -> None:
    partners.gates[blocked] = asyncio.Event()
    async with Run(env.client, partners, request()) as run:
        await run.submit()
        await run.reached(blocked)
        await run.wf.cancel()
        await asyncio.sleep(0.5)
        partners.gates[blocked].set()
        outcome = await run.outcome()
    assert outcome.state == "succeeded"
    assert outcome.receipt is not None
    assert partners.state == PaymentState.SUCCEEDED
    assert "void_authorisation" not in partners.names()
    assert "revoke_department_confirmation" not in partners.names()
    [refused] = partners.args("record_note")
    assert refused.note == "operator_cancel_refused"
    assert refused.actor == "operator"


async def test_a_temporal_cancel_before_the_point_of_no_return_compensates(
    env: WorkflowEnvironment, partners: Partners
) -> None:
    partners.gates["confirm_with_department"] = asyncio.Event()
    async with Run(env.client, partners, request()) as run:
        await run.submit()
        await run.reached("confirm_with_department")
        await run.wf.cancel()
        with pytest.raises(WorkflowFailureError) as failure:
            await asyncio.wait_for(run.wf.result(), timeout=60)
        partners.gates["confirm_with_department"].set()
    assert isinstance(failure.value.cause, CancelledError)
    assert events(partners) == ["cancelled_by_operator"]
    assert {"void_authorisation", "revoke_department_confirmation"} <= set(partners.names())
    assert "capture" not in partners.names()


@pytest.mark.parametrize("blocked", ["authorise", "record_transition"])
async def test_a_temporal_cancel_during_a_call_ends_the_payment_cancelled(
    env: WorkflowEnvironment, partners: Partners, blocked: str
) -> None:
    """The SDK reports the cancelled activity as the activity's failure: it is the
    operator's cancel, not a decline or a database outage."""
    partners.gates[blocked] = asyncio.Event()
    async with Run(env.client, partners, request()) as run:
        await run.submit()
        await run.reached(blocked)
        await run.wf.cancel()
        with pytest.raises(WorkflowFailureError) as failure:
            await asyncio.wait_for(run.wf.result(), timeout=60)
        partners.gates[blocked].set()
    assert isinstance(failure.value.cause, CancelledError)
    [closed] = partners.args("close_unpaid")
    assert closed.event == "cancelled_by_operator"
    assert closed.failure_code is None
    if blocked == "authorise":  # a hold may have been placed: voided
        assert "void_authorisation" in partners.names()


# --- defect 2: a cancel during compensation --------------------------------------------


async def test_a_temporal_cancel_during_compensation_lets_it_finish(
    env: WorkflowEnvironment, partners: Partners
) -> None:
    partners.department_confirms = False  # the department refuses: compensate
    partners.gates["void_authorisation"] = asyncio.Event()
    async with Run(env.client, partners, request()) as run:
        await run.submit()
        await run.reached("void_authorisation")
        await run.wf.cancel()
        await asyncio.sleep(0.5)
        partners.gates["void_authorisation"].set()
        outcome = await run.outcome()
    assert outcome.state == "failed"
    assert outcome.failure_code == "department_rejected"
    assert events(partners) == ["failed"]
    assert partners.state == PaymentState.FAILED
    assert "operator_cancel_refused" in notes(partners)


# --- defect 3: one partner's outage must not freeze the payer's money -------------------


async def test_the_payer_is_released_and_the_payment_ends_while_the_department_is_down(
    env: WorkflowEnvironment, partners: Partners
) -> None:
    partners.department_confirms = False
    partners.gates["revoke_department_confirmation"] = asyncio.Event()  # the department is down
    async with Run(env.client, partners, request()) as run:
        await run.submit()
        await run.reached("revoke_department_confirmation")
        for _ in range(100):  # the void and the end state do not wait for the department
            if events(partners):
                break
            await asyncio.sleep(0.1)
        assert "void_authorisation" in partners.names()
        assert events(partners) == ["failed"]
        assert partners.state == PaymentState.FAILED
        # What is owed to the department is written with the end state, in one transaction:
        # no later step has to land for the sweeper to know that a revocation is pending.
        [closed] = partners.args("close_unpaid")
        assert closed.revoke_owed
        for _ in range(100):
            if notes(partners):
                break
            await asyncio.sleep(0.1)
        assert notes(partners) == ["department_revoke_pending"]
        assert (await run.wf.describe()).status == WorkflowExecutionStatus.RUNNING
        assert await run.wf.query(PaymentWorkflow.state) == "failed"
        partners.gates["revoke_department_confirmation"].set()
        outcome = await run.outcome()  # the workflow closes once the department took it
    assert outcome.state == "failed"
    assert notes(partners) == ["department_revoke_pending", "department_revoked"]


async def test_a_declined_payment_only_voids(env: WorkflowEnvironment, partners: Partners) -> None:
    partners.auth_status = AuthorisationStatus.DECLINED
    async with Run(env.client, partners, request()) as run:
        await run.submit()
        outcome = await run.outcome()
    assert outcome.state == "failed"
    assert outcome.failure_code == "card_declined"
    assert "revoke_department_confirmation" not in partners.names()
    assert partners.names()[-2:] == ["void_authorisation", "close_unpaid"]


async def test_an_unpaid_payment_expires_after_its_window(
    env: WorkflowEnvironment, partners: Partners
) -> None:
    async with Run(env.client, partners, request()) as run:
        outcome = await run.outcome()
    assert outcome.state == "expired"
    assert outcome.failure_code == "payment_window_expired"
    assert events(partners) == ["expired"]
    assert "void_authorisation" not in partners.names()


async def test_an_unanswered_challenge_expires_and_voids(
    env: WorkflowEnvironment, partners: Partners
) -> None:
    partners.auth_status = AuthorisationStatus.REQUIRES_ACTION
    async with Run(env.client, partners, request()) as run:
        await run.submit("card")
        outcome = await run.outcome()
    assert outcome.state == "expired"
    assert partners.names()[-2:] == ["void_authorisation", "close_unpaid"]
    [void] = partners.args("void_authorisation")
    assert void.authorisation_id == "auth_1"


# --- defect 4: a late first task releases what may have been reserved -------------------


async def test_a_late_first_task_does_not_reserve_and_releases(
    env: WorkflowEnvironment, partners: Partners
) -> None:
    req = request(requested_at=1.0)
    worker = Worker(
        env.client,
        task_queue=f"saga-{uuid.uuid4().hex[:8]}",
        workflows=[PaymentWorkflow],
        activities=partners.activities(),
    )
    handle = await env.client.start_workflow(
        PaymentWorkflow.run,
        req,
        id=f"payment-{req.payment_id}",
        task_queue=worker.task_queue,
        start_delay=timedelta(seconds=16),  # its first task starts past the caller's wait
    )
    async with worker:
        outcome = await asyncio.wait_for(handle.result(), timeout=60)
    assert outcome.state == "rejected"
    assert outcome.failure_code == "reservation_failed"
    assert "reserve_fee" not in partners.names()
    # whatever an earlier attempt reserved is released
    assert events(partners, "release_unanswered_reservation") == ["failed"]


# --- defect 5: only an explicit refusal ends a capture ---------------------------------


async def test_unclear_capture_answers_are_asked_again(
    env: WorkflowEnvironment, partners: Partners
) -> None:
    partners.failures["capture"] = 3  # timeouts, 409 in progress, 404 ...: retryable
    async with Run(env.client, partners, request()) as run:
        await run.submit("card")
        outcome = await run.outcome()
    assert outcome.state == "succeeded"
    assert partners.names().count("capture") == 4
    assert "void_authorisation" not in partners.names()


async def test_an_explicit_capture_refusal_fails_and_compensates(
    env: WorkflowEnvironment, partners: Partners
) -> None:
    partners.capture_refused = True
    async with Run(env.client, partners, request()) as run:
        await run.submit("card")
        outcome = await run.outcome()
    assert outcome.state == "failed"
    assert outcome.failure_code == "capture_failed"
    assert partners.names().count("capture") == 1
    assert {"void_authorisation", "revoke_department_confirmation"} <= set(partners.names())


# --- the payer's and the department's steps --------------------------------------------


async def test_a_department_cancel_compensates_with_its_own_event(
    env: WorkflowEnvironment, partners: Partners
) -> None:
    async with Run(env.client, partners, request()) as run:
        await run.wf.execute_update(PaymentWorkflow.cancel, "duplicate invoice")
        outcome = await run.outcome()
    assert outcome.state == "cancelled"
    [closed] = partners.args("close_unpaid")
    assert closed.event == "cancelled_by_department"
    assert closed.detail == "duplicate invoice"
    assert "void_authorisation" not in partners.names()


async def test_three_d_secure_records_the_authorisation(
    env: WorkflowEnvironment, partners: Partners
) -> None:
    partners.auth_status = AuthorisationStatus.REQUIRES_ACTION
    async with Run(env.client, partners, request()) as run:
        await run.submit("card")
        for _ in range(100):
            if await run.wf.query(PaymentWorkflow.state) == "requires_action":
                break
            await asyncio.sleep(0.05)
        await run.wf.execute_update(PaymentWorkflow.submit_challenge_answer, "123456")
        outcome = await run.outcome()
    assert outcome.state == "succeeded"
    [challenge] = [c for c in partners.args("record_transition") if c.event == "challenge_required"]
    assert challenge.authorisation_id == "auth_1"


# --- defect 7: a database outage keeps the history small -------------------------------


async def _history_length(handle: WorkflowHandle[Any, Any]) -> int:
    return len((await handle.fetch_history()).events)


async def test_a_database_outage_of_hours_backs_off_to_minutes(
    env: WorkflowEnvironment, partners: Partners
) -> None:
    down_for = 16  # attempts: the backoff reaches five minutes (the 12th), then 20 minutes more
    fakes = partners.activities()
    record = fakes[1]

    @activity.defn(name="record_transition")
    async def record_transition(change: Transition) -> str:
        if change.event == "authorised" and activity.info().attempt < down_for:
            raise ApplicationError("database unreachable")
        result: str = await record(change)
        return result

    fakes[1] = record_transition
    async with Run(env.client, partners, request(), fakes) as run:
        await run.submit()
        outcome = await run.outcome()
        length = await _history_length(run.wf)
    assert outcome.state == "succeeded"
    print(f"history after a database outage of {down_for} attempts: {length} events")
    assert length < 250  # a few events an attempt, not a heartbeat every few seconds


async def test_a_database_outage_past_the_limit_fails_loudly(
    env: WorkflowEnvironment, partners: Partners, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 20 attempts (about an hour) instead of 150 (twelve), to keep the test short.
    retry = dataclasses.replace(steps.RECORD_RETRY, maximum_attempts=20)
    monkeypatch.setattr(payment_workflow, "RECORD_RETRY", retry)
    async with Run(
        env.client, partners, request(), workflow_runner=UnsandboxedWorkflowRunner()
    ) as run:
        partners.database_up = False
        await run.submit()
        with pytest.raises(WorkflowFailureError) as failure:
            await asyncio.wait_for(run.wf.result(), timeout=120)
        length = await _history_length(run.wf)
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "database_unavailable"
    print(f"history when the payment gave up on the database: {length} events")
    assert length < 250  # twelve hours stay far below Temporal's 10,240-event warning


# --- operators steer a department confirmation ----------------------------------------

OPERATOR = OperatorAction("aisha@dm.gov.ae", "department confirmed by phone")


async def _confirming(run: Run, attempts: int = 2) -> None:
    """Wait until the payment has tried its department ``attempts`` times."""
    for _ in range(300):
        now = await run.wf.query(PaymentWorkflow.status)
        if now.state == "confirming" and now.attempt >= attempts:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the payment never kept confirming")


async def test_an_operator_wakes_a_waiting_confirmation(
    env: WorkflowEnvironment, partners: Partners
) -> None:
    partners.department_up = False
    async with Run(env.client, partners, request(confirm_deadline_seconds=3600)) as run:
        await run.submit()
        await _confirming(run, attempts=3)
        now = await run.wf.query(PaymentWorkflow.status)
        assert now.waiting_for == "department"
        assert now.gives_up_at is not None
        assert now.last_error is not None
        assert "503" in now.last_error
        assert now.doing.startswith(f"confirming with DM: attempt {now.attempt}, last error")
        partners.department_up = True
        await run.wf.execute_update(PaymentWorkflow.operator_retry_now, OPERATOR)
        outcome = await run.outcome()
    assert outcome.state == "succeeded"
    [note] = [e for e in partners.args("record_note") if e.note == "operator_retry_requested"]
    assert note.actor == "operator"
    assert note.detail == f"{OPERATOR.operator}: {OPERATOR.reason}"


async def test_a_confirmation_given_out_of_band_captures(
    env: WorkflowEnvironment, partners: Partners
) -> None:
    partners.department_up = False
    async with Run(env.client, partners, request(confirm_deadline_seconds=3600)) as run:
        await run.submit()
        await _confirming(run)
        confirmation = OutOfBandConfirmation(OPERATOR.operator, OPERATOR.reason, "DM-PHONE-77")
        await run.wf.execute_update(PaymentWorkflow.operator_record_confirmation, confirmation)
        outcome = await run.outcome()
    assert outcome.state == "succeeded"
    assert "capture" in partners.names()
    [confirmed] = [
        c for c in partners.args("record_transition") if c.event == "department_confirmed"
    ]
    assert confirmed.department_confirmation == "DM-PHONE-77"
    assert "department_confirmation_recorded" in notes(partners)


async def test_an_operator_cancels_a_waiting_confirmation(
    env: WorkflowEnvironment, partners: Partners
) -> None:
    partners.department_up = False
    async with Run(env.client, partners, request(confirm_deadline_seconds=3600)) as run:
        await run.submit()
        await _confirming(run)
        await run.wf.execute_update(PaymentWorkflow.operator_cancel, OPERATOR)
        outcome = await run.outcome()
    assert outcome.state == "cancelled"
    [closed] = partners.args("close_unpaid")
    assert closed.event == "cancelled_by_operator"
    assert closed.detail == f"{OPERATOR.operator}: {OPERATOR.reason}"
    assert {"void_authorisation", "revoke_department_confirmation"} <= set(partners.names())


async def test_a_department_down_past_the_deadline_fails_unavailable(
    env: WorkflowEnvironment, partners: Partners
) -> None:
    partners.department_up = False
    async with Run(env.client, partners, request(confirm_deadline_seconds=600)) as run:
        await run.submit()
        outcome = await run.outcome()
    assert outcome.state == "failed"
    assert outcome.failure_code == "department_unavailable"
    attempts = partners.names().count("confirm_with_department")
    assert 5 < attempts < 40  # backing off to a minute between attempts over ten minutes
    assert {"void_authorisation", "revoke_department_confirmation"} <= set(partners.names())


@pytest.mark.parametrize("attempt_ends", ["past_the_deadline", "final_error", "rejected"])
async def test_a_confirmation_recorded_during_an_attempt_wins_over_how_it_ends(
    env: WorkflowEnvironment, partners: Partners, attempt_ends: str
) -> None:
    """The operator was told the confirmation is recorded: the attempt in flight, ending
    with no answer by the deadline or with a final error, does not undo that. The
    department's own system refusing it does: an explicit answer stands."""
    partners.gates["confirm_with_department"] = asyncio.Event()
    async with Run(env.client, partners, request(confirm_deadline_seconds=1)) as run:
        await run.submit()
        await run.reached("confirm_with_department")
        confirmation = OutOfBandConfirmation(OPERATOR.operator, OPERATOR.reason, "DM-PHONE-78")
        await run.wf.execute_update(PaymentWorkflow.operator_record_confirmation, confirmation)
        await asyncio.sleep(1.5)  # the deadline passes while the attempt is in flight
        if attempt_ends == "past_the_deadline":
            partners.department_up = False
        elif attempt_ends == "final_error":
            partners.department_final_error = True
        else:
            partners.department_confirms = False
        partners.gates["confirm_with_department"].set()
        outcome = await run.outcome()
    if attempt_ends == "rejected":
        assert outcome.state == "failed"
        assert outcome.failure_code == "department_rejected"
        assert "capture" not in partners.names()
        return
    assert outcome.state == "succeeded", outcome
    assert "capture" in partners.names()
    assert "void_authorisation" not in partners.names()
    [confirmed] = [
        c for c in partners.args("record_transition") if c.event == "department_confirmed"
    ]
    assert confirmed.department_confirmation == "DM-PHONE-78"


async def test_a_temporal_cancel_during_the_void_of_a_failed_challenge_compensates(
    env: WorkflowEnvironment, partners: Partners
) -> None:
    """On the hosted page a failed challenge is voided before the payer may try again; a
    cancel landing during that void ends the payment as every other cancel does."""
    partners.auth_status = AuthorisationStatus.REQUIRES_ACTION
    partners.challenge_status = AuthorisationStatus.DECLINED
    partners.gates["void_authorisation"] = asyncio.Event()
    async with Run(env.client, partners, request()) as run:
        await run.submit("card", may_try_again=True)
        for _ in range(100):
            if await run.wf.query(PaymentWorkflow.state) == "requires_action":
                break
            await asyncio.sleep(0.05)
        await run.wf.execute_update(PaymentWorkflow.submit_challenge_answer, "000000")
        await run.reached("void_authorisation")
        await run.wf.cancel()
        await asyncio.sleep(0.5)
        partners.gates["void_authorisation"].set()
        with pytest.raises(WorkflowFailureError) as failure:
            await asyncio.wait_for(run.wf.result(), timeout=60)
    assert isinstance(failure.value.cause, CancelledError), failure.value.cause
    [closed] = partners.args("close_unpaid")
    assert closed.event == "cancelled_by_operator"
    assert partners.names()[-2:] == ["void_authorisation", "close_unpaid"]


async def test_a_void_refused_for_good_is_recorded_and_the_payment_ends(
    env: WorkflowEnvironment, partners: Partners
) -> None:
    partners.department_confirms = False
    partners.void_refused = True
    async with Run(env.client, partners, request()) as run:
        await run.submit()
        outcome = await run.outcome()
    assert outcome.state == "failed"
    assert outcome.failure_code == "department_rejected"
    assert partners.names().count("void_authorisation") == 1
    assert events(partners) == ["failed"]
    [refused] = [e for e in partners.args("record_note") if e.note == "void_refused"]
    assert "not_voidable" in (refused.detail or "")


@pytest.mark.parametrize(
    ("update", "arg", "code"),
    [
        ("operator_retry_now", OperatorAction("", "no name"), "operator_identity_required"),
        ("operator_cancel", OperatorAction("aisha", " "), "operator_identity_required"),
        ("operator_retry_now", OPERATOR, "not_awaiting_department"),
        (
            "operator_record_confirmation",
            OutOfBandConfirmation("aisha", "phone", ""),
            "invalid_confirmation_reference",
        ),
        (
            "operator_record_confirmation",
            OutOfBandConfirmation("aisha", "phone", "DM-1"),
            "not_awaiting_department",
        ),
    ],
)
async def test_operator_actions_are_refused_with_a_reason(
    env: WorkflowEnvironment, partners: Partners, update: str, arg: Any, code: str
) -> None:
    async with Run(env.client, partners, request()) as run:  # waiting for its payer
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await run.wf.execute_update(update, arg)
        cause = refused.value.cause
        assert isinstance(cause, ApplicationError), cause
        assert cause.type == code, cause
        await run.wf.execute_update(PaymentWorkflow.operator_cancel, OPERATOR)
        assert (await run.outcome()).state == "cancelled"


# --- the payer's and the department's updates carry proof the API sent them ------------

SECRET = b"test-secret-of-the-api"


async def test_updates_without_the_apis_proof_are_refused(
    env: WorkflowEnvironment, partners: Partners
) -> None:
    req = request()
    req.update_commitments = commitments(SECRET, req.payment_id)
    async with Run(env.client, partners, req) as run:
        method = PaymentMethodSubmission(
            MethodSummary(MethodType.E_DIRHAM, "e_dirham", "0017"), "vt_1"
        )
        for update, args in (
            (PaymentWorkflow.submit_payment_method, [method]),
            (PaymentWorkflow.cancel, ["not the department", "forged"]),
            (PaymentWorkflow.submit_payment_method, [dataclasses.replace(method, proof="x")]),
        ):
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await run.wf.execute_update(update, args=args)
            cause = refused.value.cause
            assert isinstance(cause, ApplicationError)
            assert cause.type == "update_not_proven"
        proof = update_proof(SECRET, req.payment_id, "submit_payment_method")
        await run.wf.execute_update(
            PaymentWorkflow.submit_payment_method, dataclasses.replace(method, proof=proof)
        )
        outcome = await run.outcome()
    assert outcome.state == "succeeded"
