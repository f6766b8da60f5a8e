"""The departments' catalogue: their services and fees, and where each confirms a payment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from asyncpg import Connection, Pool

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


async def upsert_department(
    conn: Connection, code: str, name_en: str, name_ar: str, confirm_url: str
) -> None:
    """Add a department or update its names and confirmation URL, with its receipt counter."""
    await conn.execute(
        """INSERT INTO departments (code, name_en, name_ar, confirm_url)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (code) DO UPDATE SET name_en = $2, name_ar = $3, confirm_url = $4""",
        code,
        name_en,
        name_ar,
        confirm_url,
    )
    await conn.execute(
        "INSERT INTO receipt_counters (department) VALUES ($1) ON CONFLICT DO NOTHING", code
    )


async def upsert_service(
    conn: Connection,
    department: str,
    code: str,
    name_en: str,
    name_ar: str,
    fee: int | None,
    exempt_from_added_fees: bool,
) -> None:
    """Add a department's service or update its names and fee."""
    await conn.execute(
        """INSERT INTO services (department, code, name_en, name_ar, fee,
               exempt_from_added_fees)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (department, code) DO UPDATE
           SET name_en = $3, name_ar = $4, fee = $5, exempt_from_added_fees = $6""",
        department,
        code,
        name_en,
        name_ar,
        fee,
        exempt_from_added_fees,
    )


async def department_codes(pool: Pool) -> list[str]:
    """Every department's code, in order."""
    return [r["code"] for r in await pool.fetch("SELECT code FROM departments ORDER BY code")]


async def department_exists(pool: Pool, code: str) -> bool:
    return bool(await pool.fetchval("SELECT 1 FROM departments WHERE code = $1", code))
