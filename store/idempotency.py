"""Idempotency keys of the department API's creating calls: a key names its payment (or, in
its own scope, its refund, store/refunds.py) for 24 hours, with the answer kept once given."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from asyncpg import Pool

IDEMPOTENCY_TTL = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """An earlier, live claim of a key: the request it was made for, the payment it names and,
    once given, the answer kept for replays."""

    request_hash: str
    payment_id: str
    response_status: int | None
    response_body: dict[str, Any] | None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> IdempotencyClaim:
        return cls(
            row["request_hash"], row["payment_id"], row["response_status"], row["response_body"]
        )


async def claim_idempotency_key(
    pool: Pool, department: str, key: str, request_hash: str, payment_id: str
) -> IdempotencyClaim | None:
    """Claim ``key`` for a new request; returns the earlier claim if there is a live one."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "DELETE FROM idempotency_keys WHERE department = $1 AND key = $2 AND created_at < $3",
            department,
            key,
            datetime.now().astimezone() - IDEMPOTENCY_TTL,
        )
        inserted = await conn.fetchval(
            """INSERT INTO idempotency_keys (department, key, request_hash, payment_id)
               VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING 1""",
            department,
            key,
            request_hash,
            payment_id,
        )
        if inserted:
            return None
        row = await conn.fetchrow(
            "SELECT request_hash, payment_id, response_status, response_body FROM idempotency_keys "
            "WHERE department = $1 AND key = $2",
            department,
            key,
        )
        return None if row is None else IdempotencyClaim.of(row)


async def remember_idempotent_response(
    pool: Pool, department: str, key: str, status: int, body: dict[str, Any]
) -> None:
    await pool.execute(
        "UPDATE idempotency_keys SET response_status = $3, response_body = $4 "
        "WHERE department = $1 AND key = $2",
        department,
        key,
        status,
        body,
    )


async def move_idempotency_key(
    pool: Pool, department: str, key: str, from_payment: str, to_payment: str
) -> bool:
    """Point ``key`` at a new payment for another 24 h, if it still names ``from_payment``
    with no answer kept (a concurrent request with the key may have moved it first)."""
    moved = await pool.fetchval(
        """UPDATE idempotency_keys SET payment_id = $4, created_at = now()
           WHERE department = $1 AND key = $2 AND payment_id = $3 AND response_status IS NULL
           RETURNING 1""",
        department,
        key,
        from_payment,
        to_payment,
    )
    return bool(moved)


async def release_idempotency_key(pool: Pool, department: str, key: str) -> None:
    await pool.execute(
        "DELETE FROM idempotency_keys WHERE department = $1 AND key = $2", department, key
    )
