"""``epay ops``: find, understand and steer stuck payments from a terminal.

``stuck`` asks Temporal's visibility store for running payment workflows whose current step
began more than a given time ago (the search attributes of ``domain.search``), longest stuck
first; then asks each payment its ``status`` and Temporal its pending activities (attempt,
last failure, next retry). ``show`` does the same for one payment and adds its audit trail
from the database. ``retry``, ``cancel`` and ``confirm`` send the payment workflow's
operator updates, which need the operator's identity and a reason, are written to the
payment's audit trail, and are refused, with their validator's message, when the payment's
state does not allow them. ``clear-pin-limit`` ends the wrong-PIN count of the e-Dirham
card(s) tried on a payment (api/abuse.py), so that a resident whose card ePay refuses can use
it again; it acts on the database alone, whether the payment has ended or not, and writes
itself to the payment's audit trail as the updates do. ``resolve`` ends what the sweeper
left to an operator (``needs_operator``, ``void_refused``), on the database and the partners
alone, since the payment's workflow has closed.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.api.failure.v1 import Failure
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.departments import DepartmentSystems
from activities.payment_methods import PaymentMethods
from commands.text import age, aligned, clock, stamp, utc
from domain import search
from domain.failures import FailureCode
from domain.models import (
    AuditEntry,
    DepartmentRequest,
    FundsRequest,
    OperatorAction,
    OutOfBandConfirmation,
    PaymentStatus,
    Transition,
)
from domain.money import format_aed
from domain.references import reference_key
from domain.states import WAITING_FOR, Actor, AuditNote, PaymentEvent, PaymentState
from domain.sweeper import StrandedPayment
from epay import store, sweeps
from epay.config import Settings
from epay.db import create_pool
from epay.http import TransientError
from epay.temporal import connect, payment_workflow_id
from workflows.payment import PaymentWorkflow

# Exit codes a script can rely on (1 is an unexpected error, with its traceback on stderr).
OK = 0
USAGE = 2  # argparse's own
NOT_FOUND = 3
REFUSED = 4
UNREACHABLE = 5

EXIT_CODES = """exit codes:
  0  done (`stuck` finding nothing is 0, with an empty list)
  2  usage error
  3  no such payment
  4  refused: the payment's state does not allow the action, or the payment has ended
     (clear-pin-limit: no e-Dirham card was tried on the payment; resolve: nothing was
     left to an operator, its workflow is still running it, or a partner or the
     department refused: nothing recorded as resolved)
  5  Temporal unreachable (resolve: a partner or the department; run it again)
  1  unexpected error (traceback on stderr)"""

PAYMENT_WORKFLOW_TYPE = PaymentWorkflow.__name__
# A payment whose worker is away does not answer its status query: it is listed from its
# search attributes instead of holding up the list.
STATUS_QUERY_TIMEOUT = timedelta(seconds=5)
CONCURRENT_LOOKUPS = 10


class OpsError(Exception):
    """Ends the command with ``exit_code``; ``code`` is the stable name shown with --json."""

    def __init__(self, exit_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.code = code


@dataclass
class PendingActivity:
    """A call the payment is waiting on, as Temporal retries it."""

    activity: str
    state: str  # scheduled (waiting for its next attempt), started, cancel_requested
    attempt: int
    maximum_attempts: int | None  # None: retried until its deadline or for ever
    last_failure: str | None
    last_failed_at: str | None
    next_attempt_at: str | None

    def line(self) -> str:
        text = f"{self.activity} attempt {self.attempt}"
        if self.maximum_attempts:
            text += f" of {self.maximum_attempts}"
        if self.last_failure:
            text += f", last failure {clock(self.last_failed_at)}: {self.last_failure}"
        if self.next_attempt_at:
            text += f", next attempt {clock(self.next_attempt_at)}"
        return text


@dataclass
class PaymentView:
    """One stuck payment: where it is, why, since and until when, and where to look."""

    payment_id: str
    workflow_id: str
    state: str | None
    waiting_for: str | None
    step: str | None  # the status query's ``doing``; None if the query was not answered
    why: str
    since: str | None
    gives_up_at: str | None
    department: str | None
    reference: str | None  # as sent (normalised when the status query was not answered)
    amount_fils: int | None
    amount: str | None
    confirmation_attempt: int | None  # while confirming: the department's attempts so far
    last_error: str | None  # and its last error
    pending_activities: list[PendingActivity]
    ui_url: str


@dataclass(frozen=True)
class StuckFilter:
    older_than: timedelta
    department: str | None = None
    state: str | None = None
    waiting_for: str | None = None
    references: tuple[str, ...] = ()


def stuck_query(f: StuckFilter, now: datetime) -> str:
    """The visibility query for running payments whose current step began before
    ``now - older_than``, narrowed by the filter's search attributes."""
    clauses = [
        f"WorkflowType = {_literal(PAYMENT_WORKFLOW_TYPE)}",
        "ExecutionStatus = 'Running'",
        f"{search.STEP_STARTED_AT.name} < {_literal((now - f.older_than).isoformat())}",
    ]
    for key, value in (
        (search.DEPARTMENT, f.department),
        (search.PAYMENT_STATE, f.state),
        (search.WAITING_FOR, f.waiting_for),
    ):
        if value:
            clauses.append(f"{key.name} = {_literal(value)}")
    if f.references:
        keys = ", ".join(_literal(reference_key(r)) for r in f.references)
        clauses.append(f"{search.PAYMENT_REFERENCE.name} IN ({keys})")
    return " AND ".join(clauses)


