"""The page's HTML: the payment page, the status page, the opening page, the message page."""

from __future__ import annotations

import html
import json
from typing import Any

import asyncpg

from api.hosted.view import STRINGS, Names, aed, method_text, payer_view, safe_return_url, view_of
from domain.states import PaymentState


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _document(
    lang: str,
    body: str,
    *,
    csrf: str | None = None,
    script: bool = False,
    refresh_to: str | None = None,
) -> str:
    s = STRINGS[lang]
    direction = "rtl" if lang == "ar" else "ltr"
    other = s["switch_language_lang"]
    meta = f'<meta name="epay-csrf" content="{_e(csrf)}">' if csrf else ""
    if refresh_to:
        meta += f'<meta http-equiv="refresh" content="0;url={_e(refresh_to)}">'
    js = (
        f'<script type="application/json" id="epay-strings">{_json_for_html(s)}</script>'
        '<script src="/pay/static/pay.js" defer></script>'
        if script
        else ""
    )
    return (
        f'<!doctype html><html lang="{lang}" dir="{direction}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="referrer" content="no-referrer">{meta}<title>{_e(s["title"])}</title>'
        '<link rel="icon" href="data:,"><link rel="stylesheet" href="/pay/static/pay.css">'
        f"{js}</head><body>"
        f'<header class="bar"><span class="brand">{_e(s["brand"])}</span>'
        f'<a class="lang" href="?lang={other}" lang="{other}" hreflang="{other}">'
        f"{_e(s['switch_language'])}</a></header>"
        f'<main id="main">{body}</main></body></html>'
    )


def _json_for_html(value: Any) -> str:
    """JSON that is safe inside a ``<script type="application/json">`` element."""
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")


def _summary(row: asyncpg.Record, names: Names, lang: str) -> str:
    s = STRINGS[lang]
    lines = "".join(
        f'<tr><th scope="row">{_e(s.get("line_" + line["code"], line["code"]))}</th>'
        f'<td class="num">{_e(aed(line["amount"], lang))}</td></tr>'
        for line in row["lines"]
    )
    return (
        '<section class="card" id="summary" aria-labelledby="summary-heading">'
        f'<h1 id="summary-heading">{_e(s["summary_heading"])}</h1><dl class="facts">'
        f"<div><dt>{_e(s['department'])}</dt><dd>{_e(names.department.get(lang, ''))}</dd></div>"
        f"<div><dt>{_e(s['service'])}</dt><dd>{_e(names.service.get(lang, ''))}</dd></div>"
        f'<div><dt>{_e(s["reference"])}</dt><dd dir="ltr" class="ref">{_e(row["reference"])}</dd>'
        f'</div></dl><table class="lines"><tbody>{lines}</tbody><tfoot><tr>'
        f'<th scope="row">{_e(s["total"])}</th>'
        f'<td class="num" id="total">{_e(aed(row["amount_total"], lang))}</td></tr></tfoot>'
        "</table></section>"
    )


def _field(
    lang: str,
    ident: str,
    label: str,
    *,
    hint: str | None = None,
    kind: str = "text",
    autocomplete: str = "off",
    inputmode: str = "numeric",
    maxlength: int = 23,
    extra: str = "",
) -> str:
    s = STRINGS[lang]
    described = f"{ident}-hint {ident}-error" if hint else f"{ident}-error"
    hint_html = f'<p class="hint" id="{ident}-hint">{_e(s[hint])}</p>' if hint else ""
    return (
        f'<div class="field{extra}"><label for="{ident}">{_e(s[label])}</label>{hint_html}'
        f'<input id="{ident}" name="{ident}" type="{kind}" inputmode="{inputmode}" '
        f'autocomplete="{autocomplete}" maxlength="{maxlength}" dir="ltr" spellcheck="false" '
        f'aria-describedby="{described}" required>'
        f'<p class="field-error" id="{ident}-error" aria-live="off"></p></div>'
    )


