"""The ledger's books as ``epay ledger verify`` reads them: every journal with its sums, the
payments and refunds it should say, and each account's balance, in one consistent snapshot
(a repeatable-read transaction), so that payments settling meanwhile cannot show as
differences. The checking is the command's (commands/ledger.py); the journals are written
where the capture and the refund are recorded (the payment store, store/refunds.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import asyncpg
from asyncpg import Connection

from domain.money import FeeLine


@dataclass(frozen=True, slots=True)
class BookedJournal:
    """A journal and its entries' sums: ``total`` (0 when it balances), ``debits`` (what it
    moved) and how many ``entries`` it has."""

    id: int
    payment_id: str
    kind: str  # capture | refund
    refund_id: str | None
    total: int
    entries: int
    debits: int


@dataclass(frozen=True, slots=True)
class BookedPayment:
    """A payment as the books should reflect it."""

    id: str
    department: str
    state: str
    amount_total: int
    lines: tuple[FeeLine, ...]
    method_type: str | None


@dataclass(frozen=True, slots=True)
class BookedRefund:
    """A refund as the books should reflect it: ``lines``, how its amount split over the
    payment's lines."""

    id: str
    payment_id: str
    amount: int
    state: str
    lines: tuple[FeeLine, ...]


@dataclass(frozen=True, slots=True)
class Books:
    """One snapshot of the ledger, the payments and the refunds."""

    journals: list[BookedJournal]
    payments: list[BookedPayment]
    refunds: list[BookedRefund]
    balances: dict[str, int]  # account: the sum of its entries (fils; debit > 0)
    entries: int


async def books(pool: asyncpg.Pool) -> Books:
    """The books, read in one repeatable-read, read-only transaction."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        journals = await conn.fetch(
            """SELECT j.id, j.payment_id, j.kind, j.refund_id,
                      coalesce(sum(e.amount), 0) AS total, count(e.id) AS entries,
                      coalesce(sum(e.amount) FILTER (WHERE e.amount > 0), 0) AS debits
               FROM ledger_journals j LEFT JOIN ledger_entries e ON e.journal_id = j.id
               GROUP BY j.id ORDER BY j.id"""
        )
        payments = await conn.fetch(
            "SELECT id, department, state, amount_total, lines, method_type FROM payments"
        )
        refunds = (
            await conn.fetch("SELECT id, payment_id, amount, state, lines FROM refunds")
            if await _has_refunds(conn)
            else []
        )
        balances = {
            r["account"]: int(r["balance"])
            for r in await conn.fetch(
                "SELECT account, sum(amount) AS balance FROM ledger_entries GROUP BY account"
            )
        }
        entries = int(await conn.fetchval("SELECT count(*) FROM ledger_entries"))
    return Books(
        journals=[
            BookedJournal(
                id=j["id"],
                payment_id=j["payment_id"],
                kind=j["kind"],
                refund_id=j["refund_id"],
                total=int(j["total"]),
                entries=int(j["entries"]),
                debits=int(j["debits"]),
            )
            for j in journals
        ],
        payments=[
            BookedPayment(
                id=p["id"],
                department=p["department"],
                state=p["state"],
                amount_total=p["amount_total"],
                lines=_lines(p["lines"]),
                method_type=p["method_type"],
            )
            for p in payments
        ],
        refunds=[
            BookedRefund(
                id=r["id"],
                payment_id=r["payment_id"],
                amount=r["amount"],
                state=r["state"],
                lines=_lines(r["lines"]),
            )
            for r in refunds
        ],
        balances=balances,
        entries=entries,
    )


def _lines(value: object) -> tuple[FeeLine, ...]:
    """A jsonb list of lines, decoded by the pool's codec (epay.db) or as text without it."""
    stored = json.loads(value) if isinstance(value, str) else value
    if not isinstance(stored, list):
        return ()
    return tuple(FeeLine(line["code"], line["amount"]) for line in stored)


async def _has_refunds(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass('refunds') IS NOT NULL"))


async def post_journal(
    conn: Connection,
    payment_id: str,
    entries: list[tuple[str, int]],
    refund_id: str | None = None,
) -> int:
    """Write a balanced journal, a payment's capture or (with ``refund_id``) one refund's
    reversal, and its entries, in the caller's transaction (the database refuses one that
    does not balance when it commits)."""
    journal_id: int = await conn.fetchval(
        "INSERT INTO ledger_journals (payment_id, kind, refund_id) VALUES ($1, $2, $3) "
        "RETURNING id",
        payment_id,
        "capture" if refund_id is None else "refund",
        refund_id,
    )
    await conn.executemany(
        "INSERT INTO ledger_entries (journal_id, account, amount) VALUES ($1, $2, $3)",
        [(journal_id, account, amount) for account, amount in entries],
    )
    return journal_id
