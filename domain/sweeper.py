"""What the sweeper's workflow and activities exchange (and so store in its history).

A payment is *stranded* when its read model is still open but its workflow is no longer
running (terminated, cancelled or failed in Temporal, or gone): nothing will ever finish it.
Nothing here carries card data or the payer's details.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from domain.money import FeeLine

DEFAULT_GRACE_SECONDS = 120
"""A payment changed less than this long ago is left alone: it may be starting right now."""
CARD_DATA_MARGIN_SECONDS = 15 * 60
"""Card data is kept at most the payment window plus this margin, whatever happened."""
DEFAULT_BATCH = 100
"""At most this many stranded payments per run; the next run takes the rest."""

NOT_FOUND = "not_found"
"""The workflow status of a payment whose workflow Temporal does not know (any more)."""
STOPPED_BY_OPERATOR = frozenset({"terminated", "canceled"})
"""Workflow statuses an operator causes: the payment ends ``cancelled_by_operator``."""


@dataclass
class SweepRequest:
    """One sweep's parameters (the schedule's workflow input)."""

    card_data_max_age_seconds: int
    grace_seconds: int = DEFAULT_GRACE_SECONDS
    batch: int = DEFAULT_BATCH


@dataclass
class FindStranded:
    grace_seconds: int
    limit: int


@dataclass
class MethodAttempt:
    """One of the payer's methods on a payment: the n-th, e-Dirham or card."""

    attempt: int
    method_type: str


@dataclass
class StrandedPayment:
    """A stranded payment, as the read model has it: enough to undo or finish it."""

    payment_id: str
    state: str  # an open PaymentState
    workflow_status: str  # a WorkflowExecutionStatus name, lower case, or NOT_FOUND
    department: str
    service_code: str
    reference: str
    amount: int
    lines: list[FeeLine]
    method_type: str | None = None
    authorisation_id: str | None = None
    # The payer's method the payment is on (declines + 1; the hosted page takes another
    # after a decline), and those declined before it: each authorised under keys of its own
    # (domain.models.attempt_key), so each is reversed under its own.
    attempt: int = 1
    earlier_methods: list[MethodAttempt] = field(default_factory=list)

    def methods_to_release(self) -> list[tuple[MethodAttempt, str]]:
        """Every method whose hold or authorisation may be open, with the authorisation id
        to void it by ("" to reverse its authorising call by its idempotency key instead):
        the declined ones first, then the one the payment is on."""
        found = [
            (earlier, "")
            for earlier in self.earlier_methods
            if not (self.method_type and earlier.attempt == self.attempt)
        ]
        if self.method_type:
            found.append(
                (MethodAttempt(self.attempt, self.method_type), self.authorisation_id or "")
            )
        return found


class SweepOutcome(StrEnum):
    CANCELLED = "cancelled"  # undone, ended cancelled_by_operator
    ABANDONED = "abandoned"  # undone, ended failed / payment_abandoned
    SUCCEEDED = "succeeded"  # capture was decided: captured and settled
    CAPTURE_FAILED = "capture_failed"  # the partner refused the capture for good: undone
    # Capture was decided but cannot be done safely, or a void was refused for good:
    # recorded in the audit trail for ``epay ops resolve``.
    NEEDS_OPERATOR = "needs_operator"
    REVOKED = "revoked"  # already ended: the department's confirmation is now revoked
    ERROR = "error"  # a call failed; the next run tries again


@dataclass
class SweptPayment:
    payment_id: str
    outcome: SweepOutcome
    detail: str


@dataclass
class SweepSummary:
    """What one run did: the counts, and each stranded payment it looked at."""

    stranded: int = 0
    cancelled: int = 0
    abandoned: int = 0
    succeeded: int = 0
    capture_failed: int = 0
    needs_operator: int = 0
    revoked: int = 0
    errors: int = 0
    card_data_deleted: int = 0
    refunds_restarted: list[str] = field(default_factory=list)  # refund ids
    payments: list[SweptPayment] = field(default_factory=list)

    def add(self, swept: SweptPayment) -> None:
        self.payments.append(swept)
        match swept.outcome:
            case SweepOutcome.CANCELLED:
                self.cancelled += 1
            case SweepOutcome.ABANDONED:
                self.abandoned += 1
            case SweepOutcome.SUCCEEDED:
                self.succeeded += 1
            case SweepOutcome.CAPTURE_FAILED:
                self.capture_failed += 1
            case SweepOutcome.NEEDS_OPERATOR:
                self.needs_operator += 1
            case SweepOutcome.REVOKED:
                self.revoked += 1
            case SweepOutcome.ERROR:
                self.errors += 1
