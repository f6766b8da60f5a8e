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

A movement is matched on the partner's business day, not on the day the ledger booked it: a
capture the acquirer made at 23:59:59 whose answer ePay booked at 00:00:01, or one the
sweeper booked days later, belongs to the acquirer's day (``partner_days``). Each line of a
partner's file is one capture or refund, and places one journal: two refunds of a payment,
one on each side of midnight, each go to the day that reports them.

A run reads the ledger in one snapshot (store/settlement.py), writes its result as the day's
row of ``settlement_runs`` (replacing an earlier run's), and can be made again for any past
day: the same books and files give the same result. ``SettlementWorkflow`` runs it daily from
a Temporal Schedule (commands/schedules.py) and by hand (``epay settlement run --day D``).
This module is the pure half: the journals and files in, the day's result out.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from domain.calendar import business_day, day_start
from domain.ledger import SOURCE_PARTNERS, line_of


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The UTC instants a business day in Dubai starts and ends at."""
    start = day_start(day)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)


# --- what crosses the settlement workflow's boundary ------------------------------------------


@dataclass
class SettleDay:
    day: str  # YYYY-MM-DD, Asia/Dubai


@dataclass
class SettledDay:
    day: str
    balanced: bool
    mismatches: int
    captured: int
    refunded: int
    runs: int


# --- the reconciliation ------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Journal:
    """A capture or refund journal of the ledger: when ePay asked the partner to move the
    money (the payment's or the refund's creation), when it booked the journal, and its
    entries (account, fils; debit > 0). ``booked_at`` and then ``id`` give the booking order."""

    id: int
    kind: str  # capture | refund
    payment_id: str
    department: str
    asked: date  # Asia/Dubai
    booked_at: datetime
    entries: tuple[tuple[str, int], ...]

    @property
    def booked(self) -> date:
        """The business day (Asia/Dubai) the ledger booked the journal on."""
        return business_day(self.booked_at)

    @property
    def movement(self) -> Movement | None:
        """What the partner whose receivable the journal moves should report of it (None: the
        journal moves no partner's receivable)."""
        for account, amount in self.entries:
            partner = SOURCE_PARTNERS.get(account)
            if partner is not None:
                return Movement(partner, self.kind, self.payment_id, abs(amount))
        return None


MovementKey = tuple[str, str, str]  # partner, kind (capture | refund), payment id

Reported = dict[date, dict[MovementKey, list[int]]]
"""Per business day and (partner, kind, payment), the amounts of the lines the partners'
files report: one line per capture or refund the partner made."""


def reported_by_day(files: dict[date, dict[str, dict[str, Any]]]) -> Reported:
    reported: Reported = {}
    for day, by_partner in files.items():
        lines = reported.setdefault(day, {})
        for partner, settlement_file in by_partner.items():
            for line in settlement_file.get("lines", []):
                key = (partner, line["kind"], line["reference"])
                lines.setdefault(key, []).append(int(line["amount"]))
    return reported


def _key(m: Movement) -> MovementKey:
    return (m.partner, m.kind, m.payment_id)


def partner_days(journals: list[Journal], reported: Reported, until: date) -> list[date | None]:
    """Each journal's partner business day, as far as the files up to ``until`` tell: the
    first day from when ePay asked to when it booked (the partner moved the money between
    ePay's request and its answer) whose file has a line of that movement, of its amount,
    that no journal booked before it has taken; or its booking day when none has (a line of
    another amount on that day is then an ``amount_differs``). None: not decided by ``until``
    (booked later, no such line by then).

    A line places one journal, so that a payment's second refund, booked after midnight, is
    not placed by the line of its first. The journals take their lines in booking order: a
    journal booked later cannot take the line of one booked before it, and so the files of
    the days after ``until`` change nothing up to it. A line places a journal of its own
    amount only: whether a later day's file has a line of the journal's amount is not known
    by ``until``, so that a journal placed by a line of another amount could be placed on
    two days by the runs of two days."""
    left = {
        day: {key: Counter(amounts) for key, amounts in by_key.items()}
        for day, by_key in reported.items()
        if day <= until
    }
    placed: dict[int, date | None] = {}
    for i in sorted(range(len(journals)), key=lambda i: (journals[i].booked_at, journals[i].id)):
        journal = journals[i]
        placed[i] = journal.booked if journal.booked <= until else None
        m = journal.movement
        day = journal.asked
        while m is not None and day <= min(journal.booked, until):
            amounts = left.get(day, {}).get(_key(m))
            if amounts and amounts[m.amount] > 0:
                amounts[m.amount] -= 1
                placed[i] = day
                break
            day += timedelta(days=1)
    return [placed[i] for i in range(len(journals))]


def days_to_read(day: date, journals: list[Journal]) -> list[date]:
    """The earlier days whose files ``partner_days`` needs to place the journals booked on
    ``day`` or since: from the first day one was asked for, and, as the lines go in booking
    order, from the first day of any journal of the same movement booked before them on one
    of the days read (whose line it may have taken), and so on."""
    earliest = day
    by_key: dict[MovementKey, list[Journal]] = defaultdict(list)
    for journal in journals:
        if (m := journal.movement) is not None:
            by_key[_key(m)].append(journal)
    for same in by_key.values():
        since = day
        while (first := min((j.asked for j in same if j.booked >= since), default=since)) < since:
            since = first
        earliest = min(earliest, since)
    return [earliest + timedelta(days=n) for n in range((day - earliest).days)]


def ledger_movements(
    journals: list[Journal],
) -> tuple[list[Movement], dict[str, dict[str, int]]]:
    """The journals' movements per payment, and their totals per department and fee line
    (``captured``, ``refunded`` and ``net`` in fils)."""
    moved: dict[tuple[str, str, str], int] = defaultdict(int)
    totals: dict[str, dict[str, int]] = defaultdict(lambda: {"captured": 0, "refunded": 0})
    for journal in journals:
        if (m := journal.movement) is not None:
            moved[(m.partner, m.kind, m.payment_id)] += m.amount
        for account, amount in journal.entries:
            if account in SOURCE_PARTNERS:  # the funds source: whose receivable says who
                continue
            line = line_of(account, journal.department)
            if journal.kind == "capture":
                totals[line]["captured"] += -amount
            elif journal.kind == "refund":
                totals[line]["refunded"] += amount
    for figures in totals.values():
        figures["net"] = figures["captured"] - figures["refunded"]
    movements = [Movement(p, k, pid, amount) for (p, k, pid), amount in sorted(moved.items())]
    return movements, dict(sorted(totals.items()))


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
    day: date, journals: list[Journal], files: dict[date, dict[str, dict[str, Any]]]
) -> DayResult:
    """The day's result from the journals that may belong to it (``ledger_day``) and the
    partners' files of the day and of the days before it that ``days_to_read`` asks for."""
    placed = partner_days(journals, reported_by_day(files), day)
    ours = [j for j, on in zip(journals, placed, strict=True) if on == day]
    ledger, lines = ledger_movements(ours)
    today = files.get(day, {})
    partners = [m for p, f in today.items() for m in partner_movements(p, f)]
    mismatches = reconcile(ledger, partners)
    summary: dict[str, Any] = {
        "lines": lines,
        "ledger": {
            "captured": sum(m.amount for m in ledger if m.kind == "capture"),
            "refunded": sum(m.amount for m in ledger if m.kind == "refund"),
        },
        "partners": {
            p: {"captured": int(f.get("captured", 0)), "refunded": int(f.get("refunded", 0))}
            for p, f in sorted(today.items())
        },
    }
    return DayResult(day.isoformat(), not mismatches, summary, mismatches)


@dataclass
class SettlementRequest:
    """What starts a day's settlement workflow (workflows/settlement.py)."""

    day: str = ""  # YYYY-MM-DD; empty: the previous business day
