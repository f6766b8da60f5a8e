"""The payment state machine, written down once.

Every state change a payment can make is a row of ``TRANSITIONS``: the event that causes
it (named in the past tense, with its cause where there are several, as
``cancelled_by_department`` and ``cancelled_by_operator``), the states it may happen in and
the state it leads to. The workflow asks for events by name, the store checks each against
this table before it records it in the audit trail, and the API serves the states as they
are named here. Audit notes record what happened to a payment without changing its state.
``python -m domain.states`` prints the table that ``docs/design.md`` shows.
"""

from __future__ import annotations

from enum import StrEnum


class PaymentState(StrEnum):
    RESERVED = "reserved"
    AUTHORISING = "authorising"
    REQUIRES_ACTION = "requires_action"
    CONFIRMING = "confirming"
    CAPTURING = "capturing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


class PaymentEvent(StrEnum):
    """What moves a payment from one state to the next."""

    FEE_RESERVED = "fee_reserved"
    METHOD_SUBMITTED = "method_submitted"
    CHALLENGE_REQUIRED = "challenge_required"
    CHALLENGE_PASSED = "challenge_passed"
    AUTHORISED = "authorised"
    # The hosted page's payer may try another method: the payment waits for it again.
    METHOD_DECLINED = "method_declined"
    DEPARTMENT_CONFIRMED = "department_confirmed"
    CAPTURED = "captured"
    FAILED = "failed"  # the failure code says why
    CANCELLED_BY_DEPARTMENT = "cancelled_by_department"
    CANCELLED_BY_OPERATOR = "cancelled_by_operator"
    EXPIRED = "expired"


class AuditNote(StrEnum):
    """Recorded in a payment's audit trail without changing its state."""

    # A Temporal cancel arrived after the department had granted the service: the payment
    # finishes (capture and settle) instead of stopping half-way.
    OPERATOR_CANCEL_REFUSED = "operator_cancel_refused"
    # The payer's money is released and the payment has ended, but the department has not
    # yet taken the revocation of its confirmation: it is still being retried.
    DEPARTMENT_REVOKE_PENDING = "department_revoke_pending"
    DEPARTMENT_REVOKED = "department_revoked"
    # Operators' actions (workflow updates), each with the operator's identity and reason.
    OPERATOR_RETRY_REQUESTED = "operator_retry_requested"
    OPERATOR_CANCEL_REQUESTED = "operator_cancel_requested"
    CONFIRMATION_RECORDED = "department_confirmation_recorded"
    # The payment's workflow closed after the department had granted the service: the
    # sweeper captures and settles it.
    FINISHED_BY_SWEEPER = "finished_by_sweeper"
    # The sweeper found the payment stranded but cannot end it safely on its own (capture
    # was decided, yet the authorisation to capture is not known).
    NEEDS_OPERATOR = "needs_operator"
    # The issuer or acquirer refused for good to void or reverse an authorisation (it was
    # captured, or it does not know it): ePay holds nothing more, and an operator checks
    # with the partner (``epay ops resolve``).
    VOID_REFUSED = "void_refused"
    # An operator ended what the sweeper left to an operator (``epay ops resolve``).
    OPERATOR_RESOLVED = "operator_resolved"
    # An operator cleared the wrong-PIN count of the e-Dirham cards tried on the payment
    # (``epay ops clear-pin-limit``, written by the command, not the workflow).
    PIN_LIMIT_CLEARED = "pin_limit_cleared"


class Actor(StrEnum):
    """Who caused an event: recorded with it in the audit trail."""

    WORKFLOW = "workflow"
    DEPARTMENT = "department"
    PAYER = "payer"
    OPERATOR = "operator"
    SWEEPER = "sweeper"


TERMINAL_STATES = frozenset(
    {PaymentState.SUCCEEDED, PaymentState.FAILED, PaymentState.CANCELLED, PaymentState.EXPIRED}
)

S = PaymentState
E = PaymentEvent
_BEFORE_CAPTURE = (S.RESERVED, S.AUTHORISING, S.REQUIRES_ACTION, S.CONFIRMING)

