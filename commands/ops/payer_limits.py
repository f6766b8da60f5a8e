"""``epay ops clear-pin-limit``: the wrong-PIN count of the e-Dirham cards tried on a payment."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from commands.ops.common import (
    NOT_FOUND,
    REFUSED,
    OpsError,
    payment_id_of,
    who_and_why,
    workflow_id_of,
)
from epay.config import Settings
from epay.db import create_pool
from store import ops as store


async def clear_pin_limit(
    settings: Settings, payment: str, operator: str, reason: str
) -> dict[str, Any]:
    """End the wrong-PIN count of the e-Dirham cards tried on ``payment``: each card's count
    starts again after this clearance (api/abuse.py). Recorded with the operator and reason in
    ``pin_limit_clearances`` and in the payment's audit trail, in one transaction. The
    payment may have ended, its workflow with it: this is the database's alone."""
    payment_id = payment_id_of(workflow_id_of(payment))
    operator, reason = who_and_why(operator, reason)
    pool = await create_pool(settings.require_database_url(), max_size=1)
    try:
        cleared = await store.clear_pin_limit(pool, payment_id, operator, reason)
    finally:
        await pool.close()
    if cleared is None:
        raise OpsError(NOT_FOUND, "payment_not_found", f"no payment {payment_id}")
    if cleared.cleared_at is None:
        raise OpsError(
            REFUSED,
            "no_e_dirham_attempt",
            f"no e-Dirham card was tried on {payment_id}: no wrong-PIN count to clear",
        )
    return {
        "payment_id": payment_id,
        "action": "clear-pin-limit",
        "state": cleared.payment_state,
        "cards": cleared.cards,
        "cleared_at": cleared.cleared_at.astimezone(UTC).isoformat(),
    }
