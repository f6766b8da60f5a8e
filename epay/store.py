"""Kept only for modules not yet moved to the ``store`` package, where the payments' records
now live (``store.payments``, ``store.idempotency``); import from there. No module of the
product uses it any longer: it goes once no branch in progress does."""

from store.idempotency import IDEMPOTENCY_TTL as IDEMPOTENCY_TTL
from store.payments import close_unpaid as close_unpaid
from store.payments import get_payment_any_department as get_payment_any_department
from store.payments import list_events as list_events
from store.payments import record_note as record_note
from store.payments import record_note_in as record_note_in
from store.payments import reserve_fee as reserve_fee