# event -> (states it may happen in, state it leads to)
TRANSITIONS: dict[PaymentEvent, tuple[tuple[PaymentState, ...], PaymentState]] = {
    E.FEE_RESERVED: ((), S.RESERVED),  # the first event: the payment comes into being
    E.METHOD_SUBMITTED: ((S.RESERVED,), S.AUTHORISING),
    E.CHALLENGE_REQUIRED: ((S.AUTHORISING,), S.REQUIRES_ACTION),
    E.CHALLENGE_PASSED: ((S.REQUIRES_ACTION,), S.AUTHORISING),
    E.AUTHORISED: ((S.AUTHORISING,), S.CONFIRMING),
    E.METHOD_DECLINED: ((S.AUTHORISING, S.REQUIRES_ACTION), S.RESERVED),
    E.DEPARTMENT_CONFIRMED: ((S.CONFIRMING,), S.CAPTURING),
    E.CAPTURED: ((S.CAPTURING,), S.SUCCEEDED),
    E.FAILED: ((*_BEFORE_CAPTURE, S.CAPTURING), S.FAILED),
    E.CANCELLED_BY_DEPARTMENT: (_BEFORE_CAPTURE, S.CANCELLED),
    E.CANCELLED_BY_OPERATOR: (_BEFORE_CAPTURE, S.CANCELLED),
    # From authorising too: a payer's method whose update was lost with its workflow task
    # (the record written, the workflow still waiting) may never be followed by another.
    E.EXPIRED: ((S.RESERVED, S.AUTHORISING, S.REQUIRES_ACTION), S.EXPIRED),
}

# The actor an event names; every other event is the workflow's own doing.
ACTOR_OF: dict[PaymentEvent, Actor] = {
    E.CANCELLED_BY_DEPARTMENT: Actor.DEPARTMENT,
    E.CANCELLED_BY_OPERATOR: Actor.OPERATOR,
}

# Whom a payment in each state waits for: what tells an operator a payment stuck with a
# department that is down from one waiting for its payer.
WAITING_FOR: dict[PaymentState, str] = {
    S.RESERVED: "payer",
    S.AUTHORISING: "payment_method",  # the e-Dirham issuer or the card acquirer
    S.REQUIRES_ACTION: "payer",
    S.CONFIRMING: "department",
    S.CAPTURING: "payment_method",
    S.SUCCEEDED: "nobody",
    S.FAILED: "nobody",
    S.CANCELLED: "nobody",
    S.EXPIRED: "nobody",
}

CANCELLABLE_STATES = frozenset(_BEFORE_CAPTURE)
"""Before capture a payment can still be cancelled; from capture on it can only be refunded."""


class IllegalTransition(Exception):
    """Raised when an event is not allowed in the payment's current state."""


def transition(current: PaymentState | None, event: str) -> PaymentState:
    """The state that ``event`` leads to from ``current``, or ``IllegalTransition``."""
    try:
        allowed_from, target = TRANSITIONS[PaymentEvent(event)]
    except ValueError:
        raise IllegalTransition(f"unknown event {event!r}") from None
    if current is None and allowed_from == ():
        return target
    if current not in allowed_from:
        raise IllegalTransition(f"{event!r} is not allowed in state {current}")
    return target


def actor_of(event: str) -> Actor:
    """Who causes ``event``: named by the event itself, else the workflow."""
    try:
        return ACTOR_OF.get(PaymentEvent(event), Actor.WORKFLOW)
    except ValueError:
        return Actor.WORKFLOW


def transition_table() -> str:
    """The transition table as Markdown, for ``docs/design.md``."""
    rows = ["| event | from | to | actor |", "| --- | --- | --- | --- |"]  # one per event
    for event, (sources, target) in TRANSITIONS.items():
        source = ", ".join(f"`{s}`" for s in sources) or "(new)"
        rows.append(f"| `{event}` | {source} | `{target}` | {actor_of(event)} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(transition_table())