def ui_url(settings: Settings, workflow_id: str) -> str:
    """The payment's page in the Temporal UI (the UI opens the latest run)."""
    namespace = quote(settings.temporal_namespace, safe="")
    return f"{settings.temporal_ui_url}/namespaces/{namespace}/workflows/{quote(workflow_id)}"


# --- reading -------------------------------------------------------------------------------


async def find_stuck(
    client: Client, settings: Settings, f: StuckFilter, limit: int
) -> tuple[list[PaymentView], int]:
    """The ``limit`` longest-stuck payments the filter finds, and how many it found."""
    query = stuck_query(f, datetime.now(UTC))
    found = [wf async for wf in client.list_workflows(query)]
    found.sort(key=_step_started_at)
    gate = asyncio.Semaphore(CONCURRENT_LOOKUPS)

    async def look(wf: WorkflowExecution) -> PaymentView:
        async with gate:
            return await _view(client, settings, wf)

    return list(await asyncio.gather(*(look(wf) for wf in found[:limit]))), len(found)


async def _view(client: Client, settings: Settings, wf: WorkflowExecution) -> PaymentView:
    attrs = wf.typed_search_attributes
    handle = client.get_workflow_handle_for(PaymentWorkflow.run, wf.id)
    desc = await handle.describe()
    status, note = await _status(client, wf.id)
    pending = await _pending_activities(client, desc)
    since = attrs.get(search.STEP_STARTED_AT)
    amount = status.amount if status else attrs.get(search.AMOUNT_FILS)
    waiting_for = status.waiting_for if status else attrs.get(search.WAITING_FOR)
    confirming = status if status and status.state == PaymentState.CONFIRMING else None
    why = [f"waiting for {waiting_for}"] if waiting_for else []
    if confirming and confirming.attempt:
        why.append(f"confirmation attempt {confirming.attempt}")
        if confirming.last_error:
            why[-1] += f", last error {confirming.last_error}"
    return PaymentView(
        payment_id=status.payment_id if status else _payment_id(wf.id),
        workflow_id=wf.id,
        state=status.state if status else attrs.get(search.PAYMENT_STATE),
        waiting_for=waiting_for,
        step=status.doing if status else None,
        why="; ".join(why + [p.line() for p in pending] + ([note] if note else [])),
        since=status.step_started_at if status else (since.isoformat() if since else None),
        gives_up_at=status.gives_up_at if status else None,
        department=status.department if status else attrs.get(search.DEPARTMENT),
        reference=status.reference if status else attrs.get(search.PAYMENT_REFERENCE),
        amount_fils=amount,
        amount=format_aed(amount) if amount is not None else None,
        confirmation_attempt=confirming.attempt if confirming else None,
        last_error=confirming.last_error if confirming else None,
        pending_activities=pending,
        ui_url=ui_url(settings, wf.id),
    )


