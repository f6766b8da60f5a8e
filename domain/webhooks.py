"""The webhook events a department can take, and when a delivery is attempted.

An event tells of one payment's or refund's end state (``payment.succeeded``,
``payment.failed``, ``payment.cancelled``, ``payment.expired``, ``refund.succeeded``,
``refund.failed``). Its delivery (workflows/webhook.py) is tried at once and then retried
on ``SCHEDULE`` until each endpoint has accepted it or the schedule is spent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

#: The event of each end state of a payment, and of a refund.
PAYMENT_EVENTS = {
    "succeeded": "payment.succeeded",
    "failed": "payment.failed",
    "cancelled": "payment.cancelled",
    "expired": "payment.expired",
}
REFUND_EVENTS = {"succeeded": "refund.succeeded", "failed": "refund.failed"}
EVENT_TYPES = (*PAYMENT_EVENTS.values(), *REFUND_EVENTS.values())
SCHEDULE = (
    timedelta(0),
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(hours=1),
    timedelta(days=1),
    timedelta(days=2),
)
"""When each attempt is made, counted from the one before: at once, then the retries."""


@dataclass
class Delivery:
    """What starts an event's delivery workflow (workflows/webhook.py)."""

    event_id: str
    # seconds to wait before each retry, after the first attempt
    retry_after_seconds: list[int] = field(
        default_factory=lambda: [int(wait.total_seconds()) for wait in SCHEDULE[1:]]
    )
    since_delivery: int = 0  # a redelivery: what was accepted up to this log id is sent again


@dataclass
class DeliveryOutcome:
    """How a delivery ended: every endpoint accepted the event, or the schedule was spent."""

    delivered: bool
    attempts: int


@dataclass
class DeliveryAttempt:
    """One attempt's activity input: the endpoints still waiting for the event are sent it."""

    event_id: str
    attempt: int
    since_delivery: int = 0  # deliveries logged up to this id do not count (a redelivery)
