"""``epay report``: what the gateway collected, and how, over a period of business days.

The seed article reported what the Municipality collected through the gateway and how much of
it came by e-Dirham against credit card. This reports that and more, per department and
service: payments started and how they ended, the amount collected with its service fees and
its Knowledge and Innovation Dirham, the share of e-Dirham against card, the outcomes by
failure code, refunds and what is left once they are paid back, and how long a payment takes
from its creation to its capture. As aligned tables for a terminal, as one CSV for a
spreadsheet, or as an SVG chart.

What is counted, written down once (``docs/reports.md`` says the same to its readers):

- The period is whole business days in Dubai (UTC+4, no daylight saving), ``--from`` and
  ``--to`` included; payments are stored in UTC and a payment belongs to the day it was
  *created* on in Dubai. Every payment figure is about the payments created in the period,
  whatever the day they ended on.
- Refunds are those *requested* in the period (their ``created_at``), of any payment, under
  their payment's department and service; net collected is collected less the refunds that
  succeeded.
- Rates are over the payments that have ended (succeeded, failed, cancelled, expired); the
  ones still open are shown apart.
- Time to complete is from the payment's ``created_at`` to its ``captured`` event in the
  audit trail (``payment_events.occurred_at``), or its ``updated_at`` should a succeeded
  payment have no such event. It includes the payer's own time on the payment page.

Money stays integer fils from the database to the text: AED are formatted from the integers,
never through a float. The whole report reads one snapshot (a read-only repeatable-read
transaction), so that its tables agree with each other while payments go on.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import asyncpg

from commands import text
from domain.calendar import day_start
from domain.failures import FailureCode
from domain.money import FILS_PER_AED

# Dubai has kept UTC+4, with no daylight saving, since 1920: a fixed offset needs no tz database.
FORMATS = ("table", "csv", "chart")
DEFAULT_CHART = "report.svg"
METHODS = (("e_dirham", "e-Dirham"), ("card", "card"))
USAGE = 2  # the exit code of a bad date or period, as argparse gives for its own errors


class ReportError(Exception):
    """A request the report cannot answer (bad date, unknown department): one line, exit 2."""


# --- the period ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """Business days in Dubai, both ends included."""

    first: date
    last: date

    @property
    def start(self) -> datetime:
        """The first instant of the period (Dubai midnight of ``first``)."""
        return day_start(self.first)

    @property
    def end(self) -> datetime:
        """The first instant after the period (Dubai midnight after ``last``)."""
        return day_start(self.last + timedelta(days=1))

    def describe(self) -> str:
        days = (self.last - self.first).days + 1
        start, end = (t.astimezone(UTC).strftime("%Y-%m-%d %H:%M") for t in (self.start, self.end))
        utc = f"{start} to {end} UTC"
        span = f"{self.first}" if days == 1 else f"{self.first} to {self.last}"
        return f"{span} ({days} day{'s' if days > 1 else ''}, Asia/Dubai; {utc})"


def parse_period(first: str, last: str) -> Period:
    period = Period(_parse_date("--from", first), _parse_date("--to", last))
    if period.first > period.last:
        raise ReportError(f"--from {period.first} is after --to {period.last}")
    return period


def _parse_date(option: str, value: str) -> date:
    try:
        if len(value) != 10:  # fromisoformat also takes 20261201 and 2026-W49-2
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise ReportError(f"{option} {value!r} is not a date (YYYY-MM-DD)") from None


# --- the figures ---------------------------------------------------------------------------


@dataclass
class Figures:
    """What is counted for one service, one department or everything. Amounts in fils."""

    started: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    expired: int = 0
    open: int = 0
    collected: int = 0
    service_fees: int = 0
    knowledge_fees: int = 0
    innovation_fees: int = 0
    by_method: dict[str, tuple[int, int]] = field(default_factory=dict)  # method: count, fils
    failures: dict[str, int] = field(default_factory=dict)  # failure code: ended payments
    timed: int = 0  # succeeded payments with a time to complete
    seconds_avg: float | None = None
    seconds_p50: float | None = None
    seconds_p95: float | None = None
    refunds: int = 0  # succeeded refunds
    refunded: int = 0
    refunds_pending: int = 0
    refunds_failed: int = 0

    @property
    def ended(self) -> int:
        return self.succeeded + self.failed + self.cancelled + self.expired

    @property
    def net_collected(self) -> int:
        return self.collected - self.refunded

    @property
    def ended_without_code(self) -> int:
        """Ended other than succeeded with no failure code (a cancel, as a rule)."""
        return self.ended - self.succeeded - sum(self.failures.values())

    def method(self, method: str) -> tuple[int, int]:
        return self.by_method.get(method, (0, 0))


@dataclass(frozen=True)
class Names:
    en: str
    ar: str


@dataclass
class Row:
    """A service (``service`` set), a department's subtotal or the total (``department`` None)."""

    department: str | None
    service: str | None
    figures: Figures

    @property
    def level(self) -> str:
        return "service" if self.service else "department" if self.department else "total"


