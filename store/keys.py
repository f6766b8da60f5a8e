"""The departments' API keys: only a key's hash is kept, the key itself is shown once."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asyncpg import Pool

from epay import crypto


@dataclass(frozen=True, slots=True)
class ApiKeyRow:
    """One of a department's keys, as ``epay departments keys`` lists it (never the key)."""

    id: str
    label: str | None
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> ApiKeyRow:
        return cls(row["id"], row["label"], row["created_at"], row["revoked_at"])


async def create_api_key(pool: Pool, department: str, label: str) -> str:
    """A new API key for ``department`` (LookupError if there is no such department): only
    its hash is kept, the key itself is returned once."""
    if not await pool.fetchval("SELECT 1 FROM departments WHERE code = $1", department):
        raise LookupError(department)
    key = crypto.new_api_key()
    await add_api_key(
        pool, "key_" + uuid.uuid4().hex[:12], department, crypto.hash_api_key(key), label
    )
    return key


async def department_for_key(pool: Pool, key_hash: bytes) -> str | None:
    department: str | None = await pool.fetchval(
        "SELECT department FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL", key_hash
    )
    return department


async def add_api_key(
    pool: Pool, key_id: str, department: str, key_hash: bytes, label: str
) -> None:
    await pool.execute(
        "INSERT INTO api_keys (id, department, key_hash, label) VALUES ($1, $2, $3, $4)",
        key_id,
        department,
        key_hash,
        label,
    )


async def revoke_api_key(pool: Pool, key_id: str) -> bool:
    status = await pool.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", key_id
    )
    return bool(status.endswith(" 1"))


async def list_api_keys(pool: Pool, department: str) -> list[ApiKeyRow]:
    rows = await pool.fetch(
        "SELECT id, label, created_at, revoked_at FROM api_keys WHERE department = $1 "
        "ORDER BY created_at",
        department,
    )
    return [ApiKeyRow.of(r) for r in rows]
