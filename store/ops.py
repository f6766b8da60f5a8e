"""What ``epay ops`` writes itself: the clearance of a payment's wrong-PIN counts.

The rest of what the operators' commands read and write goes through the payments' and the
sweeper's own queries (the audit trail, ``close_unpaid``, ``left_to_operator``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from asyncpg import Pool

from domain.models import AuditEntry
from domain.states import Actor, AuditNote
from store import payments

# The e-Dirham cards tried on a payment, and those the wrong-PIN limit refused on it (whose
# method never reached payer_attempts): by their keyed hashes, never a number.
_CARDS_OF_PAYMENT = """
    SELECT card_key FROM payer_attempts WHERE payment_id = $1 AND method_type = 'e_dirham'
    UNION
    SELECT card_key FROM pin_limit_refusals WHERE payment_id = $1"""


@dataclass(frozen=True, slots=True)
class PinLimitClearance:
    """What clearing a payment's wrong-PIN counts did. ``cards`` 0: no e-Dirham card was
    tried on the payment, and nothing was written (``cleared_at`` None)."""

    payment_state: str
    cards: int
    cleared_at: datetime | None


async def clear_pin_limit(
    pool: Pool, payment_id: str, operator: str, reason: str
) -> PinLimitClearance | None:
    """Clear the wrong-PIN count of every e-Dirham card tried on the payment: a row in
    ``pin_limit_clearances`` per card and a ``pin_limit_cleared`` note in the payment's audit
    trail (the operator and the reason), in one transaction. None if there is no such
    payment. The payment's state does not matter: it may have ended."""
    async with pool.acquire() as conn, conn.transaction():
        state: str | None = await conn.fetchval(
            "SELECT state FROM payments WHERE id = $1", payment_id
        )
        if state is None:
            return None
        cards: list[bytes] = [
            r["card_key"] for r in await conn.fetch(_CARDS_OF_PAYMENT, payment_id)
        ]
        if not cards:
            return PinLimitClearance(state, 0, None)
        cleared = await conn.fetch(
            """INSERT INTO pin_limit_clearances (card_key, payment_id, operator, reason)
               SELECT card, $2, $3, $4 FROM unnest($1::bytea[]) AS card
               RETURNING id, created_at""",
            cards,
            payment_id,
            operator,
            reason,
        )
        await payments.record_note_in(
            conn,
            AuditEntry(
                payment_id,
                AuditNote.PIN_LIMIT_CLEARED,
                Actor.OPERATOR,
                f"{operator}: {reason}",
                key=str(cleared[0]["id"]),
            ),
        )
    created_at: datetime = cleared[0]["created_at"]
    return PinLimitClearance(state, len(cards), created_at)
