"""The report as an SVG chart (``--format chart``), written by hand: no plotting library."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from commands.report.figures import Report
from commands.report.table import percent
from domain.money import aed_amount

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
        f"Collected AED {aed_amount(total.collected)} from {total.succeeded} succeeded payments "
        f"of {total.started} started; refunded AED {aed_amount(total.refunded)}, "
        f"net AED {aed_amount(total.net_collected)}",
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
        rect(left, y, w, 22, colour, f"{label}: AED {aed_amount(row.figures.collected)}")
        text(
            left + w + 8,
            y + 15,
            f"{aed_amount(row.figures.collected)}  ({row.figures.succeeded})",
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
                f"{row.department} {names.en if names else ''}: "
                f"AED {aed_amount(row.figures.collected)} from {row.figures.succeeded} payments",
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
                shown = f"{part}" if unit == "payments" else f"AED {aed_amount(part)}"
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
            f"{name}: {n} payments ({percent(n, e_n + c_n)}), AED {aed_amount(fils)} "
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