async def _status(client: Client, workflow_id: str) -> tuple[PaymentStatus | None, str | None]:
    """The payment's ``status`` query, or None and why it was not answered."""
    handle = client.get_workflow_handle_for(PaymentWorkflow.run, workflow_id)
    try:
        return await handle.query(PaymentWorkflow.status, rpc_timeout=STATUS_QUERY_TIMEOUT), None
    except (RPCError, WorkflowQueryFailedError) as err:
        if isinstance(err, RPCError) and err.status == RPCStatusCode.UNAVAILABLE:
            raise
        return None, f"status query not answered (is a worker running?): {err}"


async def _pending_activities(
    client: Client, desc: WorkflowExecutionDescription
) -> list[PendingActivity]:
    return [await _pending(client, p) for p in desc.raw_description.pending_activities]


async def _pending(client: Client, p: PendingActivityInfo) -> PendingActivity:
    state = PendingActivityState.Name(p.state).removeprefix("PENDING_ACTIVITY_STATE_").lower()
    has_failure = p.HasField("last_failure")
    return PendingActivity(
        activity=p.activity_type.name,
        state=state,
        attempt=p.attempt,
        maximum_attempts=p.maximum_attempts or None,
        last_failure=await _failure_message(client, p.last_failure) if has_failure else None,
        last_failed_at=_time(p.last_attempt_complete_time) if has_failure else None,
        next_attempt_at=(
            _time(p.next_attempt_schedule_time)
            if p.HasField("next_attempt_schedule_time")
            else None
        ),
    )


async def _failure_message(client: Client, failure: Failure) -> str:
    """The failure's message, decoded through the client's codec (failure messages are
    encrypted in history); as Temporal has it if this client cannot decode it."""
    copy = Failure()
    copy.CopyFrom(failure)
    try:
        return str(await client.data_converter.decode_failure(copy))
    except Exception as err:  # noqa: BLE001 - e.g. a key this client does not hold
        return f"{failure.message} (not decoded: {err})"


async def show(client: Client, settings: Settings, payment: str) -> dict[str, Any]:
    """Everything known about one payment: status, pending activities, audit trail."""
    workflow_id = _workflow_id(payment)
    desc = await _describe(client, settings, workflow_id)
    status, note = await _status(client, workflow_id)
    payment_id = status.payment_id if status else _payment_id(workflow_id)
    pool = await create_pool(settings.require_database_url(), max_size=1)
    try:
        events = await store.list_events(pool, payment_id)
    finally:
        await pool.close()
    return {
        "payment_id": payment_id,
        "workflow_id": workflow_id,
        "workflow_status": desc.status.name.lower() if desc.status else None,
        "status": dataclasses.asdict(status) if status else None,
        "status_note": note,
        "pending_activities": [
            dataclasses.asdict(p) for p in await _pending_activities(client, desc)
        ],
        "events": [
            {**dict(e), "occurred_at": e["occurred_at"].astimezone(UTC).isoformat()} for e in events
        ],
        "ui_url": ui_url(settings, workflow_id),
    }


# --- acting --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    update: Any  # the PaymentWorkflow update that carries it (each takes its own input)
    what: str  # for messages: "<operator> <what> <payment>"


ACTIONS = {
    "retry": Action(PaymentWorkflow.operator_retry_now, "asked for a retry now of"),
    "cancel": Action(PaymentWorkflow.operator_cancel, "cancelled"),
    "confirm": Action(
        PaymentWorkflow.operator_record_confirmation, "recorded the department's confirmation of"
    ),
}


async def act(
    client: Client, settings: Settings, action: str, payment: str, arg: object
) -> dict[str, Any]:
    """Send an operator update; ``OpsError(REFUSED)`` with the validator's message if the
    payment refuses it or has ended."""
    workflow_id = _workflow_id(payment)
    desc = await _describe(client, settings, workflow_id)
    if desc.status != WorkflowExecutionStatus.RUNNING:
        raise _ended(desc)
    handle = client.get_workflow_handle(workflow_id)
    try:
        await handle.execute_update(ACTIONS[action].update, arg)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError):
            raise OpsError(REFUSED, cause.type or "refused", cause.message) from None
        raise OpsError(REFUSED, "refused", str(cause or err)) from None
    except RPCError as err:
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            raise _ended(await _describe(client, settings, workflow_id)) from None
        raise
    status, note = await _status(client, workflow_id)
    return {
        "payment_id": status.payment_id if status else _payment_id(workflow_id),
        "action": action,
        "status": dataclasses.asdict(status) if status else None,
        "status_note": note,
        "ui_url": ui_url(settings, workflow_id),
    }


