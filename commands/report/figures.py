"""The report's figures: what is counted per service, per department and in all, read
from one snapshot of the database (``store.report``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from commands.report.period import Period, ReportError
from store import report as store

METHODS = (("e_dirham", "e-Dirham"), ("card", "card"))  # as the report names them


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


Key = tuple[
    str | None, str | None
]  # (department, service): (d, None) a department, (None, None) all


async def build(pool: asyncpg.Pool, period: Period, department: str | None) -> Report:
    """Read the report's figures, all from one snapshot."""
    read = await store.read(pool, period.start, period.end, department)
    if read is None:
        raise ReportError(f"no department {department!r}")
    departments = {d.code: Names(d.name_en, d.name_ar) for d in read.departments}
    services = {(s.department, s.code): Names(s.name_en, s.name_ar) for s in read.services}

    figures: dict[Key, Figures] = {(None, None): Figures()}
    for p in read.payments:
        f = figures.setdefault((p.department, p.service), Figures())
        f.started, f.succeeded, f.failed = p.started, p.succeeded, p.failed
        f.cancelled, f.expired, f.open = p.cancelled, p.expired, p.open
        f.collected, f.service_fees = p.collected, p.service_fees
        f.knowledge_fees, f.innovation_fees = p.knowledge_fees, p.innovation_fees
        f.by_method = {m: p.by_method.get(m, (0, 0)) for m, _ in METHODS}
        f.timed = p.timed
        f.seconds_avg, f.seconds_p50, f.seconds_p95 = p.seconds_avg, p.seconds_p50, p.seconds_p95
    for r in read.failures:
        f = figures.setdefault((r.department, r.service), Figures())
        f.failures[r.failure_code] = r.payments
    for g in read.refunds:
        f = figures.setdefault((g.department, g.service), Figures())
        f.refunds, f.refunded = g.refunds, g.refunded
        f.refunds_pending, f.refunds_failed = g.refunds_pending, g.refunds_failed

    def order(key: Key) -> tuple[int, str, int, str]:
        dept, service = key
        if dept is None:
            return (1, "", 0, "")
        name = services.get((dept, service), Names(service, "")).en if service else ""
        return (0, dept, 0 if service else 1, name)

    rows = [Row(d, s, figures[(d, s)]) for d, s in sorted(figures, key=order)]
    return Report(period, department, rows, departments, services)