def _pay_form(row: asyncpg.Record, lang: str, hidden: bool) -> str:
    s = STRINGS[lang]
    f = _field
    return (
        f'<section class="card" id="pay"{_hidden(hidden)} aria-labelledby="pay-heading">'
        f'<form id="pay-form" novalidate><fieldset class="choice"><legend id="pay-heading">'
        f"{_e(s['method_heading'])}</legend>"
        '<label class="option"><input type="radio" name="method" value="e_dirham" checked> '
        f"{_e(s['method_e_dirham'])}</label>"
        '<label class="option"><input type="radio" name="method" value="card"> '
        f"{_e(s['method_card'])}</label></fieldset>"
        '<fieldset id="fields-e_dirham" class="method">'
        f'<legend class="visually-hidden">{_e(s["method_e_dirham"])}</legend>'
        + f(lang, "ed-number", "card_number", maxlength=19)
        + f(lang, "ed-pin", "pin", kind="password", maxlength=6, extra=" short")
        + '</fieldset><fieldset id="fields-card" class="method" hidden disabled>'
        f'<legend class="visually-hidden">{_e(s["method_card"])}</legend>'
        + f(lang, "cc-number", "card_number", autocomplete="cc-number")
        + '<div class="row">'
        + f(lang, "cc-exp-month", "expiry_month", autocomplete="cc-exp-month", maxlength=2)
        + f(lang, "cc-exp-year", "expiry_year", autocomplete="cc-exp-year", maxlength=4)
        + f(
            lang,
            "cc-cvv",
            "cvv",
            hint="cvv_hint",
            kind="password",
            autocomplete="cc-csc",
            maxlength=4,
        )
        + "</div>"
        + f(
            lang,
            "cc-name",
            "cardholder_name",
            autocomplete="cc-name",
            inputmode="text",
            maxlength=100,
        )
        + "</fieldset>"
        f'<button type="submit" id="pay-button" class="primary">'
        f"{_e(s['pay_button'].format(amount=aed(row['amount_total'], lang)))}</button>"
        f'<p class="note">{_e(s["secure_note"])}</p></form></section>'
    )


def _challenge(lang: str, hidden: bool) -> str:
    s = STRINGS[lang]
    return (
        f'<section class="card" id="challenge"{_hidden(hidden)} '
        f'aria-labelledby="otp-heading"><h2 id="otp-heading">{_e(s["otp_heading"])}</h2>'
        f'<p>{_e(s["otp_intro"])}</p><form id="otp-form" novalidate>'
        + _field(lang, "otp", "otp_label", autocomplete="one-time-code", maxlength=10)
        + f'<button type="submit" id="otp-button" class="primary">{_e(s["otp_button"])}</button>'
        "</form></section>"
    )


def _progress(lang: str, step: str | None, hidden: bool) -> str:
    s = STRINGS[lang]
    steps = ("authorising", "confirming", "capturing")
    reached = steps.index(step) if step in steps else -1
    items = "".join(
        f'<li data-step="{name}" class="{_step_class(i, reached)}"'
        + (' aria-current="step"' if i == reached else "")
        + f">{_e(s['step_' + name])}</li>"
        for i, name in enumerate(steps)
    )
    live = _e(s["step_" + step]) if step in steps else ""
    return (
        f'<section class="card" id="progress"{_hidden(hidden)} '
        f'aria-labelledby="progress-heading"><h2 id="progress-heading">'
        f'{_e(s["progress_heading"])}</h2><ol class="steps">{items}</ol>'
        f'<p id="progress-live" role="status" aria-live="polite">{live}</p>'
        f'<p class="note">{_e(s["progress_wait"])}</p></section>'
    )


def _hidden(hidden: bool) -> str:
    return " hidden" if hidden else ""


def _step_class(i: int, reached: int) -> str:
    return "done" if i < reached else "current" if i == reached else ""


def _return_link(url: str | None, lang: str, ident: str) -> str:
    hidden = "" if url else " hidden"
    return (
        f'<a class="button" id="{ident}" href="{_e(url or "#")}"{hidden}>'
        f"{_e(STRINGS[lang]['return'])}</a>"
    )


def _receipt(
    row: asyncpg.Record, payment_id: str, lang: str, view: dict[str, Any], hidden: bool
) -> str:
    s = STRINGS[lang]
    receipt = view["receipt"] or {}
    date = f"{receipt['issued_at_text']} ({s['dubai_time']})" if receipt else ""
    return (
        f'<section class="card" id="receipt"{_hidden(hidden)} '
        'aria-labelledby="receipt-heading"><h2 id="receipt-heading" tabindex="-1">'
        f'{_e(s["receipt_heading"])}</h2><p class="success">{_e(s["receipt_thanks"])}</p>'
        '<dl class="facts">'
        f'<div><dt>{_e(s["receipt_number"])}</dt><dd id="r-number" class="code" dir="ltr">'
        f"{_e(receipt.get('number', ''))}</dd></div>"
        f'<div><dt>{_e(s["receipt_date"])}</dt><dd id="r-date">{_e(date)}</dd></div>'
        f'<div><dt>{_e(s["confirmation"])}</dt><dd id="r-confirmation" class="code" dir="ltr">'
        f"{_e(view['department_confirmation'] or '')}</dd></div>"
        f'<div><dt>{_e(s["paid_with"])}</dt><dd id="r-method">'
        f"{_e(method_text(view['method'], lang))}</dd></div>"
        f"<div><dt>{_e(s['amount_paid'])}</dt><dd>{_e(aed(row['amount_total'], lang))}</dd></div>"
        '</dl><div class="actions">'
        f'<button type="button" id="print-button" class="secondary">{_e(s["print"])}</button>'
        f'<a class="button secondary" id="pdf-link" href="/pay/{payment_id}/receipt.pdf" download>'
        f"{_e(s['download_pdf'])}</a>"
        + _return_link(view["return_url"], lang, "return-link")
        + "</div></section>"
    )


