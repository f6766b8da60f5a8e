"""Failure codes a payment can end with, and which of them are the payer's to fix."""

from __future__ import annotations

from enum import StrEnum


class FailureCode(StrEnum):
    CARD_DECLINED = "card_declined"
    CARD_EXPIRED = "card_expired"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    INVALID_PIN = "invalid_pin"
    PIN_LOCKED = "pin_locked"
    CARD_BLOCKED = "card_blocked"
    THREE_DS_FAILED = "three_ds_failed"
    DEPARTMENT_REJECTED = "department_rejected"
    DEPARTMENT_UNAVAILABLE = "department_unavailable"
    PAYMENT_WINDOW_EXPIRED = "payment_window_expired"
    CAPTURE_FAILED = "capture_failed"
    AUTHORISATION_FAILED = "authorisation_failed"
    RESERVATION_FAILED = "reservation_failed"
    PAYMENT_ABANDONED = "payment_abandoned"


class ErrorType(StrEnum):
    """Types of the final errors activities raise, which the workflows tell apart."""

    AUTHORISATION_FAILED = "authorisation_failed"  # the partner's final "no" to a method
    CAPTURE_REFUSED = "capture_refused"  # the partner's explicit, final refusal of a capture
    VOID_REFUSED = "void_refused"  # its final refusal of a void or reversal
    REFUND_REFUSED = "refund_refused"  # its explicit refusal of a refund
    DEPARTMENT_ERROR = "department_error"  # the department's system refused the call for good
    DATABASE_UNAVAILABLE = "database_unavailable"  # a database step to try again later


class UpdateRefusal(StrEnum):
    """Why the payment workflow's validators refuse an update (the API answers 409 for them)."""

    NOT_AWAITING_METHOD = "not_awaiting_method"
    NOT_AWAITING_CHALLENGE = "not_awaiting_challenge"
    NOT_CANCELLABLE = "not_cancellable"
    NOT_AWAITING_DEPARTMENT = "not_awaiting_department"
    INVALID_CONFIRMATION_REFERENCE = "invalid_confirmation_reference"
    UPDATE_NOT_PROVEN = "update_not_proven"
    OPERATOR_IDENTITY_REQUIRED = "operator_identity_required"


MESSAGES: dict[FailureCode, str] = {
    FailureCode.CARD_DECLINED: "The card was declined.",
    FailureCode.CARD_EXPIRED: "The card has expired.",
    FailureCode.INSUFFICIENT_FUNDS: "The e-Dirham card does not have enough balance.",
    FailureCode.INVALID_PIN: "The PIN is not correct.",
    FailureCode.PIN_LOCKED: "The card is locked after too many wrong PINs.",
    FailureCode.CARD_BLOCKED: "The card is blocked.",
    FailureCode.THREE_DS_FAILED: "The 3-D Secure check failed.",
    FailureCode.DEPARTMENT_REJECTED: "The department refused the payment.",
    FailureCode.DEPARTMENT_UNAVAILABLE: "The department could not be reached in time.",
    FailureCode.PAYMENT_WINDOW_EXPIRED: "The payment was not completed within its payment window.",
    FailureCode.CAPTURE_FAILED: "The funds could not be captured.",
    FailureCode.AUTHORISATION_FAILED: "The payment method could not be authorised.",
    FailureCode.RESERVATION_FAILED: "The fee could not be reserved.",
    FailureCode.PAYMENT_ABANDONED: "The payment stopped before it could finish; nothing was taken.",
}

# Codes an issuer, acquirer or department may answer with for a final "no".
DECLINE_CODES = frozenset(
    {
        FailureCode.CARD_DECLINED,
        FailureCode.CARD_EXPIRED,
        FailureCode.INSUFFICIENT_FUNDS,
        FailureCode.INVALID_PIN,
        FailureCode.PIN_LOCKED,
        FailureCode.CARD_BLOCKED,
        FailureCode.THREE_DS_FAILED,
    }
)


def message_for(code: str) -> str:
    try:
        return MESSAGES[FailureCode(code)]
    except ValueError:
        return "The payment failed."
