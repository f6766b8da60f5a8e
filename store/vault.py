"""The card vault: a payment method's card data, sealed, from the payer's call until the
issuer or acquirer has it (activities read it once, by its vault token)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from asyncpg import Connection, Pool


@dataclass(frozen=True, slots=True)
class VaultEntry:
    """Sealed card data: ``crypto.unseal`` opens it with the vault key, the token and the
    payment id (the associated data)."""

    token: str
    payment_id: str
    nonce: bytes
    ciphertext: bytes

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> VaultEntry:
        return cls(row["token"], row["payment_id"], row["nonce"], row["ciphertext"])


async def vault_put(
    pool: Pool, token: str, payment_id: str, nonce: bytes, ciphertext: bytes
) -> None:
    await pool.execute(
        "INSERT INTO card_vault (token, payment_id, nonce, ciphertext) VALUES ($1, $2, $3, $4)",
        token,
        payment_id,
        nonce,
        ciphertext,
    )


async def vault_get(pool: Pool, token: str) -> VaultEntry | None:
    row = await pool.fetchrow(
        "SELECT token, payment_id, nonce, ciphertext FROM card_vault WHERE token = $1", token
    )
    return None if row is None else VaultEntry.of(row)


async def vault_discard(pool: Pool, token: str) -> None:
    await pool.execute("DELETE FROM card_vault WHERE token = $1", token)


async def forget_payment(conn: Connection, payment_id: str) -> None:
    """Delete whatever card data the payment still holds, in the caller's transaction (the
    one that records why it is no longer needed)."""
    await conn.execute("DELETE FROM card_vault WHERE payment_id = $1", payment_id)