def _ended(lang: str, view: dict[str, Any], hidden: bool) -> str:
    s = STRINGS[lang]
    message = s.get(f"msg_{view['message']}", "") if view["view"] == "ended" else ""
    return (
        f'<section class="card" id="ended"{_hidden(hidden)}>'
        f'<h2>{_e(s["status_heading"])}</h2><p id="ended-message">{_e(message)}</p>'
        + _return_link(view["return_url"], lang, "ended-return-link")
        + "</section>"
    )


def _notice(lang: str, code: str | None, shown: bool) -> str:
    text = STRINGS[lang].get(f"msg_{code}", "") if code and shown else ""
    return (
        f'<div id="notice" class="notice" role="alert" tabindex="-1"{"" if text else " hidden"}>'
        f"{_e(text)}</div>"
    )


def payment_page(row: asyncpg.Record, names: Names, lang: str, csrf: str) -> str:
    """The page of a payer with a session: every part is there, the state's shown; pay.js
    moves between them as the payment moves on (``payer_view``'s ``view``)."""
    view = payer_view(row)
    v = view["view"]
    body = (
        _notice(lang, view["message"], v == "form")
        + _summary(row, names, lang)
        + _pay_form(row, lang, hidden=v != "form")
        + _challenge(lang, hidden=v != "challenge")
        + _progress(lang, view["step"], hidden=v != "progress")
        + _receipt(row, row["id"], lang, view, hidden=v != "receipt")
        + _ended(lang, view, hidden=v != "ended")
        + '<noscript><p class="notice">JavaScript is needed to pay on this page.</p></noscript>'
        + f'<script type="application/json" id="epay-status">{_json_for_html(view)}</script>'
    )
    return _document(lang, body, csrf=csrf, script=True)


def status_page(row: asyncpg.Record, names: Names, lang: str) -> str:
    """A link opened for a payment that has started or ended, without a session: where the
    payment is, and no card form (nor the receipt: that needs the payer's session)."""
    s = STRINGS[lang]
    state = PaymentState(row["state"])
    view, message = view_of(row)
    if state == PaymentState.SUCCEEDED:
        text = s["msg_paid"]
    elif view == "form":  # open again after a decline, for the page that tried
        text = s["msg_link_used"]
    elif view in ("progress", "challenge"):
        text = s["msg_in_progress"]
    else:
        text = s.get(f"msg_{message}", s["msg_failed"])
    body = (
        _summary(row, names, lang)
        + f'<section class="card" id="ended"><h2>{_e(s["status_heading"])}</h2>'
        f'<p id="ended-message">{_e(text)}</p>'
        + _return_link(safe_return_url(row["return_url"]), lang, "ended-return-link")
        + "</section>"
    )
    return _document(lang, body)


def opening_page(lang: str, target: str) -> str:
    """The answer to the link: the page moves on to ``target`` by itself (a link too, for a
    browser that does not). A redirect would lose the session: a browser does not send a
    SameSite=Strict cookie on a redirect of a navigation another site started, such as the
    department's "Pay" button, whereas this page's own move is same-site. The link's URL,
    token and all, is replaced in the browser's history as a redirect's would be."""
    s = STRINGS[lang]
    body = (
        f'<section class="card" id="opening"><p>{_e(s["opening"])}</p>'
        f'<p><a id="open-payment-page" href="{_e(target)}">{_e(s["open_payment_page"])}</a>'
        "</p></section>"
    )
    return _document(lang, body, refresh_to=target)


def message_page(lang: str, code: str) -> str:
    text = _e(STRINGS[lang]["msg_" + code])
    body = f'<section class="card" id="ended"><p id="ended-message">{text}</p></section>'
    return _document(lang, body)
