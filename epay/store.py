"""Kept only for the modules not yet moved to the ``store`` package, where the payments'
records now live (``store.payments``, ``store.idempotency``); import from there.

``list_events`` still answers with the audit trail as mappings, as it did with database
rows, for the operator's ``epay ops show``; ``store.payments.list_events`` gives ``EventRow``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from asyncpg import Pool

from store import payments
from store.idempotency import IDEMPOTENCY_TTL as IDEMPOTENCY_TTL
from store.payments import close_unpaid as close_unpaid
from store.payments import record_note as record_note
from store.payments import record_note_in as record_note_in
from store.payments import reserve_fee as reserve_fee


async def get_payment_any_department(pool: Pool, payment_id: str) -> Any:
    """``store.payments.get_payment_any_department``, typed as loosely as the database row it
    answered with before, for the hosted page (api/hosted/), which still reads it by column."""
    return await payments.get_payment_any_department(pool, payment_id)


async def list_events(pool: Pool, payment_id: str) -> list[dict[str, Any]]:
    return [asdict(e) for e in await payments.list_events(pool, payment_id)]
