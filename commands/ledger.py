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

The books are read in one consistent snapshot (store/ledger.py); ``check`` is pure, so that
it can be tried on books made up in a test.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import asyncpg

from domain.ledger import SOURCES, payable
from domain.money import FeeLine
from store import ledger
from store.ledger import BookedJournal, BookedPayment, Books


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
    """The report on the books as they are now."""
    return check(await ledger.books(pool))


def check(books: Books) -> Report:
    """Every difference between the journals, the payments, the refunds and the balances."""
    report = Report(
        journals=len(books.journals),
        entries=books.entries,
        payments=len(books.payments),
        refunds=len(books.refunds),
        balances=books.balances,
    )
    errors = report.errors

    for j in books.journals:
        if j.entries == 0:
            errors.append(f"journal {j.id} ({j.kind}, {j.payment_id}) has no entries")
        elif j.total != 0:
            errors.append(
                f"journal {j.id} ({j.kind}, {j.payment_id}) does not balance: off by {j.total} fils"
            )

    captures: dict[str, list[BookedJournal]] = defaultdict(list)
    by_refund: dict[str | None, list[BookedJournal]] = defaultdict(list)
    for j in books.journals:
        if j.kind == "capture":
            captures[j.payment_id].append(j)
        elif j.kind == "refund":
            by_refund[j.refund_id].append(j)
        else:
            errors.append(f"journal {j.id} ({j.payment_id}) is of unknown kind {j.kind!r}")

    expected: dict[str, int] = defaultdict(int)
    paid: dict[str, BookedPayment] = {}
    for p in books.payments:
        found = captures.get(p.id, [])
        if p.state == "succeeded":
            paid[p.id] = p
            if len(found) != 1:
                errors.append(
                    f"payment {p.id} succeeded with {len(found)} capture journals (one expected)"
                )
            elif found[0].debits != p.amount_total:
                errors.append(
                    f"payment {p.id}: capture journal {found[0].id} is of "
                    f"{found[0].debits} fils, the payment of {p.amount_total}"
                )
            _post(expected, p, p.lines, +1)
        elif found:
            errors.append(f"payment {p.id} is {p.state} but has a capture journal")

    for r in books.refunds:
        found = by_refund.pop(r.id, [])
        if r.state == "succeeded":
            if len(found) != 1:
                errors.append(
                    f"refund {r.id} of {r.payment_id} succeeded with {len(found)} "
                    "reversing journals (one expected)"
                )
            elif found[0].payment_id != r.payment_id or found[0].debits != r.amount:
                errors.append(
                    f"refund {r.id}: journal {found[0].id} is of {found[0].debits} fils "
                    f"for {found[0].payment_id}, the refund of {r.amount} for "
                    f"{r.payment_id}"
                )
            payment = paid.get(r.payment_id)
            if payment is None:
                errors.append(f"refund {r.id} succeeded for a payment that did not")
            else:
                _post(expected, payment, r.lines, -1)
        elif found:
            errors.append(f"refund {r.id} is {r.state} but has a reversing journal")
    for refund_id, found in by_refund.items():
        ids = ", ".join(str(j.id) for j in found)
        errors.append(f"journal {ids} reverses refund {refund_id}, which does not exist")

    for account in sorted(set(expected) | set(books.balances)):
        want, have = expected.get(account, 0), books.balances.get(account, 0)
        if want != have:
            errors.append(
                f"account {account}: balance {have} fils, the payments and refunds make it {want}"
            )
    return report


def _post(
    expected: dict[str, int], payment: BookedPayment, lines: Iterable[FeeLine], sign: int
) -> None:
    """What a capture (sign +1) or a refund (-1) of ``lines`` does to the balances."""
    source = SOURCES.get(payment.method_type or "", "unknown_funds_source")
    for line in lines:
        expected[source] += sign * line.amount
        expected[payable(payment.department, line.code)] -= sign * line.amount


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