def _ended(desc: WorkflowExecutionDescription) -> OpsError:
    state = desc.typed_search_attributes.get(search.PAYMENT_STATE) or "unknown"
    how = desc.status.name.lower() if desc.status else "closed"
    return OpsError(
        REFUSED, "payment_ended", f"the payment has ended ({state}; its workflow {how})"
    )


async def _describe(
    client: Client, settings: Settings, workflow_id: str
) -> WorkflowExecutionDescription:
    try:
        return await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise OpsError(
                NOT_FOUND,
                "payment_not_found",
                f"no payment workflow {workflow_id} in namespace {settings.temporal_namespace}",
            ) from None
        raise


# --- the payer limits ----------------------------------------------------------------------

# The e-Dirham cards tried on a payment, and those the wrong-PIN limit refused on it (whose
# method never reached payer_attempts): by their keyed hashes, never a number.
_CARDS_OF_PAYMENT = """
    SELECT card_key FROM payer_attempts WHERE payment_id = $1 AND method_type = 'e_dirham'
    UNION
    SELECT card_key FROM pin_limit_refusals WHERE payment_id = $1"""


async def clear_pin_limit(
    settings: Settings, payment: str, operator: str, reason: str
) -> dict[str, Any]:
    """End the wrong-PIN count of the e-Dirham cards tried on ``payment``: each card's count
    starts again after this clearance (api/abuse.py). Recorded with the operator and reason in
    ``pin_limit_clearances`` and in the payment's audit trail, in one transaction. The
    payment may have ended, its workflow with it: this is the database's alone."""
    payment_id = _payment_id(_workflow_id(payment))
    operator, reason = _who_and_why(operator, reason)
    pool = await create_pool(settings.require_database_url(), max_size=1)
    try:
        async with pool.acquire() as conn, conn.transaction():
            state = await conn.fetchval("SELECT state FROM payments WHERE id = $1", payment_id)
            if state is None:
                raise OpsError(NOT_FOUND, "payment_not_found", f"no payment {payment_id}")
            cards = [r["card_key"] for r in await conn.fetch(_CARDS_OF_PAYMENT, payment_id)]
            if not cards:
                raise OpsError(
                    REFUSED,
                    "no_e_dirham_attempt",
                    f"no e-Dirham card was tried on {payment_id}: no wrong-PIN count to clear",
                )
            cleared = await conn.fetch(
                """INSERT INTO pin_limit_clearances (card_key, payment_id, operator, reason)
                   SELECT card, $2, $3, $4 FROM unnest($1::bytea[]) AS card
                   RETURNING id, created_at""",
                cards,
                payment_id,
                operator,
                reason,
            )
            await store.record_note_in(
                conn,
                AuditEntry(
                    payment_id,
                    AuditNote.PIN_LIMIT_CLEARED,
                    Actor.OPERATOR,
                    f"{operator}: {reason}",
                    key=str(cleared[0]["id"]),
                ),
            )
    finally:
        await pool.close()
    return {
        "payment_id": payment_id,
        "action": "clear-pin-limit",
        "state": state,
        "cards": len(cards),
        "cleared_at": cleared[0]["created_at"].astimezone(UTC).isoformat(),
    }


