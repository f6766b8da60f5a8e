"""What the ``epay ops`` commands share: their exit codes and errors, the views of a
stuck payment, the visibility query that finds them, and the ids and names they take."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.client import WorkflowExecution

from commands.text import clock
from domain import search
from domain.references import reference_key
from epay.config import Settings
from epay.temporal import payment_workflow_id
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
        f"WorkflowType = {literal(PAYMENT_WORKFLOW_TYPE)}",
        "ExecutionStatus = 'Running'",
        f"{search.STEP_STARTED_AT.name} < {literal((now - f.older_than).isoformat())}",
    ]
    for key, value in (
        (search.DEPARTMENT, f.department),
        (search.PAYMENT_STATE, f.state),
        (search.WAITING_FOR, f.waiting_for),
    ):
        if value:
            clauses.append(f"{key.name} = {literal(value)}")
    if f.references:
        keys = ", ".join(literal(reference_key(r)) for r in f.references)
        clauses.append(f"{search.PAYMENT_REFERENCE.name} IN ({keys})")
    return " AND ".join(clauses)


def ui_url(settings: Settings, workflow_id: str) -> str:
    """The payment's page in the Temporal UI (the UI opens the latest run)."""
    namespace = quote(settings.temporal_namespace, safe="")
    return f"{settings.temporal_ui_url}/namespaces/{namespace}/workflows/{quote(workflow_id)}"


def literal(value: str) -> str:
    """A string in a visibility query. Departments, states and references never hold
    quotes or backslashes (the API refuses them), so a value that does is a typing error."""
    if any(c in value for c in "'\"\\"):
        raise OpsError(USAGE, "usage", f"quotes and backslashes are not allowed: {value!r}")
    return f"'{value}'"


def workflow_id_of(payment: str) -> str:
    """A payment id (``pay_...``), or its workflow id as the Temporal UI shows it."""
    return payment if payment.startswith("payment-") else payment_workflow_id(payment)


def payment_id_of(workflow_id: str) -> str:
    return workflow_id.removeprefix("payment-")


def step_started_at(wf: WorkflowExecution) -> datetime:
    return wf.typed_search_attributes.get(search.STEP_STARTED_AT) or datetime.max.replace(
        tzinfo=UTC
    )


def timestamp(stamp: Timestamp) -> str:
    return stamp.ToDatetime(tzinfo=UTC).isoformat()


def who_and_why(operator: str, reason: str) -> tuple[str, str]:
    """The operator's identity and reason, both required (they go into the audit trail)."""
    operator, reason = operator.strip(), reason.strip()
    if not operator or not reason:
        raise OpsError(
            REFUSED,
            "operator_identity_required",
            "an operator action needs the operator's identity and a reason",
        )
    return operator, reason
