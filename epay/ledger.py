"""``epay ledger verify``: the books against themselves and against the payments.

The ledger is double-entry and append-only (migration 001: a journal that does not balance
cannot commit, and no row can be changed). What the database cannot check alone is whether
the ledger says what the payments and refunds say. This does, and lists every difference:

- every journal balances, and has entries;
- every succeeded payment has exactly one capture journal, of its total; no other payment
  has one;
- every succeeded refund has exactly one reversing journal, of its amount and for its
  payment; no other refund has one;
- every account's balance, the sum of its entries, equals what the payments and refunds
  make it: each department's payable, the Knowledge and Innovation Dirham funds, and the
  e-Dirham issuer's and card acquirer's receivables.

A run reads one consistent snapshot (a repeatable-read transaction), so that payments
settling meanwhile cannot show as differences.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from domain.ledger import SOURCES, payable


@dataclass
class Report:
    journals: int = 0
    entries: int = 0
    payments: int = 0
    refunds: int = 0
    balances: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


async def verify(pool: asyncpg.Pool) -> Report:
    report = Report()
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
        refunds = await conn.fetch(_REFUNDS_SQL) if await _has_refunds(conn) else []
        balances = {
            r["account"]: int(r["balance"])
            for r in await conn.fetch(
                "SELECT account, sum(amount) AS balance FROM ledger_entries GROUP BY account"
            )
        }
        report.entries = int(await conn.fetchval("SELECT count(*) FROM ledger_entries"))
    report.journals, report.payments, report.refunds = len(journals), len(payments), len(refunds)
    report.balances = balances
    errors = report.errors

    for j in journals:
        if j["entries"] == 0:
            errors.append(f"journal {j['id']} ({j['kind']}, {j['payment_id']}) has no entries")
        elif j["total"] != 0:
            errors.append(
                f"journal {j['id']} ({j['kind']}, {j['payment_id']}) does not balance: "
                f"off by {j['total']} fils"
            )

    captures: dict[str, list[Any]] = defaultdict(list)
    by_refund: dict[str, list[Any]] = defaultdict(list)
    for j in journals:
        if j["kind"] == "capture":
            captures[j["payment_id"]].append(j)
        elif j["kind"] == "refund":
            by_refund[j["refund_id"]].append(j)
        else:
            errors.append(f"journal {j['id']} ({j['payment_id']}) is of unknown kind {j['kind']!r}")

    expected: dict[str, int] = defaultdict(int)
    paid: dict[str, Any] = {}
    for p in payments:
        found = captures.get(p["id"], [])
        if p["state"] == "succeeded":
            paid[p["id"]] = p
            if len(found) != 1:
                errors.append(
                    f"payment {p['id']} succeeded with {len(found)} capture journals (one expected)"
                )
            elif found[0]["debits"] != p["amount_total"]:
                errors.append(
                    f"payment {p['id']}: capture journal {found[0]['id']} is of "
                    f"{found[0]['debits']} fils, the payment of {p['amount_total']}"
                )
            _post(expected, p, [(line["code"], line["amount"]) for line in _lines(p)], +1)
        elif found:
            errors.append(f"payment {p['id']} is {p['state']} but has a capture journal")

    for r in refunds:
        found = by_refund.pop(r["id"], [])
        if r["state"] == "succeeded":
            if len(found) != 1:
                errors.append(
                    f"refund {r['id']} of {r['payment_id']} succeeded with {len(found)} "
                    "reversing journals (one expected)"
                )
            elif found[0]["payment_id"] != r["payment_id"] or found[0]["debits"] != r["amount"]:
                errors.append(
                    f"refund {r['id']}: journal {found[0]['id']} is of {found[0]['debits']} fils "
                    f"for {found[0]['payment_id']}, the refund of {r['amount']} for "
                    f"{r['payment_id']}"
                )
            payment = paid.get(r["payment_id"])
            if payment is None:
                errors.append(f"refund {r['id']} succeeded for a payment that did not")
            else:
                split = [(line["code"], line["amount"]) for line in _json(r["lines"])]
                _post(expected, payment, split, -1)
        elif found:
            errors.append(f"refund {r['id']} is {r['state']} but has a reversing journal")
    for refund_id, found in by_refund.items():
        ids = ", ".join(str(j["id"]) for j in found)
        errors.append(f"journal {ids} reverses refund {refund_id}, which does not exist")

    for account in sorted(set(expected) | set(balances)):
        want, have = expected.get(account, 0), balances.get(account, 0)
        if want != have:
            errors.append(
                f"account {account}: balance {have} fils, the payments and refunds make it {want}"
            )
    return report


def _post(expected: dict[str, int], payment: Any, lines: list[tuple[str, int]], sign: int) -> None:
    """What a capture (sign +1) or a refund (-1) of ``lines`` does to the balances."""
    source = SOURCES.get(payment["method_type"] or "", "unknown_funds_source")
    for code, amount in lines:
        expected[source] += sign * amount
        expected[payable(payment["department"], code)] -= sign * amount


def _lines(payment: Any) -> list[dict[str, Any]]:
    return list(_json(payment["lines"]))


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def _has_refunds(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass('refunds') IS NOT NULL"))


_REFUNDS_SQL = "SELECT id, payment_id, amount, state, lines FROM refunds"


def render(report: Report) -> str:
    """What ``epay ledger verify`` prints."""
    lines = [
        f"ledger: {report.journals} journals, {report.entries} entries; "
        f"{report.payments} payments, {report.refunds} refunds",
        "balances (fils; debit > 0):",
        *(f"  {account:40} {balance:>16,}" for account, balance in sorted(report.balances.items())),
    ]
    if report.ok:
        lines.append("ok: every journal balances and the books match the payments and refunds")
    else:
        lines.append(f"{len(report.errors)} errors:")
        lines += [f"  {e}" for e in report.errors]
    return "\n".join(lines)