@dataclass
class Report:
    period: Period
    department: str | None  # the filter
    rows: list[Row]  # each department's services then its subtotal; the total last
    departments: dict[str, Names]
    services: dict[tuple[str, str], Names]

    @property
    def total(self) -> Figures:
        return self.rows[-1].figures

    def service_name(self, row: Row) -> Names:
        assert row.department
        assert row.service
        return self.services.get((row.department, row.service), Names(row.service, row.service))


_PAYMENTS_SQL = """
WITH p AS (
    SELECT p.department, p.service_code, p.state, p.failure_code, p.method_type,
           p.amount_total,
           (SELECT coalesce(sum((l->>'amount')::bigint), 0) FROM jsonb_array_elements(p.lines) l
             WHERE l->>'code' = 'service_fee') AS service_fee,
           (SELECT coalesce(sum((l->>'amount')::bigint), 0) FROM jsonb_array_elements(p.lines) l
             WHERE l->>'code' = 'knowledge_fee') AS knowledge_fee,
           (SELECT coalesce(sum((l->>'amount')::bigint), 0) FROM jsonb_array_elements(p.lines) l
             WHERE l->>'code' = 'innovation_fee') AS innovation_fee,
           CASE WHEN p.state = 'succeeded' THEN extract(epoch FROM
               coalesce((SELECT min(e.occurred_at) FROM payment_events e
                          WHERE e.payment_id = p.id AND e.event = 'captured'), p.updated_at)
               - p.created_at)::float8 END AS seconds
      FROM payments p
     WHERE p.created_at >= $1 AND p.created_at < $2 AND ($3::text IS NULL OR p.department = $3)
)
SELECT GROUPING(department, service_code) AS grouping, department, service_code,
       count(*) AS started,
       count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE state = 'failed') AS failed,
       count(*) FILTER (WHERE state = 'cancelled') AS cancelled,
       count(*) FILTER (WHERE state = 'expired') AS expired,
       count(*) FILTER (WHERE state NOT IN ('succeeded', 'failed', 'cancelled', 'expired'))
           AS open,
       sum(amount_total) FILTER (WHERE state = 'succeeded') AS collected,
       sum(service_fee) FILTER (WHERE state = 'succeeded') AS service_fees,
       sum(knowledge_fee) FILTER (WHERE state = 'succeeded') AS knowledge_fees,
       sum(innovation_fee) FILTER (WHERE state = 'succeeded') AS innovation_fees,
       count(*) FILTER (WHERE state = 'succeeded' AND method_type = 'e_dirham') AS e_dirham_n,
       sum(amount_total) FILTER (WHERE state = 'succeeded' AND method_type = 'e_dirham')
           AS e_dirham_fils,
       count(*) FILTER (WHERE state = 'succeeded' AND method_type = 'card') AS card_n,
       sum(amount_total) FILTER (WHERE state = 'succeeded' AND method_type = 'card') AS card_fils,
       count(seconds) AS timed,
       avg(seconds) AS seconds_avg,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS seconds_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds) AS seconds_p95
  FROM p
 GROUP BY GROUPING SETS ((department, service_code), (department), ())
"""

