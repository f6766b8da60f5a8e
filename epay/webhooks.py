"""The webhook outbox moved to store/webhooks.py (the event types to domain/webhooks.py).
This module stays only until its last importer, the payment store (epay/store.py), imports
``store.webhooks`` instead."""

from store.webhooks import record_payment_event, record_refund_event

__all__ = ["record_payment_event", "record_refund_event"]
