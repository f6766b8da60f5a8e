"""Inputs and results that cross the workflow boundary (and so are stored in its history).

Nothing here may carry a card number, CVV or PIN: card data reaches a workflow only as the
opaque ``vault_token`` of an encrypted vault entry, resolved inside the authorising activity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from domain.cards import MethodSummary
from domain.money import FeeLine


@dataclass
class PaymentRequest:
    """Everything the workflow needs to run one payment, fixed when the payment starts."""

    payment_id: str
    department: str
    service_code: str
    reference: str
    lines: list[FeeLine]
    payment_window_seconds: int
    confirm_deadline_seconds: int = 1800
    # When the API asked (Unix seconds): for the record only. The workflow times its
    # reservation by Temporal's own clock; the field stays so that older inputs still decode.
    requested_at: float = 0.0
    description: str | None = None
    return_url: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    payer: dict[str, str] | None = None
    # Commitments of the proofs the payer's and the department's updates carry
    # (domain.proofs); empty for payments started before updates were proven.
    update_commitments: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)


@dataclass
class ReservationResult:
    """The answer to ``reserve_fee``: ``ok``, or the reason the reference cannot be paid now."""

    ok: bool
    code: str | None = None  # reference_already_paid / reference_in_progress


@dataclass
class PaymentMethodSubmission:
    """What the payer's authorise call hands the workflow: a summary and a vault token."""

    method: MethodSummary
    vault_token: str
    proof: str = ""  # that ePay's API sent it (domain.proofs)
    # Handed over on the hosted page: a declined method leaves the payment open for another
    # (up to MAX_METHODS a payment). The token API's payer gets the contract's final answer.
    may_try_again: bool = False


class AuthorisationStatus(StrEnum):
    AUTHORISED = "authorised"
    REQUIRES_ACTION = "requires_action"  # a 3-D Secure challenge for the payer
    DECLINED = "declined"  # a final no: ``failure_code`` says why


@dataclass
class AuthorisationResult:
    """The issuer's or acquirer's answer to an authorisation or a 3-D Secure answer."""

    status: AuthorisationStatus
    authorisation_id: str | None = None
    failure_code: str | None = None


@dataclass
class Transition:
    """One recorded change of a payment: the event, and what it adds to the read model."""

    payment_id: str
    event: str  # a PaymentEvent
    actor: str | None = None  # None: the one the event names (domain.states.actor_of)
    method: MethodSummary | None = None
    failure_code: str | None = None
    department_confirmation: str | None = None
    authorisation_id: str | None = None
    detail: str | None = None
    attempt: int = 1  # of the payer's methods: an event recorded once per attempt
    # Closing unpaid only: the department has not yet taken the revocation of its
    # confirmation, which the close records in its own transaction (the sweeper finds it).
    revoke_owed: bool = False


@dataclass
class AuditEntry:
    """Something that happened to a payment without changing its state (an AuditNote)."""

    payment_id: str
    note: str
    actor: str
    detail: str | None = None
    key: str = ""  # tells apart two notes of one kind; the same key is recorded once


@dataclass
class Settlement:
    """What the final step posts: the lines to the ledger, a receipt for the payer."""

    payment_id: str
    department: str
    method_type: str
    lines: list[FeeLine]


@dataclass
class Receipt:
    number: str
    issued_at: str


@dataclass
class PaymentOutcome:
    """What a payment workflow returns when it ends."""

    state: str
    failure_code: str | None = None
    receipt: Receipt | None = None


@dataclass
class AuthoriseRequest:
    payment_id: str
    method_type: str
    vault_token: str
    amount: int
    attempt: int = 1  # the payment's n-th method: its own idempotency keys (attempt_key)


@dataclass
class ChallengeAnswer:
    payment_id: str
    authorisation_id: str
    otp: str
    attempt: int = 1


@dataclass
class FundsRequest:
    """Capture or void of an authorisation (a card authorisation or an e-Dirham hold)."""

    payment_id: str
    method_type: str
    authorisation_id: str
    amount: int
    attempt: int = 1  # the method whose authorisation this is


@dataclass
class DepartmentRequest:
    payment_id: str
    department: str
    reference: str
    service_code: str
    amount: int


@dataclass
class DepartmentAnswer:
    confirmed: bool
    confirmation_reference: str | None = None
    failure_code: str | None = None


@dataclass
class PaymentStatus:
    """A payment workflow's answer to its ``status`` query: where the payment is, whom it
    waits for, since and until when (UTC, ISO 8601), and what it holds."""

    payment_id: str
    department: str
    service_code: str
    reference: str
    amount: int
    state: str | None  # None: not reserved (yet)
    waiting_for: str | None
    doing: str
    step_started_at: str | None
    gives_up_at: str | None
    method: MethodSummary | None
    authorisation_id: str | None
    failure_code: str | None
    cancel_requested: bool
    compensating: bool
    capture_decided: bool
    attempt: int = 0  # of the department confirmation
    last_error: str | None = None


@dataclass
class OperatorAction:
    """An operator's action on a payment (a workflow update): who, and why. Both are
    required and recorded in the payment's audit trail."""

    operator: str  # the operator's identity, e.g. their e-mail address or user id
    reason: str


@dataclass
class OutOfBandConfirmation:
    """A confirmation the department gave outside its system (by phone, by letter), which
    an operator records so that the payment captures and succeeds."""

    operator: str
    reason: str
    confirmation_reference: str  # the department's own reference for it


MAX_METHODS = 3
"""Payment methods a payment takes on the hosted page: after the third decline it fails."""


def attempt_key(payment_id: str, step: str, attempt: int) -> str:
    """The idempotency key of a payment's ``step`` for its ``attempt``-th method.

    The first method's keys are the ones every payment had before a payment could take a
    second method, so that a retry of a call made then finds its first answer.
    """
    key = f"{payment_id}:{step}"
    return key if attempt == 1 else f"{key}#{attempt}"