_FAILURES_SQL = """
SELECT GROUPING(department, service_code) AS grouping, department, service_code, failure_code,
       count(*) AS payments
  FROM payments
 WHERE created_at >= $1 AND created_at < $2 AND ($3::text IS NULL OR department = $3)
   AND state IN ('failed', 'cancelled', 'expired') AND failure_code IS NOT NULL
 GROUP BY GROUPING SETS ((department, service_code, failure_code), (department, failure_code),
                         (failure_code))
"""

_REFUNDS_SQL = """
SELECT GROUPING(p.department, p.service_code) AS grouping, p.department, p.service_code,
       count(*) FILTER (WHERE r.state = 'succeeded') AS refunds,
       sum(r.amount) FILTER (WHERE r.state = 'succeeded') AS refunded,
       count(*) FILTER (WHERE r.state = 'pending') AS refunds_pending,
       count(*) FILTER (WHERE r.state = 'failed') AS refunds_failed
  FROM refunds r JOIN payments p ON p.id = r.payment_id
 WHERE r.created_at >= $1 AND r.created_at < $2 AND ($3::text IS NULL OR p.department = $3)
 GROUP BY GROUPING SETS ((p.department, p.service_code), (p.department), ())
"""

Key = tuple[str | None, str | None]
# The payments query's columns that are a Figures field of the same name: counts and seconds,
# and sums of fils (PostgreSQL's numeric, exact, or NULL over no payment).
_COUNTED = (
    *("started", "succeeded", "failed", "cancelled", "expired", "open"),
    *("timed", "seconds_avg", "seconds_p50", "seconds_p95"),
)
_SUMS = ("collected", "service_fees", "knowledge_fees", "innovation_fees")


def _fils(total: Any) -> int:
    """A sum of fils as read: a numeric (Decimal, whole) or NULL when nothing was summed."""
    return int(total or 0)


def _key(row: Any) -> Key:
    """(department, service) of a grouped row: (d, None) a department, (None, None) the total."""
    bits = row["grouping"]
    return (None if bits & 2 else row["department"], None if bits & 1 else row["service_code"])


async def build(pool: asyncpg.Pool, period: Period, department: str | None) -> Report:
    """Read the report's figures, all from one snapshot."""
    args = (period.start, period.end, department)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        departments = {
            r["code"]: Names(r["name_en"], r["name_ar"])
            for r in await conn.fetch("SELECT code, name_en, name_ar FROM departments")
        }
        if department is not None and department not in departments:
            raise ReportError(f"no department {department!r}")
        services = {
            (r["department"], r["code"]): Names(r["name_en"], r["name_ar"])
            for r in await conn.fetch("SELECT department, code, name_en, name_ar FROM services")
        }
        payments = await conn.fetch(_PAYMENTS_SQL, *args)
        failures = await conn.fetch(_FAILURES_SQL, *args)
        has_refunds = await conn.fetchval("SELECT to_regclass('refunds') IS NOT NULL")
        refunds = await conn.fetch(_REFUNDS_SQL, *args) if has_refunds else []

    figures: dict[Key, Figures] = {(None, None): Figures()}
    for r in payments:
        f = figures.setdefault(_key(r), Figures())
        for name in _COUNTED:
            setattr(f, name, r[name])
        for name in _SUMS:
            setattr(f, name, _fils(r[name]))
        f.by_method = {m: (r[f"{m}_n"], _fils(r[f"{m}_fils"])) for m, _ in METHODS}
    for r in failures:
        f = figures.setdefault(_key(r), Figures())
        f.failures[r["failure_code"]] = r["payments"]
    for r in refunds:
        f = figures.setdefault(_key(r), Figures())
        f.refunds, f.refunded = r["refunds"], _fils(r["refunded"])
        f.refunds_pending, f.refunds_failed = r["refunds_pending"], r["refunds_failed"]

    def order(key: Key) -> tuple[int, str, int, str]:
        dept, service = key
        if dept is None:
            return (1, "", 0, "")
        name = services.get((dept, service), Names(service, "")).en if service else ""
        return (0, dept, 0 if service else 1, name)

    rows = [Row(d, s, figures[(d, s)]) for d, s in sorted(figures, key=order)]
    return Report(period, department, rows, departments, services)


