"""The payer's receipt as a PDF, in English and Arabic."""

from __future__ import annotations

from fpdf import FPDF

from api.hosted.view import STATIC, STRINGS, method_text, payer_view
from domain.money import format_aed
from store.page import Names
from store.payments import PaymentRow

FONTS = STATIC / "fonts"


def receipt_document(row: PaymentRow, names: Names) -> bytes:
    """A one-page A4 receipt: English on the left, Arabic on the right (shaped by
    uharfbuzz through fpdf2's text shaping, so its letters join and run right to left)."""
    view = payer_view(row)
    en, ar = STRINGS["en"], STRINGS["ar"]
    pdf = FPDF(format="A4")
    pdf.set_title(f"{en['receipt_heading']} {row.receipt_number}")
    pdf.set_creator("ePay")
    pdf.add_font("dejavu", "", str(FONTS / "DejaVuSans.ttf"))
    pdf.add_font("dejavu", "B", str(FONTS / "DejaVuSans-Bold.ttf"))
    pdf.set_text_shaping(True)
    pdf.add_page()
    pdf.set_margins(18, 18, 18)
    half = (pdf.w - 36) / 2

    def pair(
        left: str, right: str, *, bold: bool = False, size: int = 10, height: float = 6
    ) -> None:
        pdf.set_font("dejavu", "B" if bold else "", size)
        pdf.cell(half, height, left)
        pdf.cell(half, height, right, align="R", new_x="LMARGIN", new_y="NEXT")

    pair(f"ePay — {en['receipt_heading']}", ar["receipt_heading"], bold=True, size=16, height=10)
    pair(names.department.get("en", ""), names.department.get("ar", ""), size=12, height=8)
    pdf.ln(4)
    receipt = view["receipt"]
    rows = [
        ("receipt_number", receipt["number"], receipt["number"]),
        (
            "receipt_date",
            f"{receipt['issued_at_text']} ({en['dubai_time']})",
            f"{receipt['issued_at_text']} ({ar['dubai_time']})",
        ),
        ("service", names.service.get("en", ""), names.service.get("ar", "")),
        ("reference", row.reference, row.reference),
        (
            "confirmation",
            view["department_confirmation"] or "",
            view["department_confirmation"] or "",
        ),
        ("paid_with", method_text(view["method"], "en"), method_text(view["method"], "ar")),
    ]
    for key, value_en, value_ar in rows:
        pair(en[key], ar[key], bold=True, size=9, height=5)
        pair(value_en, value_ar, size=11, height=7)
        pdf.ln(1)
    pdf.ln(3)
    pdf.set_draw_color(180, 180, 180)
    pdf.line(18, pdf.get_y(), pdf.w - 18, pdf.get_y())
    pdf.ln(2)
    for line in row.lines:
        code = "line_" + line["code"]
        pair(
            f"{en.get(code, line['code'])}: {format_aed(line['amount'], 'en')}",
            f"{ar.get(code, line['code'])}: {format_aed(line['amount'], 'ar')}",
            size=11,
            height=7,
        )
    pdf.line(18, pdf.get_y() + 1, pdf.w - 18, pdf.get_y() + 1)
    pdf.ln(3)
    pair(
        f"{en['amount_paid']}: {format_aed(row.amount_total, 'en')}",
        f"{ar['amount_paid']}: {format_aed(row.amount_total, 'ar')}",
        bold=True,
        size=13,
        height=9,
    )
    return bytes(pdf.output())
