"""The daily settlement's one step: read the day's ledger (store/settlement.py) and the
partners' settlement files, reconcile them (domain/settlement.py), and record the day's
result. The files of the days before are read too when a journal of the day was asked for
before it: they say on which of those days the partner made the movement (and which of their
lines a journal of the same payment booked earlier has taken).

One activity rather than several so that a day's lines (thousands of payments) never pass
through the workflow's history: the workflow holds the day and the summary only. The step
is idempotent: a retry, or a run made again for the same day, replaces the day's row with
the same result.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import asyncpg
import httpx
from temporalio import activity

from domain import settlement
from domain.settlement import SettleDay, SettledDay
from store import settlement as settlements


class Settlements:
    def __init__(
        self, pool: asyncpg.Pool, http: httpx.AsyncClient, *, acquirer_url: str, issuer_url: str
    ) -> None:
        self.pool = pool
        self.http = http
        self.urls = {"acquirer": acquirer_url, "issuer": issuer_url}

    @activity.defn
    async def settle_day(self, req: SettleDay) -> SettledDay:
        day = date.fromisoformat(req.day)
        files = {day: await self._files(day)}
        named = {payment_id for _, _, payment_id in settlement.reported_by_day(files)[day]}
        async with (
            self.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            journals = await settlements.ledger_day(conn, day, named)
        for earlier in settlement.days_to_read(day, journals):
            files[earlier] = await self._files(earlier)
        outcome = settlement.result(day, journals, files)
        runs = await settlements.record(self.pool, outcome)
        activity.logger.info(
            "settlement of %s: %s",
            req.day,
            "balanced" if outcome.balanced else f"{len(outcome.mismatches)} mismatches",
        )
        return SettledDay(
            req.day,
            outcome.balanced,
            len(outcome.mismatches),
            outcome.totals["ledger"]["captured"],
            outcome.totals["ledger"]["refunded"],
            runs,
        )

    async def _files(self, day: date) -> dict[str, dict[str, Any]]:
        """Each partner's settlement file of ``day``."""
        files: dict[str, dict[str, Any]] = {}
        for partner, base in self.urls.items():
            response = await self.http.get(f"{base.rstrip('/')}/settlements/{day.isoformat()}")
            response.raise_for_status()  # a partner without its file yet: retried
            files[partner] = response.json()
        return files
