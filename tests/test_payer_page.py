"""The hosted page without a browser or a stack (api/hosted/markup.py, view.py,
templates.py): what the payer is shown of each state, the amounts as the page writes them, and
templates that escape every value that is not already markup, so that a payment's reference,
a department's name or a return URL cannot write HTML into the page."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from api.hosted.markup import Markup, concat, escape, html, json_for_html
from api.hosted.templates import message_page, opening_page, payment_page, status_page
from api.hosted.view import STRINGS, payer_view, view_of
from domain.money import format_aed
from store.page import Names
from store.payments import PaymentRow

NAMES = Names({"en": "Roads & Transport", "ar": "هيئة الطرق"}, {"en": "Fine", "ar": "مخالفة"})
EVIL = '<script>alert("x")</script>'


def payment(**columns: Any) -> PaymentRow:
    """A payment row as the page reads it: reserved, AED 1,254.50 in three lines."""
    row: dict[str, Any] = {
        "id": "pay_" + "0" * 32,
        "department": "RTA",
        "service_code": "fine",
        "reference": "REF-1",
        "state": "reserved",
        "amount_total": 125450,
        "currency": "AED",
        "lines": [
            {"code": "service_fee", "amount": 123450},
            {"code": "knowledge_fee", "amount": 1000},
            {"code": "innovation_fee", "amount": 1000},
        ],
        "description": None,
        "return_url": "https://dept.example/back?a=1&b=2",
        "metadata": {},
        "method_type": None,
        "method_brand": None,
        "method_last4": None,
        "failure_code": None,
        "failure_message": None,
        "department_confirmation": None,
        "workflow_id": "payment-1",
        "expires_at": None,
        "created_at": None,
        "updated_at": None,
        "declines": 0,
        "last_decline": None,
        "receipt_number": None,
        "receipt_issued_at": None,
        "refunded": 0,
        "refunds_held": 0,
    }
    return PaymentRow.of({**row, **columns})


PAID = {
    "state": "succeeded",
    "method_type": "card",
    "method_brand": "visa",
    "method_last4": "4242",
    "receipt_number": "R-1",
    "receipt_issued_at": datetime(2026, 3, 1, 21, 5, tzinfo=UTC),
    "department_confirmation": "DC-7",
}


@pytest.mark.parametrize(
    ("columns", "shown"),
    [
        ({}, ("form", None)),
        ({"declines": 1, "last_decline": "card_declined"}, ("form", "declined")),
        ({"state": "requires_action"}, ("challenge", None)),
        ({"state": "authorising"}, ("progress", None)),
        ({"state": "capturing"}, ("progress", None)),
        (PAID, ("receipt", None)),
        ({"state": "cancelled"}, ("ended", "cancelled")),
        ({"state": "expired"}, ("ended", "payment_window_expired")),
        (
            {"state": "failed", "failure_code": "department_rejected"},
            ("ended", "department_rejected"),
        ),
        ({"state": "failed", "failure_code": "insufficient_funds"}, ("ended", "declined_final")),
        ({"state": "failed", "failure_code": "invalid_pin"}, ("ended", "declined_final")),
        ({"state": "failed", "failure_code": "internal_error"}, ("ended", "failed")),
    ],
)
def test_each_state_shows_its_part_and_no_precise_decline(
    columns: dict[str, Any], shown: tuple[str, str | None]
) -> None:
    assert view_of(payment(**columns)) == shown


def test_the_payer_view_of_a_paid_payment() -> None:
    view = payer_view(payment(**PAID))
    assert view["receipt"] == {
        "number": "R-1",
        "issued_at": "2026-03-01T21:05:00+00:00",
        "issued_at_text": "2026-03-02 01:05",  # Dubai time
    }
    assert view["method"] == {"type": "card", "brand": "visa", "last4": "4242"}
    assert view["amount"]["total"] == 125450
    assert "failure_code" not in view


@pytest.mark.parametrize("url", ["javascript:alert(1)", "//evil.example/", "ftp://x.example/"])
def test_a_return_url_that_is_not_plain_http_is_not_offered(url: str) -> None:
    assert payer_view(payment(state="cancelled", return_url=url))["return_url"] is None


def test_amounts_read_as_the_page_texts_say() -> None:
    assert format_aed(125450) == "AED 1,254.50"
    assert format_aed(125450, "ar") == "1,254.50 درهم"
    assert format_aed(5) == "AED 0.05"
    assert format_aed(-1) == "AED -0.01"
    for lang in ("en", "ar"):
        assert format_aed(100_000_000_01, lang) == STRINGS[lang]["amount"].format(
            amount="100,000,000.01"
        )


def test_the_message_page_is_the_page_it_was() -> None:
    assert message_page("en", "not_found") == (
        '<!doctype html><html lang="en" dir="ltr"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer"><title>ePay payment</title>'
        '<link rel="icon" href="data:,"><link rel="stylesheet" href="/pay/static/pay.css">'
        '</head><body><header class="bar"><span class="brand">ePay</span>'
        '<a class="lang" href="?lang=ar" lang="ar" hreflang="ar">العربية</a></header>'
        '<main id="main"><section class="card" id="ended"><p id="ended-message">'
        "This payment link is not valid.</p></section></main></body></html>"
    )


def _scripts(page: str) -> list[str]:
    return re.findall(r"<script[^>]*>(.*?)</script>", page, re.S)


@pytest.mark.parametrize("lang", ["en", "ar"])
def test_what_a_department_sent_is_escaped_in_every_page(lang: str) -> None:
    names = Names({"en": EVIL, "ar": EVIL}, {"en": EVIL, "ar": EVIL})
    evil_url = 'https://dept.example/"><script>alert(1)</script>'
    row = payment(reference=EVIL, return_url=evil_url, **{**PAID, "department_confirmation": EVIL})
    for page in (
        payment_page(row, names, lang, csrf='"><script>'),
        status_page(row, names, lang),
        opening_page(lang, evil_url),
    ):
        assert "<script>alert" not in page
        assert "&lt;script&gt;alert" in page
        assert 'href="https://dept.example/&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in page
        for script in _scripts(page):  # the page's JSON, where HTML escaping does not apply
            assert "<" not in script
    assert '<meta name="epay-csrf" content="&quot;&gt;&lt;script&gt;">' in payment_page(
        row, names, lang, csrf='"><script>'
    )


def test_the_payment_page_writes_its_amounts_and_names() -> None:
    page = payment_page(payment(), NAMES, "en", "c")
    assert "<dd>Roads &amp; Transport</dd>" in page
    assert '<td class="num" id="total">AED 1,254.50</td>' in page
    assert 'id="pay" aria-labelledby' in page  # the form shown, the other parts hidden
    assert 'id="receipt" hidden' in page


def test_a_value_is_escaped_unless_it_is_markup() -> None:
    page = html("<p title={title}>{text}</p>", title="\"'", text="<script>x</script>&")
    assert page == "<p title=&quot;&#x27;>&lt;script&gt;x&lt;/script&gt;&amp;</p>"
    assert isinstance(page, Markup)
    assert html("<div>{inner}</div>", inner=page) == f"<div>{page}</div>"


def test_values_that_are_not_text_are_written_as_text() -> None:
    assert html('<input maxlength="{n}">', n=23) == '<input maxlength="23">'
    assert escape(None) == "None"


def test_adding_or_joining_plain_text_to_markup_escapes_the_text() -> None:
    assert Markup("<b>") + "<i>" == "<b>&lt;i&gt;"
    assert "<i>" + Markup("<b>") == "&lt;i&gt;<b>"
    assert isinstance("<i>" + Markup("<b>"), Markup)
    assert Markup("<br>").join(["<a>", Markup("<b>")]) == "&lt;a&gt;<br><b>"
    assert concat("<a>", Markup("<b>"), 1) == "&lt;a&gt;<b>1"


def test_escaping_markup_again_leaves_it_as_it_is() -> None:
    once = escape("<&>")
    assert escape(once) == "&lt;&amp;&gt;"
    assert escape(escape(once)) is once


def test_json_for_a_script_element_cannot_close_it() -> None:
    text = json_for_html({"reference": "</script><script>alert(1)</script>", "ar": "درهم"})
    assert "<" not in text
    assert ">" not in text
    assert "درهم" in text
    assert isinstance(text, Markup)


@pytest.mark.parametrize("field", ["{x.__class__}", "{x[0]}", "{x!r}", "{x:>9}", "{0}", "{}"])
def test_a_template_has_plain_fields_only(field: str) -> None:
    """A field that reaches into a value, converts or formats it would work on (or around)
    its escaped text: a template with one is refused."""
    with pytest.raises(ValueError, match="plain"):
        html(field, x="<")
