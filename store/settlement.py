"""The daily settlement's reads and writes: the journals that may belong to a partner's
business day, and the day's row of ``settlement_runs``. What is done with them is pure
(domain/settlement.py)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

from domain.calendar import business_day
from domain.settlement import DayResult, Journal, day_bounds


@dataclass(frozen=True, slots=True)
class SettlementRun:
    """A day's row of ``settlement_runs``: the result of its latest run (``totals`` and
    ``mismatches`` as ``DayResult.as_json`` wrote them), and how many runs it has had."""

    business_day: date
    balanced: bool
    totals: dict[str, Any]
    mismatches: list[dict[str, Any]]
    runs: int
    first_run_at: datetime
    last_run_at: datetime


async def ledger_day(conn: asyncpg.Connection, day: date, reported: Iterable[str]) -> list[Journal]:
    """Every journal of the payments that may have a movement on the partners' business day
    ``day``: those with a journal booked that day, and the ``reported`` ones (the day's files
    name them; a movement is booked after the partner made it, never before). All of a
    payment's journals, not only the day's: the one booked before may have taken a line of
    the days ``partner_days`` reads (a payment's earlier refund)."""
    start, end = day_bounds(day)
    # The captures by payment and the refunds through their refunds: each way has its index.
    rows = await conn.fetch(
        """WITH of_day AS (
               SELECT payment_id FROM ledger_journals WHERE created_at >= $1 AND created_at < $2
               UNION SELECT unnest($3::text[])),
           journals AS (
               SELECT j.id FROM of_day d
               JOIN ledger_journals j ON j.payment_id = d.payment_id AND j.kind = 'capture'
               UNION ALL
               SELECT j.id FROM of_day d
               JOIN refunds r ON r.payment_id = d.payment_id
               JOIN ledger_journals j ON j.refund_id = r.id)
           SELECT j.id, j.kind, j.payment_id, p.department, j.created_at AS booked,
                  coalesce(r.created_at, p.created_at) AS asked, e.account, e.amount
           FROM journals o
           JOIN ledger_journals j ON j.id = o.id
           JOIN payments p ON p.id = j.payment_id
           LEFT JOIN refunds r ON r.id = j.refund_id
           JOIN ledger_entries e ON e.journal_id = j.id
           ORDER BY j.id, e.id""",
        start,
        end,
        sorted(reported),
    )
    entries: dict[int, list[tuple[str, int]]] = defaultdict(list)
    first: dict[int, Mapping[str, Any]] = {}
    for r in rows:
        entries[r["id"]].append((r["account"], r["amount"]))
        first.setdefault(r["id"], r)
    return [
        Journal(
            journal_id,
            r["kind"],
            r["payment_id"],
            r["department"],
            business_day(r["asked"]),
            r["booked"],
            tuple(entries[journal_id]),
        )
        for journal_id, r in first.items()
    ]


async def record(pool: asyncpg.Pool, outcome: DayResult) -> int:
    """The day's row, replacing an earlier run's; how many runs the day has had."""
    runs: int = await pool.fetchval(
        """INSERT INTO settlement_runs (business_day, balanced, totals, mismatches)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (business_day) DO UPDATE SET balanced = $2, totals = $3,
               mismatches = $4, runs = settlement_runs.runs + 1, last_run_at = now()
           RETURNING runs""",
        date.fromisoformat(outcome.day),
        outcome.balanced,
        outcome.totals,
        [asdict(m) for m in outcome.mismatches],
    )
    return runs


async def stored(pool: asyncpg.Pool, day: date) -> SettlementRun | None:
    """The day's row, if it has been settled."""
    row = await pool.fetchrow(
        """SELECT business_day, balanced, totals, mismatches, runs, first_run_at, last_run_at
           FROM settlement_runs WHERE business_day = $1""",
        day,
    )
    if row is None:
        return None
    return SettlementRun(
        business_day=row["business_day"],
        balanced=row["balanced"],
        totals=row["totals"],
        mismatches=row["mismatches"],
        runs=row["runs"],
        first_run_at=row["first_run_at"],
        last_run_at=row["last_run_at"],
    )
