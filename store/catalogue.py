"""The departments' catalogue: their services and fees, and where each confirms a payment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from asyncpg import Pool

SERVICE_COLUMNS = "code, name_en, name_ar, fee, exempt_from_added_fees"


@dataclass(frozen=True, slots=True)
class ServiceRow:
    code: str
    name_en: str
    name_ar: str
    fee: int | None  # fils; None for a service whose fee the department gives per payment
    exempt_from_added_fees: bool

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> ServiceRow:
        return cls(
            row["code"], row["name_en"], row["name_ar"], row["fee"], row["exempt_from_added_fees"]
        )


async def list_services(pool: Pool, department: str) -> list[ServiceRow]:
    rows = await pool.fetch(
        f"SELECT {SERVICE_COLUMNS} FROM services WHERE department = $1 ORDER BY code",
        department,
    )
    return [ServiceRow.of(r) for r in rows]


async def get_service(pool: Pool, department: str, code: str) -> ServiceRow | None:
    row = await pool.fetchrow(
        f"SELECT {SERVICE_COLUMNS} FROM services WHERE department = $1 AND code = $2",
        department,
        code,
    )
    return None if row is None else ServiceRow.of(row)


async def department_confirm_url(pool: Pool, department: str) -> str:
    url = await pool.fetchval("SELECT confirm_url FROM departments WHERE code = $1", department)
    if url is None:
        raise LookupError(f"unknown department {department}")
    return str(url)