async def resolve(settings: Settings, payment: str, operator: str, reason: str) -> dict[str, Any]:
    """End what was left to an operator: a payment the sweeper marked ``needs_operator``
    (capture decided, its authorisation unknown) or whose void a partner refused for good
    (``void_refused``), once the operator has looked at it with the partner.

    Acts on the database and the partners, with no workflow: every method the payment may
    have authorised is voided or reversed under its own keys (a refusal is reported, and
    recorded, not fatal: the operator has checked); an open payment has the department's
    confirmation revoked and ends ``failed`` (``capture_failed``), releasing its
    reservation; a revocation still owed is made. The operator and reason go into the audit
    trail (``operator_resolved``) with what was done. Nothing is recorded as resolved while
    a partner or the department cannot be reached: run it again.
    """
    payment_id = _payment_id(_workflow_id(payment))
    operator, reason = _who_and_why(operator, reason)
    said = f"{operator}: {reason}"
    pool = await create_pool(settings.require_database_url(), max_size=2)
    try:
        async with httpx.AsyncClient(timeout=settings.http_timeout_seconds) as http:
            try:
                p, revoke_owed, left = await sweeps.left_to_operator(pool, payment_id)
            except LookupError:
                raise OpsError(NOT_FOUND, "payment_not_found", f"no payment {payment_id}") from None
            state = PaymentState(p.state)
            if not left:
                raise OpsError(
                    REFUSED,
                    "nothing_to_resolve",
                    f"{payment_id} ({state}) has nothing left to an operator "
                    "(no needs_operator or void_refused since it was last resolved)",
                )
            if (
                not state.is_terminal and AuditNote.NEEDS_OPERATOR not in left
            ) or await _workflow_running(settings, p.payment_id):
                raise OpsError(
                    REFUSED,
                    "workflow_running",
                    f"{payment_id} is {state} and its workflow is still running it: "
                    "use epay ops cancel, or wait for the sweeper",
                )
            # A payment that succeeded keeps the method that paid it: only the methods
            # declined before it are released (one of those is what was refused).
            done = await _release_at_partners(
                settings, pool, http, p, paid=state == PaymentState.SUCCEEDED
            )
            department = DepartmentRequest(
                p.payment_id, p.department, p.reference, p.service_code, p.amount
            )
            if not state.is_terminal or revoke_owed:
                departments = DepartmentSystems(
                    pool,
                    http,
                    timeout=settings.department_timeout_seconds,
                    token_secret=settings.token_secret,
                )
                await _partner_step("the department", departments.revoke(department))
                done.append("department confirmation revoked")
            if not state.is_terminal:
                state = PaymentState(
                    await store.close_unpaid(
                        pool,
                        Transition(
                            p.payment_id,
                            PaymentEvent.FAILED,
                            actor=Actor.OPERATOR,
                            failure_code=FailureCode.CAPTURE_FAILED,
                            detail=f"{said}; {'; '.join(done)}",
                        ),
                    )
                )
            key = datetime.now(UTC).isoformat()
            if revoke_owed:
                await store.record_note(
                    pool,
                    AuditEntry(
                        p.payment_id,
                        AuditNote.DEPARTMENT_REVOKED,
                        Actor.OPERATOR,
                        f"{said}: revoked",
                        key=f"resolve:{key}",
                    ),
                )
            await store.record_note(
                pool,
                AuditEntry(
                    p.payment_id,
                    AuditNote.OPERATOR_RESOLVED,
                    Actor.OPERATOR,
                    f"{said} ({'; '.join(done) or 'nothing was open at the partners'})",
                    key=key,
                ),
            )
    finally:
        await pool.close()
    return {
        "payment_id": payment_id,
        "action": "resolve",
        "resolved": sorted(left),
        "state": state.value,
        "done": done,
    }


async def _release_at_partners(
    settings: Settings,
    pool: asyncpg.Pool,
    http: httpx.AsyncClient,
    p: StrandedPayment,
    *,
    paid: bool,
) -> list[str]:
    """Void or reverse every method the payment may have authorised, as the sweeper does
    (for a ``paid`` payment, those before the one that paid it). A final refusal is
    reported (the operator has checked it with the partner), but for the method of an open
    payment: the partner saying it captured that one means the payment was paid, and
    nothing is changed."""
    methods = PaymentMethods(
        pool,
        http,
        vault_key=b"",  # voids need no card data
        acquirer_url=settings.acquirer_url,
        issuer_url=settings.issuer_url,
    )
    open_payment = not PaymentState(p.state).is_terminal
    done = []
    # The method the payment is on first: its refusal stops the command before any change.
    for method, authorisation_id in reversed(p.methods_to_release()):
        current = bool(p.method_type) and method.attempt == p.attempt
        if paid and current:
            continue
        what = "voided" if authorisation_id else "authorising call reversed"
        request = FundsRequest(
            p.payment_id, method.method_type, authorisation_id, p.amount, method.attempt
        )
        try:
            await _partner_step(f"the {method.method_type} partner", methods.void(request))
        except ApplicationError as err:  # a final refusal (_partner_step raised the rest)
            if open_payment and current:
                raise OpsError(
                    REFUSED,
                    "partner_refused",
                    f"the {method.method_type} partner refused for good to release the "
                    f"method {p.payment_id} is on ({err}): if it captured it, the payment "
                    "was paid: nothing was changed; escalate to engineering to settle it",
                ) from None
            what = f"refused for good ({err}), as the operator found"
        done.append(f"method {method.attempt} ({method.method_type}): {what}")
    return done[::-1]