# --- formatting ----------------------------------------------------------------------------


def aed(fils: int, thousands: bool = True) -> str:
    """Fils as AED with two decimals, from the integer (``-1`` is ``-0.01``)."""
    whole, cents = divmod(abs(fils), FILS_PER_AED)
    sign = "-" if fils < 0 else ""
    return f"{sign}{whole:,}.{cents:02d}" if thousands else f"{sign}{whole}.{cents:02d}"


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


def _labels(report: Report, row: Row) -> list[str]:
    if row.level == "total":
        return ["All", f"all of {report.department}" if report.department else "all departments"]
    if row.level == "department":
        return [row.department or "", "all services"]
    return [row.department or "", report.service_name(row).en]


def _shown(report: Report) -> list[Row]:
    """The rows a table shows: a department's subtotal only when it has several services and
    is not the total itself (a report of one department)."""
    count: dict[str | None, int] = {}
    for row in report.rows:
        if row.level == "service":
            count[row.department] = count.get(row.department, 0) + 1
    return [
        r
        for r in report.rows
        if r.level != "department" or (count.get(r.department, 0) > 1 and not report.department)
    ]


def render_table(report: Report) -> str:
    shown = _shown(report)
    total = report.total
    title = [
        f"ePay report: payments created {report.period.describe()}",
        f"Department: {report.department or 'all'}",
    ]
    listed = sorted({r.department for r in report.rows if r.department})
    if listed:
        title.append(
            "Departments: "
            + "; ".join(
                f"{d} {report.departments[d].en}" for d in listed if d in report.departments
            )
        )
    parts = ["\n".join(title)]

    parts.append(
        "Payments by department and service (success rate: of the payments that ended)\n"
        + text.table(
            [
                "Dept",
                "Service",
                "Started",
                "Succeeded",
                "Failed",
                "Cancelled",
                "Expired",
                "Open",
                "Success",
            ],
            [
                _labels(report, r)
                + [
                    str(v)
                    for v in (
                        r.figures.started,
                        r.figures.succeeded,
                        r.figures.failed,
                        r.figures.cancelled,
                        r.figures.expired,
                        r.figures.open,
                    )
                ]
                + [percent(r.figures.succeeded, r.figures.ended)]
                for r in shown
            ],
        )
    )
    parts.append(
        "Amounts collected, AED (succeeded payments; refunds requested in the period, succeeded)\n"
        + text.table(
            [
                "Dept",
                "Service",
                "Collected",
                "Service fees",
                "Knowledge",
                "Innovation",
                "Refunds",
                "Refunded",
                "Net",
            ],
            [
                [
                    *_labels(report, r),
                    aed(r.figures.collected),
                    aed(r.figures.service_fees),
                    aed(r.figures.knowledge_fees),
                    aed(r.figures.innovation_fees),
                    str(r.figures.refunds),
                    aed(r.figures.refunded),
                    aed(r.figures.net_collected),
                ]
                for r in shown
            ],
        )
    )
    method_rows = []
    for r in report.rows:
        if r.level == "service" or (r.level == "department" and report.department):
            continue
        count, amount = r.figures.succeeded, r.figures.collected
        for method, label in METHODS:
            n, fils = r.figures.method(method)
            method_rows.append(
                [
                    r.department or "All",
                    label,
                    str(n),
                    percent(n, count),
                    aed(fils),
                    percent(fils, amount),
                ]
            )
    parts.append(
        "Payment method (succeeded payments)\n"
        + text.table(
            ["Dept", "Method", "Payments", "Share", "Amount", "Share of amount"], method_rows
        )
    )
    outcomes = [["succeeded", str(total.succeeded), percent(total.succeeded, total.ended)]]
    outcomes += [
        [code, str(n), percent(n, total.ended)]
        for code, n in sorted(total.failures.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    if total.ended_without_code:
        outcomes.append(
            [
                "cancelled (no code)",
                str(total.ended_without_code),
                percent(total.ended_without_code, total.ended),
            ]
        )
    outcomes.append(["All", str(total.ended), percent(total.ended, total.ended)])
    parts.append(
        f"Outcomes of the {total.ended} payments that ended, by failure code "
        f"({total.open} still open)\n" + text.table(["Outcome", "Payments", "Rate"], outcomes, 1)
    )
    parts.append(
        "Time to complete (created to captured; succeeded payments)\n"
        + text.table(
            ["Dept", "Service", "Payments", "Average", "p50", "p95"],
            [
                _labels(report, r)
                + [str(r.figures.timed)]
                + [text.duration(s) for s in (r.figures.seconds_avg, r.figures.seconds_p50)]
                + [text.duration(r.figures.seconds_p95)]
                for r in shown
            ],
        )
    )
    return "\n\n".join(parts) + "\n"


# --- CSV -----------------------------------------------------------------------------------

CSV_COLUMNS = [
    "period_from",
    "period_to",
    "level",
    "department",
    "department_name_en",
    "department_name_ar",
    "service_code",
    "service_name_en",
    "service_name_ar",
    "started",
    "succeeded",
    "failed",
    "cancelled",
    "expired",
    "open",
    "success_rate",
    *(f"{name}_{unit}" for name in ("collected", "service_fees") for unit in ("fils", "aed")),
    *(
        f"{name}_{unit}"
        for name in ("knowledge_dirham", "innovation_dirham")
        for unit in ("fils", "aed")
    ),
    *(
        f"{method}_{what}"
        for method, _ in METHODS
        for what in ("payments", "share", "fils", "aed", "amount_share")
    ),
    "refunds",
    "refunded_fils",
    "refunded_aed",
    "refunds_pending",
    "refunds_failed",
    "net_collected_fils",
    "net_collected_aed",
    "completed_timed",
    "complete_avg_seconds",
    "complete_p50_seconds",
    "complete_p95_seconds",
    *(f"failure_{code}" for code in FailureCode),
    "failure_other_code",
    "ended_without_code",
]


def _rate(part: int, whole: int) -> str:
    return f"{part / whole:.4f}" if whole else ""


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def render_csv(report: Report) -> str:
    """One row per service, per department and the total (``level``), every figure a column:
    amounts in fils and in AED (no thousands separator), rates as fractions, seconds."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    known = {code.value for code in FailureCode}
    for row in report.rows:
        f = row.figures
        dept = report.departments.get(row.department or "") if row.department else None
        service = report.service_name(row) if row.service else None
        methods: list[str] = []
        for method, _ in METHODS:
            n, fils = f.method(method)
            methods += [str(n), _rate(n, f.succeeded), str(fils), aed(fils, False)]
            methods.append(_rate(fils, f.collected))
        values = [
            str(report.period.first),
            str(report.period.last),
            row.level,
            row.department or "",
            dept.en if dept else "",
            dept.ar if dept else "",
            row.service or "",
            service.en if service else "",
            service.ar if service else "",
            *(str(n) for n in (f.started, f.succeeded, f.failed, f.cancelled, f.expired, f.open)),
            _rate(f.succeeded, f.ended),
            *_fils_and_aed(f.collected, f.service_fees, f.knowledge_fees, f.innovation_fees),
            *methods,
            str(f.refunds),
            *_fils_and_aed(f.refunded),
            str(f.refunds_pending),
            str(f.refunds_failed),
            *_fils_and_aed(f.net_collected),
            str(f.timed),
            *(_seconds(s) for s in (f.seconds_avg, f.seconds_p50, f.seconds_p95)),
            *(str(f.failures.get(code, 0)) for code in FailureCode),
            str(sum(n for code, n in f.failures.items() if code not in known)),
            str(f.ended_without_code),
        ]
        writer.writerow(values)
    return out.getvalue()


def _fils_and_aed(*amounts: int) -> Iterable[str]:
    for fils in amounts:
        yield str(fils)
        yield aed(fils, False)


# --- the chart -----------------------------------------------------------------------------

PALETTE = ("#1f6f8b", "#c2571a", "#5b8c2a", "#7b4b94", "#b8860b", "#2f4f4f")
E_DIRHAM_COLOUR, CARD_COLOUR = "#2a7f62", "#3b5ba5"
FONT = "DejaVu Sans, Verdana, Arial, sans-serif"


def render_chart(report: Report) -> str:
    """An SVG of the amount collected per department and service (bars) and of e-Dirham
    against card (two split bars: by number of payments and by amount)."""
    width, left, bar_area = 960, 340, 470
    el: list[str] = []

    def text(x: float, y: float, s: str, size: int = 13, **attrs: str) -> None:
        extra = "".join(f" {k.replace('_', '-')}={quoteattr(v)}" for k, v in attrs.items())
        el.append(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}"{extra}>{escape(s)}</text>')

    def rect(x: float, y: float, w: float, h: float, fill: str, label: str) -> None:
        el.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{h:.1f}" '
            f'fill="{fill}"><title>{escape(label)}</title></rect>'
        )

    total = report.total
    department = report.department or "all departments"
    text(24, 36, "ePay: amount collected", 22, font_weight="bold")
    text(
        24,
        60,
        f"Payments created {report.period.describe()}; department: {department}",
        12,
        fill="#444",
    )
    text(
        24,
        78,
        f"Collected AED {aed(total.collected)} from {total.succeeded} succeeded payments "
        f"of {total.started} started; refunded AED {aed(total.refunded)}, "
        f"net AED {aed(total.net_collected)}",
        12,
        fill="#444",
    )

    y = 118
    text(24, y, "Amount collected per department and service (AED)", 16, font_weight="bold")
    y += 14
    axis_top = y
    services = [r for r in report.rows if r.level == "service" and r.figures.collected > 0]
    services.sort(key=lambda r: (r.department or "", -r.figures.collected))
    top = max((r.figures.collected for r in services), default=0)
    colours = {d: PALETTE[i % len(PALETTE)] for i, d in enumerate(sorted(report.departments))}
    if not services:
        y += 24
        text(left, y, "Nothing was collected in this period.", 13, fill="#444")
        y += 12
    for row in services:
        y += 8
        name = report.service_name(row).en
        label = f"{row.department} · {name}"
        w = bar_area * row.figures.collected / top
        colour = colours.get(row.department or "", PALETTE[0])
        text(left - 10, y + 15, label, 13, text_anchor="end")
        rect(left, y, w, 22, colour, f"{label}: AED {aed(row.figures.collected)}")
        text(
            left + w + 8,
            y + 15,
            f"{aed(row.figures.collected)}  ({row.figures.succeeded})",
            12,
        )
        y += 22
    el.append(f'<line x1="{left}" y1="{axis_top}" x2="{left}" y2="{y + 6}" stroke="#888"/>')
    y += 22
    text(left, y, "Bars: amount in AED; in brackets, the number of succeeded payments.", 11)
    for row in report.rows:
        if row.level == "department" and row.figures.collected > 0 and row.department:
            y += 20
            colour = colours.get(row.department, PALETTE[0])
            rect(left, y - 11, 14, 14, colour, row.department)
            names = report.departments.get(row.department)
            text(
                left + 20,
                y,
                f"{row.department} {names.en if names else ''}: AED {aed(row.figures.collected)} "
                f"from {row.figures.succeeded} payments",
                12,
            )

    y += 40
    text(24, y, "Succeeded payments by method: e-Dirham against card", 16, font_weight="bold")
    e_n, e_fils = total.method("e_dirham")
    c_n, c_fils = total.method("card")
    for caption, e_part, c_part, unit in (
        ("By number", e_n, c_n, "payments"),
        ("By amount", e_fils, c_fils, "AED"),
    ):
        y += 22
        whole = e_part + c_part
        text(left - 10, y + 20, caption, 13, text_anchor="end")
        split_width = 560
        if not whole:
            rect(left, y, split_width, 30, "#ddd", "no succeeded payments")
            text(left + 10, y + 20, "no succeeded payments", 12)
        else:
            e_w = split_width * e_part / whole
            for x, w, part, name, colour in (
                (left, e_w, e_part, "e-Dirham", E_DIRHAM_COLOUR),
                (left + e_w, split_width - e_w, c_part, "card", CARD_COLOUR),
            ):
                shown = f"{part}" if unit == "payments" else f"AED {aed(part)}"
                share = percent(part, whole)
                rect(x, y, w, 30, colour, f"{name}: {shown} ({share})")
                if part and w > 60:
                    text(x + 8, y + 20, f"{name} {share}", 12, fill="#fff", font_weight="bold")
        y += 30
    y += 6
    for name, colour, n, fils in (
        ("e-Dirham", E_DIRHAM_COLOUR, e_n, e_fils),
        ("card", CARD_COLOUR, c_n, c_fils),
    ):
        y += 20
        rect(left, y - 11, 14, 14, colour, name)
        text(
            left + 20,
            y,
            f"{name}: {n} payments ({percent(n, e_n + c_n)}), AED {aed(fils)} "
            f"({percent(fils, e_fils + c_fils)})",
            12,
        )
    height = y + 30
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family={quoteattr(FONT)} role="img" '
        f'aria-labelledby="title">\n'
        f'<title id="title">ePay: amount collected, {escape(report.period.describe())}, '
        f"{escape(department)}</title>\n"
        f'<rect width="{width}" height="{height}" fill="#fff"/>\n' + "\n".join(el) + "\n</svg>\n"
    )


# --- the command ---------------------------------------------------------------------------


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``epay report`` under the ``epay`` parser's subcommands."""
    report = sub.add_parser(
        "report",
        help="what was collected, per department and service, by method, and how payments ended",
        description="Payments created from --from to --to (Asia/Dubai business days, both "
        "included): collected amounts and fee lines, e-Dirham against card, outcomes by "
        "failure code, refunds, time to complete. See docs/reports.md.",
    )
    report.add_argument("--from", dest="first", required=True, metavar="YYYY-MM-DD")
    report.add_argument("--to", dest="last", required=True, metavar="YYYY-MM-DD")
    report.add_argument("--department", metavar="D", help="one department's payments only")
    report.add_argument("--format", choices=FORMATS, default="table")
    report.add_argument(
        "--output",
        metavar="PATH",
        help=f"write here instead of standard output (chart: default {DEFAULT_CHART})",
    )


def run(args: argparse.Namespace, database_url: Callable[[], str]) -> int:
    """``epay report``: the exit code (2 on a bad date, period or department; 1 when the
    database cannot be read or the output written)."""
    try:
        period = parse_period(args.first, args.last)
        report = asyncio.run(_read(database_url(), period, args.department))
    except ReportError as err:
        print(f"epay report: {err}", file=sys.stderr)
        return USAGE
    except (OSError, asyncpg.PostgresError) as err:
        print(f"epay report: the database cannot be read: {err}", file=sys.stderr)
        return 1
    if args.format == "chart":
        rendered, output, encoding = render_chart(report), args.output or DEFAULT_CHART, "utf-8"
    else:
        rendered = render_csv(report) if args.format == "csv" else render_table(report)
        output = args.output
        # A CSV file starts with a byte-order mark, without which Excel reads the Arabic names
        # as another code page; standard output has none, for the next command in a pipe.
        encoding = "utf-8-sig" if args.format == "csv" else "utf-8"
    if not output:
        sys.stdout.write(rendered)
        return 0
    try:
        Path(output).write_text(rendered, encoding=encoding, newline="")
    except OSError as err:
        print(f"epay report: cannot write {output}: {err.strerror or err}", file=sys.stderr)
        return 1
    print(f"{args.format} written to {output}")
    return 0


async def _read(database_url: str, period: Period, department: str | None) -> Report:
    from epay.db import create_pool

    pool = await create_pool(database_url, max_size=1)
    try:
        return await build(pool, period, department)
    finally:
        await pool.close()
