"""The daily settlement and reconciliation of one business day (Asia/Dubai).

For the day, from the ledger: what was captured and refunded, per payment and in total per
department and per fee line (the Knowledge and Innovation Dirham to their own funds); from
the card acquirer's and the e-Dirham issuer's settlement files: what each says it captured
and refunded, per payment (the reference ePay sent it). Every difference is a mismatch that
names its payment:

- ``missing_in_ledger``: a partner moved money for a payment the ledger has nothing of that
  day (a capture the acquirer reports that the ledger lacks);
- ``missing_at_partner``: the ledger has a capture or refund the partner does not report;
- ``amount_differs``: both have it, with different amounts.

A run reads the ledger in one snapshot, writes its result as the day's row of
``settlement_runs`` (replacing an earlier run's), and can be made again for any past day:
the same books and files give the same result. ``SettlementWorkflow`` runs it daily from a
Temporal Schedule (epay/schedules.py) and by hand (``epay settlement run --day D``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

import asyncpg

from epay.ledger import FUNDS

DUBAI = timezone(timedelta(hours=4), "Asia/Dubai")  # no daylight saving
SOURCE_PARTNERS = {"e_dirham_issuer_receivable": "issuer", "card_acquirer_receivable": "acquirer"}


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The UTC instants a business day in Dubai starts and ends at."""
    start = datetime.combine(day, time(0), DUBAI)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)


def previous_business_day(now: datetime) -> date:
    return now.astimezone(DUBAI).date() - timedelta(days=1)


@dataclass(frozen=True)
class Movement:
    """Money moved for one payment on the day: ``kind`` capture or refund."""

    partner: str  # acquirer | issuer
    kind: str
    payment_id: str
    amount: int


@dataclass
class Mismatch:
    kind: str  # missing_in_ledger | missing_at_partner | amount_differs
    partner: str
    movement: str  # capture | refund
    payment_id: str
    ledger: int
    partner_amount: int


@dataclass
class DayResult:
    day: str
    balanced: bool
    totals: dict[str, Any]
    mismatches: list[Mismatch] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "balanced": self.balanced,
            "totals": self.totals,
            "mismatches": [asdict(m) for m in self.mismatches],
        }


async def ledger_day(
    conn: asyncpg.Connection, day: date
) -> tuple[list[Movement], dict[str, dict[str, int]]]:
    """The ledger's movements of the day per payment, and its totals per department and fee
    line (``captured``, ``refunded`` and ``net`` in fils)."""
    start, end = day_bounds(day)
    rows = await conn.fetch(
        """SELECT j.kind, j.payment_id, p.department, e.account, e.amount
           FROM ledger_journals j
           JOIN payments p ON p.id = j.payment_id
           JOIN ledger_entries e ON e.journal_id = j.id
           WHERE j.created_at >= $1 AND j.created_at < $2""",
        start,
        end,
    )
    moved: dict[tuple[str, str, str], int] = defaultdict(int)
    totals: dict[str, dict[str, int]] = defaultdict(lambda: {"captured": 0, "refunded": 0})
    for r in rows:
        partner = SOURCE_PARTNERS.get(r["account"])
        if partner is not None:  # the funds source: whose receivable says who moved it
            moved[(partner, r["kind"], r["payment_id"])] += abs(r["amount"])
            continue
        line = _line_of(r["account"], r["department"])
        if r["kind"] == "capture":
            totals[line]["captured"] += -r["amount"]
        elif r["kind"] == "refund":
            totals[line]["refunded"] += r["amount"]
    for figures in totals.values():
        figures["net"] = figures["captured"] - figures["refunded"]
    movements = [Movement(p, k, pid, amount) for (p, k, pid), amount in sorted(moved.items())]
    return movements, dict(sorted(totals.items()))


def _line_of(account: str, department: str) -> str:
    """How the totals name an account: ``<DEPT> service_fee`` or the fund's own name."""
    if account in FUNDS.values():
        return account
    return f"{department} service_fee" if account.startswith("department_payable:") else account


def partner_movements(partner: str, settlement_file: dict[str, Any]) -> list[Movement]:
    moved: dict[tuple[str, str], int] = defaultdict(int)
    for line in settlement_file.get("lines", []):
        moved[(line["kind"], line["reference"])] += int(line["amount"])
    return [Movement(partner, kind, pid, amount) for (kind, pid), amount in sorted(moved.items())]


def reconcile(ledger: list[Movement], partners: list[Movement]) -> list[Mismatch]:
    """Every movement that the ledger and the partners do not both have, alike."""
    ours = {(m.partner, m.kind, m.payment_id): m.amount for m in ledger}
    theirs = {(m.partner, m.kind, m.payment_id): m.amount for m in partners}
    found: list[Mismatch] = []
    for key in sorted(set(ours) | set(theirs)):
        partner, kind, payment_id = key
        a, b = ours.get(key), theirs.get(key)
        if a == b:
            continue
        what = (
            "missing_in_ledger"
            if a is None
            else "missing_at_partner"
            if b is None
            else "amount_differs"
        )
        found.append(Mismatch(what, partner, kind, payment_id, a or 0, b or 0))
    return found


def result(
    day: date,
    ledger: list[Movement],
    totals: dict[str, dict[str, int]],
    files: dict[str, dict[str, Any]],
) -> DayResult:
    partners = [m for p, f in files.items() for m in partner_movements(p, f)]
    mismatches = reconcile(ledger, partners)
    summary: dict[str, Any] = {
        "lines": totals,
        "ledger": {
            "captured": sum(m.amount for m in ledger if m.kind == "capture"),
            "refunded": sum(m.amount for m in ledger if m.kind == "refund"),
        },
        "partners": {
            p: {"captured": int(f.get("captured", 0)), "refunded": int(f.get("refunded", 0))}
            for p, f in sorted(files.items())
        },
    }
    return DayResult(day.isoformat(), not mismatches, summary, mismatches)


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


async def stored(pool: asyncpg.Pool, day: date) -> dict[str, Any] | None:
    row = await pool.fetchrow("SELECT * FROM settlement_runs WHERE business_day = $1", day)
    if row is None:
        return None
    return {k: (v.isoformat() if isinstance(v, date | datetime) else v) for k, v in row.items()}


def render(outcome: dict[str, Any]) -> str:
    """What ``epay settlement`` prints for a day's result."""
    totals = outcome["totals"]
    out = [
        f"settlement of {outcome['day']} (Asia/Dubai): "
        + ("balanced" if outcome["balanced"] else f"{len(outcome['mismatches'])} mismatches"),
        f"  {'line':40} {'captured':>14} {'refunded':>14} {'net':>14}",
    ]
    for line, f in totals["lines"].items():
        out.append(f"  {line:40} {f['captured']:>14,} {f['refunded']:>14,} {f['net']:>14,}")
    ledger = totals["ledger"]
    out.append(f"  ledger:   captured {ledger['captured']:,}, refunded {ledger['refunded']:,} fils")
    for partner, f in totals["partners"].items():
        out.append(
            f"  {partner + ':':9} captured {f['captured']:,}, refunded {f['refunded']:,} fils"
        )
    for m in outcome["mismatches"]:
        out.append(
            f"  MISMATCH {m['kind']}: {m['partner']} {m['movement']} of payment "
            f"{m['payment_id']}: ledger {m['ledger']}, {m['partner']} {m['partner_amount']} fils"
        )
    return "\n".join(out)


def dumps(outcome: DayResult) -> str:
    return json.dumps(outcome.as_json())
