"""The departments' signing secrets in PostgreSQL, sealed (domain/signing.py signs with them).

ePay must be able to read a secret back to sign with it, so it is kept sealed with
AES-256-GCM under a key derived from ``EPAY_TOKEN_SECRET`` (the department and the row's id
as associated data), not hashed like an API key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from datetime import datetime

from asyncpg import Pool
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from domain import signing


def _key(token_secret: bytes) -> bytes:
    return hmac.new(token_secret, b"epay-department-signing", hashlib.sha256).digest()


def _aad(department: str) -> bytes:
    return f"department-signing:{department}".encode()


@dataclass(frozen=True, slots=True)
class SigningSecret:
    """A department's secret, unsealed: what ePay signs its calls to the department with."""

    id: int
    department: str
    secret: str
    created_at: datetime


async def create(pool: Pool, token_secret: bytes, department: str) -> SigningSecret:
    """A new active secret for ``department``; the ones it had stay active (the overlap)."""
    secret = signing.new_secret()
    nonce = os.urandom(12)
    sealed = AESGCM(_key(token_secret)).encrypt(nonce, secret.encode(), _aad(department))
    row = await pool.fetchrow(
        """INSERT INTO department_signing_secrets (department, nonce, sealed)
           VALUES ($1, $2, $3) RETURNING id, created_at""",
        department,
        nonce,
        sealed,
    )
    assert row is not None
    return SigningSecret(row["id"], department, secret, row["created_at"])


async def active(pool: Pool, token_secret: bytes, department: str) -> list[SigningSecret]:
    """The department's active secrets, newest first."""
    rows = await pool.fetch(
        """SELECT id, nonce, sealed, created_at FROM department_signing_secrets
           WHERE department = $1 AND retired_at IS NULL ORDER BY id DESC""",
        department,
    )
    cipher = AESGCM(_key(token_secret))
    return [
        SigningSecret(
            r["id"],
            department,
            cipher.decrypt(r["nonce"], r["sealed"], _aad(department)).decode(),
            r["created_at"],
        )
        for r in rows
    ]


async def retire(pool: Pool, department: str, secret_id: int) -> bool:
    """End a secret's overlap: ePay no longer signs with it. False if there was none such,
    or if it is the department's last active secret (a department is never left unsigned)."""
    async with pool.acquire() as conn, conn.transaction():
        ids = [
            r["id"]
            for r in await conn.fetch(
                """SELECT id FROM department_signing_secrets
                   WHERE department = $1 AND retired_at IS NULL FOR UPDATE""",
                department,
            )
        ]
        if secret_id not in ids or len(ids) == 1:
            return False
        await conn.execute(
            "UPDATE department_signing_secrets SET retired_at = now() WHERE id = $1", secret_id
        )
        return True