async def _workflow_running(settings: Settings, payment_id: str) -> bool:
    """Whether Temporal runs the payment's workflow; False when Temporal cannot be reached
    within seconds (resolve needs only the database and the partners: the notes it acts on
    were written once the workflow had closed)."""
    try:
        client = await asyncio.wait_for(connect(settings), timeout=10)
        handle = client.get_workflow_handle(payment_workflow_id(payment_id))
        description = await asyncio.wait_for(handle.describe(), timeout=10)
    except (RPCError, RuntimeError, TimeoutError):  # unknown to Temporal, or unreachable
        return False
    return description.status == WorkflowExecutionStatus.RUNNING


async def _partner_step(partner: str, call: Awaitable[None]) -> None:
    """A partner call that ends the command with exit 5 when the partner cannot answer, and
    4 when it refuses (a department's refusal included)."""
    try:
        await call
    except (TransientError, httpx.TransportError) as err:
        raise OpsError(
            UNREACHABLE,
            "partner_unreachable",
            f"{partner} could not be reached ({err}): nothing is recorded as resolved yet; "
            "run it again",
        ) from None
    except ApplicationError as err:
        if partner == "the department" or not err.non_retryable:
            raise OpsError(
                REFUSED,
                "partner_refused",
                f"{partner} refused ({err}): nothing is recorded as resolved",
            ) from None
        raise


def _who_and_why(operator: str, reason: str) -> tuple[str, str]:
    """The operator's identity and reason, both required (they go into the audit trail)."""
    operator, reason = operator.strip(), reason.strip()
    if not operator or not reason:
        raise OpsError(
            REFUSED,
            "operator_identity_required",
            "an operator action needs the operator's identity and a reason",
        )
    return operator, reason


# --- the command line ----------------------------------------------------------------------


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``epay ops`` and its commands, under the ``epay`` parser's subcommands."""
    raw = argparse.RawDescriptionHelpFormatter
    ops = sub.add_parser(
        "ops",
        help="operators: find, explain and steer stuck payments",
        description=__doc__,
        epilog=EXIT_CODES,
        formatter_class=raw,
    )
    osub = ops.add_subparsers(dest="action", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        parser = osub.add_parser(name, help=help, epilog=EXIT_CODES, formatter_class=raw)
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")
        return parser

    stuck = command("stuck", "running payments whose current step began a while ago")
    stuck.add_argument(
        "--older-than",
        type=_minutes,
        default=timedelta(minutes=10),
        metavar="MINUTES",
        help="whose current step began at least this long ago (default 10)",
    )
    stuck.add_argument("--department", metavar="D")
    stuck.add_argument("--state", choices=[s.value for s in PaymentState])
    stuck.add_argument("--waiting-for", choices=sorted(set(WAITING_FOR.values())))
    stuck.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="REF",
        help="the department's reference (normalised as the API does); may be repeated",
    )
    stuck.add_argument("--limit", type=_positive, default=50, metavar="N", help="default 50")

    shown = command("show", "one payment: status, pending calls, audit trail, UI link")
    shown.add_argument("payment", metavar="PAYMENT_ID")

    for name, help in (
        ("retry", "confirming: ask the department again now, instead of at the next backoff"),
        ("cancel", "before capture: undo what was done and end the payment cancelled"),
        ("confirm", "confirming: record a confirmation the department gave out of band"),
    ):
        parser = command(name, help)
        parser.add_argument("payment", metavar="PAYMENT_ID")
        if name == "confirm":
            parser.add_argument(
                "--reference", required=True, help="the department's confirmation reference"
            )
        parser.add_argument("--operator", required=True, help="who you are (recorded)")
        parser.add_argument("--reason", required=True, help="why (recorded)")

    clear = command(
        "clear-pin-limit",
        "end the wrong-PIN count of the e-Dirham card(s) tried on a payment, so that ePay "
        "takes the card again (database only)",
    )
    clear.add_argument(
        "payment", metavar="PAYMENT_ID", help="the payment the resident was refused on"
    )
    clear.add_argument("--operator", required=True, help="who you are (recorded)")
    clear.add_argument("--reason", required=True, help="why (recorded)")

    resolved = command(
        "resolve",
        "end what the sweeper left to an operator (needs_operator, void_refused): void or "
        "reverse at the partners, revoke, end the payment failed if open (database and "
        "partners, no workflow)",
    )
    resolved.add_argument("payment", metavar="PAYMENT_ID")
    resolved.add_argument("--operator", required=True, help="who you are (recorded)")
    resolved.add_argument("--reason", required=True, help="what you found (recorded)")


