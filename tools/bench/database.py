"""The stack's database counters (``pg_stat_database``) over a phase."""

from __future__ import annotations

from typing import Any

import asyncpg


async def database_counters(dsn: str) -> dict[str, Any]:
    """The database's transactions and rows so far, and the rows each table has had read by
    sequential scans (those grow with the table, where an index scan would not)."""
    conn = await asyncpg.connect(dsn)
    try:
        totals = await conn.fetchrow(
            """SELECT xact_commit + xact_rollback AS transactions, tup_returned AS rows_scanned,
                      tup_inserted + tup_updated + tup_deleted AS rows_written
               FROM pg_stat_database WHERE datname = current_database()"""
        )
        tables = await conn.fetch("SELECT relname, seq_tup_read FROM pg_stat_user_tables")
    finally:
        await conn.close()
    assert totals is not None
    return {**totals, "by_table": {t["relname"]: t["seq_tup_read"] for t in tables}}


def database_figures(
    before: dict[str, Any], after: dict[str, Any], payments: int
) -> dict[str, Any]:
    def per_payment(a: int, b: int) -> float:
        return round((a - b) / payments, 1)

    scanned = {
        table: per_payment(rows, before["by_table"].get(table, 0))
        for table, rows in after["by_table"].items()
    }
    return {
        "measured": "pg_stat_database of the stack's database over the ePay phase: proxies, "
        "not a count of SQL statements",
        **{
            f"{name}_per_payment": per_payment(after[name], before[name])
            for name in ("transactions", "rows_scanned", "rows_written")
        },
        "rows_read_by_sequential_scans_per_payment": dict(
            sorted(((t, n) for t, n in scanned.items() if n), key=lambda tn: -tn[1])[:3]
        ),
    }
