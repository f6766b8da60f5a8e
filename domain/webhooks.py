"""The webhook events a department can take, and when a delivery is attempted.

An event tells of one payment's or refund's end state (``payment.succeeded``,
``payment.failed``, ``payment.cancelled``, ``payment.expired``, ``refund.succeeded``,
``refund.failed``). Its delivery (workflows/webhook.py) is tried at once and then retried
on ``SCHEDULE`` until each endpoint has accepted it or the schedule is spent.
"""

from __future__ import annotations

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
