"""Refunds: how a refund splits over a payment's lines, and what crosses the refund workflow.

A payment may be refunded several times, in full or in part, up to its total. Each refund
says which lines it returns, because the ledger reverses each line's account on its own:
the service fee is the department's money, the Knowledge Dirham and the Innovation Dirham
belong to their funds.

The policy (docs/api.md, "Refunds"): **the service fee is refunded first**; the Knowledge
Dirham and then the Innovation Dirham only once the service fee has been refunded in full.
A partial refund returns the department's money (the department is the one that decides to
refund: a fine reduced on appeal, a service not delivered), and the two funds are reversed
only by a refund that reaches them, that is one that takes the payment's refunds past its
service fee. A full refund returns every line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from domain import ledger
from domain.cards import MethodType
from domain.money import FeeLine

REFUND_ORDER = ("service_fee", "knowledge_fee", "innovation_fee")
"""The order in which a payment's lines are refunded."""


class RefundState(StrEnum):
    PENDING = "pending"  # the workflow is returning the money
    SUCCEEDED = "succeeded"  # the money went back and the ledger reversed it
    FAILED = "failed"  # nothing went back: the amount is free to refund again


class RefundFailure(StrEnum):
    REFUSED = "refund_refused"  # the acquirer or issuer refused the refund, explicitly
    NOT_STARTED = "refund_not_started"  # its workflow could not be started; nothing moved


MESSAGES: dict[RefundFailure, str] = {
    RefundFailure.REFUSED: "The card acquirer or the e-Dirham issuer refused the refund.",
    RefundFailure.NOT_STARTED: "The refund could not be started; nothing was refunded.",
}


def failure_message(code: str) -> str:
    try:
        return MESSAGES[RefundFailure(code)]
    except ValueError:
        return "The refund failed."


def split_refund(
    lines: Sequence[FeeLine], already_refunded_by_code: Mapping[str, int], amount: int
) -> list[tuple[str, int]]:
    """How ``amount`` (fils) splits over the payment's ``lines``, given what earlier refunds
    that did not fail returned of each line: (line code, fils) pairs, in REFUND_ORDER, each
    above zero, summing to ``amount``.

    Raises ValueError when ``amount`` is not above zero or passes what is left to refund.
    """
    if amount <= 0:
        raise ValueError("a refund is more than zero fils")
    left = {line.code: 0 for line in lines}
    for line in lines:
        left[line.code] += line.amount
    for code, refunded in already_refunded_by_code.items():
        left[code] = left.get(code, 0) - refunded
    if any(value < 0 for value in left.values()):
        raise ValueError("earlier refunds returned more of a line than it holds")
    if amount > sum(left.values()):
        raise ValueError("the refund passes what is left of the payment")
    order = [c for c in REFUND_ORDER if c in left] + [c for c in left if c not in REFUND_ORDER]
    parts: list[tuple[str, int]] = []
    remaining = amount
    for code in order:
        share = min(left[code], remaining)
        if share > 0:
            parts.append((code, share))
            remaining -= share
    return parts


def refund_workflow_id(refund_id: str) -> str:
    return f"refund-{refund_id}"


def idempotency_scope(key: str) -> str:
    """The ``idempotency_keys`` row of a refund request's key: the same table as the
    payments' keys, under a name no payment key can have (an HTTP header value holds no
    line feed), the caller's key hashed so that any 255-character key fits."""
    return "refund\n" + hashlib.sha256(key.encode()).hexdigest()


def request_hash(payment_id: str, amount: int, reason: str | None) -> str:
    """What a refund request's key is bound to: the same key with another request is
    refused (``idempotency_key_reused``)."""
    canonical = json.dumps(
        {"payment_id": payment_id, "amount": amount, "reason": reason},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- what crosses the refund workflow's boundary (stored in its history, encrypted) ---------


@dataclass
class RefundRequest:
    """Everything the refund workflow needs, fixed when the refund is created. No card data:
    the money goes back through the authorisation (or hold) the payment was captured on."""

    refund_id: str
    payment_id: str
    department: str
    reference: str  # the payment's, for the department's notice
    method_type: MethodType
    authorisation_id: str
    amount: int
    lines: list[FeeLine]  # how the amount splits over the payment's lines


@dataclass
class RefundCall:
    """Return ``amount`` through the payment's method (idempotency key ``<refund id>:refund``)."""

    refund_id: str
    method_type: str
    authorisation_id: str
    amount: int


@dataclass
class RefundSettlement:
    """The reversing journal, posted with the refund's ``succeeded`` in one transaction."""

    refund_id: str
    payment_id: str
    department: str
    method_type: str
    lines: list[FeeLine]


@dataclass
class RefundFailed:
    refund_id: str
    failure_code: str
    detail: str | None = None


@dataclass
class RefundNotice:
    """What the department is told (``POST {confirm_url}/refunds``, key ``<refund id>:notice``)."""

    refund_id: str
    payment_id: str
    department: str
    reference: str
    amount: int


@dataclass
class RefundOutcome:
    state: str
    failure_code: str | None = None


def refund_postings(s: RefundSettlement) -> list[tuple[str, int]]:
    """A refund's reversing entries: the capture's postings of the refunded lines, negated
    (credit the funds source by the amount, debit each line's account by its share)."""
    return ledger.refund_postings(s.method_type, s.department, s.lines)
