"""What the payer is shown of a payment: which part of the page, which message, and the
page's texts in both languages. Pure: no request, no database."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from domain.failures import DECLINE_CODES, FailureCode
from domain.states import PaymentState
from store.payments import PaymentRow

STATIC = Path(__file__).resolve().parent.parent / "static"
STRINGS: dict[str, dict[str, str]] = json.loads((STATIC / "strings.json").read_text("utf-8"))
LANGUAGES = ("ar", "en")
DUBAI = timezone(timedelta(hours=4), "GST")  # the UAE keeps no daylight saving time


View = Literal["form", "challenge", "progress", "receipt", "ended"]
IN_PROGRESS = (PaymentState.AUTHORISING, PaymentState.CONFIRMING, PaymentState.CAPTURING)
# Failures the payer is told about as they are: they are the department's or the clock's,
# and say nothing about the card.
SPECIFIC_FAILURES = frozenset(
    {
        FailureCode.DEPARTMENT_REJECTED,
        FailureCode.DEPARTMENT_UNAVAILABLE,
        FailureCode.PAYMENT_WINDOW_EXPIRED,
        "too_many_attempts",
    }
)
CARD_FAILURES = DECLINE_CODES | {FailureCode.AUTHORISATION_FAILED}


def view_of(row: PaymentRow) -> tuple[View, str | None]:
    """Which part of the page the payment's state shows, and the message code with it.

    Message codes are the page's own (``strings.json`` has ``msg_<code>``), never the
    precise failure code: every decline is ``declined`` (``declined_final`` once the
    payment has ended)."""
    state = PaymentState(row.state)
    if state == PaymentState.RESERVED:
        return "form", "declined" if row.last_decline else None
    if state == PaymentState.REQUIRES_ACTION:
        return "challenge", None
    if state in IN_PROGRESS:
        return "progress", None
    if state == PaymentState.SUCCEEDED:
        return "receipt", None
    if state == PaymentState.CANCELLED:
        return "ended", "cancelled"
    if state == PaymentState.EXPIRED:
        return "ended", "payment_window_expired"
    code = row.failure_code or ""
    if code in SPECIFIC_FAILURES:
        return "ended", code
    return "ended", "declined_final" if code in CARD_FAILURES else "failed"


def safe_return_url(url: str | None) -> str | None:
    """The department's ``return_url`` if it is a plain http(s) URL, else none."""
    if not url:
        return None
    parts = urlsplit(url)
    return url if parts.scheme in ("http", "https") and parts.netloc else None


def issued_text(at: datetime) -> str:
    return at.astimezone(DUBAI).strftime("%Y-%m-%d %H:%M")


def payer_view(row: PaymentRow) -> dict[str, Any]:
    """``GET /pay/{id}/status``: what the page needs, and nothing the payer must not learn
    (no failure code, no payer data, no token)."""
    view, message = view_of(row)
    state = PaymentState(row.state)
    return {
        "state": state.value,
        "view": view,
        "step": state.value if state in IN_PROGRESS else None,
        "message": message,
        "amount": {
            "total": row.amount_total,
            "currency": row.currency,
            "lines": [{"code": x["code"], "amount": x["amount"]} for x in row.lines],
        },
        "method": (
            {"type": row.method_type, "brand": row.method_brand, "last4": row.method_last4}
            if row.method_type
            else None
        ),
        "receipt": (
            {
                "number": row.receipt_number,
                "issued_at": row.receipt_issued_at.isoformat(),
                "issued_at_text": issued_text(row.receipt_issued_at),
            }
            if row.receipt_number and row.receipt_issued_at  # one receipts row: both or neither
            else None
        ),
        "department_confirmation": row.department_confirmation,
        "return_url": safe_return_url(row.return_url),
    }


def method_text(method: dict[str, Any] | None, lang: str) -> str:
    if not method:
        return ""
    if method["type"] == "e_dirham":
        brand = STRINGS[lang]["brand_e_dirham"]
    else:
        brand = {"visa": "Visa", "mastercard": "Mastercard"}.get(method["brand"] or "", "Card")
    return f"{brand} •••• {method['last4']}"
