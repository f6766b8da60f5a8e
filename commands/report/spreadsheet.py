"""The report as one CSV for a spreadsheet (``--format csv``)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from commands.report.figures import METHODS, Report
from domain.failures import FailureCode
from domain.money import aed_amount

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
            methods += [str(n), _rate(n, f.succeeded), str(fils), aed_amount(fils, thousands=False)]
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
        yield aed_amount(fils, thousands=False)