async def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run an ``epay ops`` command; returns its exit code."""
    try:
        if args.action in _DATABASE_COMMANDS:
            await _DATABASE_COMMANDS[args.action](settings, args)
            return OK
        try:
            client = await connect(settings)
        except RuntimeError as err:  # the SDK's "Failed client connect"
            raise OpsError(UNREACHABLE, "temporal_unreachable", str(err)) from None
        await _COMMANDS[args.action](client, settings, args)
        return OK
    except OpsError as err:
        _fail(args, err)
        return err.exit_code
    except RPCError as err:
        if err.status not in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            raise
        _fail(args, OpsError(UNREACHABLE, "temporal_unreachable", str(err)))
        return UNREACHABLE
    except Exception:  # noqa: BLE001 - reported, then exit 1 (the CLI skips teardown)
        traceback.print_exc()
        return 1


async def _stuck(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    f = StuckFilter(
        older_than=args.older_than,
        department=args.department,
        state=args.state,
        waiting_for=args.waiting_for,
        references=tuple(args.reference),
    )
    views, total = await find_stuck(client, settings, f, args.limit)
    if args.json:
        _print_json([dataclasses.asdict(v) for v in views])
        return
    age = f"{f.older_than.total_seconds() / 60:g} min"
    if not views:
        print(f"no running payment has been on its step for {age} or longer")
        return
    print(f"{total} on their step for {age} or longer; the {len(views)} longest:\n")
    print(_table(views))


async def _show(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    shown = await show(client, settings, args.payment)
    if args.json:
        _print_json(shown)
    else:
        print(_describe_text(shown))


async def _act(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    arg: object
    if args.action == "confirm":
        arg = OutOfBandConfirmation(args.operator, args.reason, args.reference)
    else:
        arg = OperatorAction(args.operator, args.reason)
    done = await act(client, settings, args.action, args.payment, arg)
    if args.json:
        _print_json(done)
        return
    print(f"{args.operator} {ACTIONS[args.action].what} {done['payment_id']}")
    status = done["status"]
    print(f"now {status['state']}: {status['doing']}" if status else done["status_note"])
    print(done["ui_url"])


async def _clear_pin_limit(settings: Settings, args: argparse.Namespace) -> None:
    done = await clear_pin_limit(settings, args.payment, args.operator, args.reason)
    if args.json:
        _print_json(done)
        return
    cards = f"{done['cards']} e-Dirham card{'s' if done['cards'] > 1 else ''}"
    print(
        f"{args.operator.strip()} cleared the wrong-PIN count of {cards} tried on "
        f"{done['payment_id']} ({done['state']}): ePay takes the card again"
    )
    print("the issuer's own count is not cleared: one more wrong PIN may lock the card there")


async def _resolve(settings: Settings, args: argparse.Namespace) -> None:
    done = await resolve(settings, args.payment, args.operator, args.reason)
    if args.json:
        _print_json(done)
        return
    print(f"{args.operator.strip()} resolved {done['payment_id']} ({', '.join(done['resolved'])})")
    for step in done["done"]:
        print(f"  {step}")
    print(f"now {done['state']}")


_COMMANDS: dict[str, Callable[[Client, Settings, argparse.Namespace], Awaitable[None]]] = {
    "stuck": _stuck,
    "show": _show,
    "retry": _act,
    "cancel": _act,
    "confirm": _act,
}
# Those that need the database alone, not Temporal.
_DATABASE_COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], Awaitable[None]]] = {
    "clear-pin-limit": _clear_pin_limit,
    "resolve": _resolve,
}


def _fail(args: argparse.Namespace, err: OpsError) -> None:
    if args.json:
        _print_json({"error": {"code": err.code, "message": str(err)}})
    print(f"epay ops {args.action}: {err}", file=sys.stderr)


# --- output --------------------------------------------------------------------------------

_COLUMNS = (
    "PAYMENT",
    "STATE",
    "WAITING FOR",
    "SINCE (UTC)",
    "FOR",
    "GIVES UP (UTC)",
    "DEPT",
    "AMOUNT",
)


def _table(views: list[PaymentView]) -> str:
    now = datetime.now(UTC)
    rows = [
        (
            v.payment_id,
            v.state or "-",
            v.waiting_for or "-",
            stamp(v.since),
            age(now, v.since),
            stamp(v.gives_up_at),
            v.department or "-",
            v.amount or "-",
        )
        for v in views
    ]
    header, *lines = aligned([_COLUMNS, *rows])
    out = [header]
    for line, v in zip(lines, views, strict=True):
        out.append(line)
        out.append(f"    step: {v.step or '-'}")
        out.append(f"    why:  {v.why or '-'}")
        out.append(f"    {v.ui_url}")
    return "\n".join(out)


def _describe_text(shown: dict[str, Any]) -> str:
    lines = [f"payment {shown['payment_id']} (workflow {shown['workflow_status']})"]
    s = shown["status"]
    if s:
        method = s["method"]
        lines += [
            f"  {s['department']} {s['service_code']} {s['reference']} {format_aed(s['amount'])}",
            f"  state:       {s['state']}, waiting for {s['waiting_for']}",
            f"  step:        {s['doing']}",
            f"  since:       {utc(s['step_started_at'])}",
            f"  gives up at: {utc(s['gives_up_at'])}",
        ]
        if method:
            lines.append(f"  method:      {method['type']} {method.get('last4') or ''}".rstrip())
        flags = [k for k in ("cancel_requested", "compensating", "capture_decided") if s[k]]
        if s["failure_code"] or flags:
            lines.append(f"  failure:     {s['failure_code'] or '-'}  {' '.join(flags)}".rstrip())
    else:
        lines.append(f"  {shown['status_note']}")
    lines.append("pending calls:")
    pending = [PendingActivity(**p) for p in shown["pending_activities"]]
    lines += [f"  {p.line()}" for p in pending] or ["  none"]
    lines.append("audit trail:")
    trail = [
        (
            stamp(e["occurred_at"]),
            e["event"],
            f"{e['from_state'] or '-'} -> {e['to_state']}",
            e["actor"],
            e["detail"] or "",
        )
        for e in shown["events"]
    ]
    lines += [f"  {line}" for line in aligned(trail)]
    lines.append(shown["ui_url"])
    return "\n".join(lines)


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2))


# --- small helpers -------------------------------------------------------------------------


def _literal(value: str) -> str:
    """A string in a visibility query. Departments, states and references never hold
    quotes or backslashes (the API refuses them), so a value that does is a typing error."""
    if any(c in value for c in "'\"\\"):
        raise OpsError(USAGE, "usage", f"quotes and backslashes are not allowed: {value!r}")
    return f"'{value}'"


def _workflow_id(payment: str) -> str:
    """A payment id (``pay_...``), or its workflow id as the Temporal UI shows it."""
    return payment if payment.startswith("payment-") else payment_workflow_id(payment)


def _payment_id(workflow_id: str) -> str:
    return workflow_id.removeprefix("payment-")


def _step_started_at(wf: WorkflowExecution) -> datetime:
    return wf.typed_search_attributes.get(search.STEP_STARTED_AT) or datetime.max.replace(
        tzinfo=UTC
    )


def _time(stamp: Timestamp) -> str:
    return stamp.ToDatetime(tzinfo=UTC).isoformat()


def _minutes(text: str) -> timedelta:
    try:
        minutes = float(text)
    except ValueError:
        minutes = -1
    if minutes < 0:
        raise argparse.ArgumentTypeError(f"not a number of minutes: {text!r}")
    return timedelta(minutes=minutes)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return int(text)
