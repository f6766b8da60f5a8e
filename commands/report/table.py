"""The report as aligned tables for a terminal (``--format table``, the default)."""

from __future__ import annotations

from commands import text
from commands.report.figures import METHODS, Report, Row
from domain.money import aed_amount


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
                    aed_amount(r.figures.collected),
                    aed_amount(r.figures.service_fees),
                    aed_amount(r.figures.knowledge_fees),
                    aed_amount(r.figures.innovation_fees),
                    str(r.figures.refunds),
                    aed_amount(r.figures.refunded),
                    aed_amount(r.figures.net_collected),
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
                    aed_amount(fils),
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
