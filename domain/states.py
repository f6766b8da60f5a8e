"""The payment state machine, written down once.

Every state change a payment can make is a row of ``TRANSITIONS``: from which states, to
which state, caused by which event. The workflow asks ``transition`` before it records a
change, the store records the event name in the audit trail, and the API serves the states
as they are named here.
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


TERMINAL_STATES = frozenset(
    {PaymentState.SUCCEEDED, PaymentState.FAILED, PaymentState.CANCELLED, PaymentState.EXPIRED}
)

S = PaymentState
_BEFORE_CAPTURE = (S.RESERVED, S.AUTHORISING, S.REQUIRES_ACTION, S.CONFIRMING)

# event name -> (states it may happen in, state it leads to)
TRANSITIONS: dict[str, tuple[tuple[PaymentState, ...], PaymentState]] = {
    "fee_reserved": ((), S.RESERVED),  # the first event: the payment comes into being
    "method_submitted": ((S.RESERVED,), S.AUTHORISING),
    "challenge_required": ((S.AUTHORISING,), S.REQUIRES_ACTION),
    "challenge_passed": ((S.REQUIRES_ACTION,), S.AUTHORISING),
    "authorised": ((S.AUTHORISING,), S.CONFIRMING),
    "department_confirmed": ((S.CONFIRMING,), S.CAPTURING),
    "captured": ((S.CAPTURING,), S.SUCCEEDED),
    "failed": ((*_BEFORE_CAPTURE, S.CAPTURING), S.FAILED),
    "cancelled": (_BEFORE_CAPTURE, S.CANCELLED),
    "expired": ((S.RESERVED, S.REQUIRES_ACTION), S.EXPIRED),
}

CANCELLABLE_STATES = frozenset(_BEFORE_CAPTURE)
"""Before capture a payment can still be cancelled; from capture on it can only be refunded."""


class IllegalTransition(Exception):
    """Raised when an event is not allowed in the payment's current state."""


def transition(current: PaymentState | None, event: str) -> PaymentState:
    """The state that ``event`` leads to from ``current``, or ``IllegalTransition``."""
    try:
        allowed_from, target = TRANSITIONS[event]
    except KeyError:
        raise IllegalTransition(f"unknown event {event!r}") from None
    if current is None and allowed_from == ():
        return target
    if current not in allowed_from:
        raise IllegalTransition(f"{event!r} is not allowed in state {current}")
    return target
