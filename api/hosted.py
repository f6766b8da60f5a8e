"""The hosted payment page: what the payer opens from ``next_url``.

``GET /pay/{id}?token=...`` exchanges the department's link for a payer session
(``api.payer_session``) and redirects to ``/pay/{id}``, so the token is in no URL after the
first one. The page is Arabic (right to left) by default, English on ``?lang=en``; it is
rendered here with every string escaped, and driven by ``/pay/static/pay.js`` through three
JSON calls of its own (``authorise``, ``3ds``, ``status``) that need the session cookie, the
CSRF value of the page's ``<meta>`` and a same-origin request. What the payer is told of a
failure is deliberately coarse: one message for every kind of decline (a card tester learns
nothing), the department's own refusals and the payment window apart.

Every ``/pay`` response carries the headers of ``PAGE_HEADERS`` (``PayPageHeaders``).
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import asyncpg
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fpdf import FPDF
from pydantic import TypeAdapter, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import payer_session, schemas
from api.context import Ctx
from api.errors import ApiError
from api.payer import Caller, payment_for_payer, submit_challenge, submit_method
from domain.failures import DECLINE_CODES, FailureCode
from domain.states import PaymentState
from epay import store

router = APIRouter(prefix="/pay", include_in_schema=False)

PAYMENT_ID = re.compile(r"pay_[0-9a-f]{32}")  # what api.context accepts as a payment id

STATIC = Path(__file__).resolve().parent / "static"
STRINGS: dict[str, dict[str, str]] = json.loads((STATIC / "strings.json").read_text("utf-8"))
LANGUAGES = ("ar", "en")
LANG_COOKIE = "epay_lang"
DUBAI = timezone(timedelta(hours=4), "GST")  # the UAE keeps no daylight saving time

PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
}


@dataclass
class PayPageHeaders:
    """ASGI middleware: ``PAGE_HEADERS`` on every response under ``/pay``, the errors and
    the static files included (a header of the same name that a handler set is replaced)."""

    app: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == "/pay" or path.startswith("/pay/")):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.decode("latin-1").lower() not in PAGE_HEADERS
                ]
                headers += [(k.encode(), v.encode()) for k, v in PAGE_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


# --- what the payer is shown ------------------------------------------------------------

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


def view_of(row: asyncpg.Record) -> tuple[View, str | None]:
    """Which part of the page the payment's state shows, and the message code with it.

    Message codes are the page's own (``strings.json`` has ``msg_<code>``), never the
    precise failure code: every decline is ``declined`` (``declined_final`` once the
    payment has ended)."""
    state = PaymentState(row["state"])
    if state == PaymentState.RESERVED:
        return "form", "declined" if _get(row, "last_decline") else None
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
    code = row["failure_code"] or ""
    if code in SPECIFIC_FAILURES:
        return "ended", code
    return "ended", "declined_final" if code in CARD_FAILURES else "failed"


def _get(row: asyncpg.Record, column: str) -> Any:
    """A column that a later migration adds: None on a database without it."""
    try:
        return row.get(column)
    except (KeyError, AttributeError):
        return None


def safe_return_url(url: str | None) -> str | None:
    """The department's ``return_url`` if it is a plain http(s) URL, else none."""
    if not url:
        return None
    parts = urlsplit(url)
    return url if parts.scheme in ("http", "https") and parts.netloc else None


def issued_text(at: datetime) -> str:
    return at.astimezone(DUBAI).strftime("%Y-%m-%d %H:%M")


def payer_view(row: asyncpg.Record) -> dict[str, Any]:
    """``GET /pay/{id}/status``: what the page needs, and nothing the payer must not learn
    (no failure code, no payer data, no token)."""
    view, message = view_of(row)
    state = PaymentState(row["state"])
    return {
        "state": state.value,
        "view": view,
        "step": state.value if state in IN_PROGRESS else None,
        "message": message,
        "amount": {
            "total": row["amount_total"],
            "currency": row["currency"],
            "lines": [{"code": x["code"], "amount": x["amount"]} for x in row["lines"]],
        },
        "method": (
            {"type": row["method_type"], "brand": row["method_brand"], "last4": row["method_last4"]}
            if row["method_type"]
            else None
        ),
        "receipt": (
            {
                "number": row["receipt_number"],
                "issued_at": row["receipt_issued_at"].isoformat(),
                "issued_at_text": issued_text(row["receipt_issued_at"]),
            }
            if row["receipt_number"]
            else None
        ),
        "department_confirmation": row["department_confirmation"],
        "return_url": safe_return_url(row["return_url"]),
    }


@dataclass(frozen=True)
class Names:
    department: dict[str, str]
    service: dict[str, str]


async def names_of(ctx: Any, row: asyncpg.Record) -> Names:
    found = await ctx.pool.fetchrow(
        "SELECT d.name_en AS d_en, d.name_ar AS d_ar, s.name_en AS s_en, s.name_ar AS s_ar "
        "FROM departments d JOIN services s ON s.department = d.code "
        "WHERE d.code = $1 AND s.code = $2",
        row["department"],
        row["service_code"],
    )
    if found is None:  # cannot happen (foreign keys); the codes are better than nothing
        return Names({"en": row["department"], "ar": row["department"]}, {})
    return Names(
        {"en": found["d_en"], "ar": found["d_ar"]}, {"en": found["s_en"], "ar": found["s_ar"]}
    )


def aed(fils: int, lang: str) -> str:
    """``AED 1,234.50`` (``1,234.50 درهم`` in Arabic) from an amount in fils."""
    number = f"{fils // 100:,}.{fils % 100:02d}"
    return STRINGS[lang]["amount"].format(amount=number)


def method_text(method: dict[str, Any] | None, lang: str) -> str:
    if not method:
        return ""
    if method["type"] == "e_dirham":
        brand = STRINGS[lang]["brand_e_dirham"]
    else:
        brand = {"visa": "Visa", "mastercard": "Mastercard"}.get(method["brand"] or "", "Card")
    return f"{brand} •••• {method['last4']}"


# --- the HTML ---------------------------------------------------------------------------


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _language(request: Request, asked: str | None) -> str:
    if asked in LANGUAGES:
        return str(asked)
    remembered = request.cookies.get(LANG_COOKIE)
    return remembered if remembered in LANGUAGES else "ar"


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


def _html(text: str, status: int = 200) -> Response:
    return Response(text, status_code=status, media_type="text/html; charset=utf-8")


# --- sessions and the checks of the page's calls ----------------------------------------


def _secure(ctx: Any) -> bool:
    return str(ctx.settings.public_url).startswith("https://")


def _set_session(response: Response, ctx: Any, session: payer_session.PayerSession) -> None:
    response.set_cookie(
        payer_session.COOKIE,
        payer_session.encode(ctx.settings.token_secret, session),
        max_age=payer_session.LIFETIME_SECONDS,
        path=f"/pay/{session.payment_id}",
        secure=_secure(ctx),
        httponly=True,
        samesite="strict",
    )


def _remember_language(response: Response, ctx: Any, lang: str) -> None:
    response.set_cookie(
        LANG_COOKIE,
        lang,
        max_age=365 * 24 * 3600,
        path="/pay",
        secure=_secure(ctx),
        httponly=True,
        samesite="strict",
    )


def _session_of(request: Request, ctx: Any, payment_id: str) -> payer_session.PayerSession | None:
    return payer_session.decode(
        ctx.settings.token_secret, payment_id, request.cookies.get(payer_session.COOKIE)
    )


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _same_origin(request: Request, ctx: Any) -> bool:
    """Whether the browser says the call comes from a page of this site. A browser sends
    ``Sec-Fetch-Site`` (and ``Origin`` on a POST); a call that says nothing is not a
    browser's cross-site request, and still needs the session and CSRF value."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    ours = {_origin_of(ctx.settings.public_url)}
    if host := request.headers.get("host"):
        ours.add(f"{request.url.scheme}://{host}".lower())
    return origin.lower() in ours


def page_session(request: Request, ctx: Any, payment_id: str) -> payer_session.PayerSession:
    """The checks of every JSON call of the page, in this order: a payment id, a
    same-origin request, a genuine session for this payment, its CSRF value."""
    if not PAYMENT_ID.fullmatch(payment_id):
        raise ApiError(404, "payment_not_found", "No such payment.", title="Not found")
    if not _same_origin(request, ctx):
        raise ApiError(403, "cross_site_request", "The request did not come from this site.")
    session = _session_of(request, ctx, payment_id)
    if session is None:
        raise ApiError(
            401,
            "payer_session_expired",
            "The payment page has expired; open the payment link again.",
        )
    if not payer_session.csrf_ok(
        ctx.settings.token_secret, session, request.headers.get("x-epay-csrf")
    ):
        raise ApiError(403, "csrf_token_invalid", "The page's security check failed; reload it.")
    return session


async def _row(ctx: Any, payment_id: str) -> asyncpg.Record:
    row = await store.get_payment_any_department(ctx.pool, payment_id)
    if row is None:
        raise ApiError(404, "payment_not_found", "No such payment.", title="Not found")
    return row


_METHOD = TypeAdapter(schemas.PaymentMethodBody)
_CHALLENGE = TypeAdapter(schemas.ChallengeBody)


async def _body(request: Request, adapter: TypeAdapter[Any]) -> Any:
    """The request's JSON body through ``adapter``, with the API's own 400/422 answers
    (parsed only once the session and CSRF value have been checked)."""
    try:
        return adapter.validate_json(await request.body())
    except ValidationError as exc:
        errors = [
            {**e, "loc": ("body", *e.get("loc", ()))}
            for e in exc.errors(include_input=False, include_url=False)
        ]
        raise RequestValidationError(errors) from None


def _view_response(
    ctx: Any, row: asyncpg.Record, session: payer_session.PayerSession, status: int = 200
) -> JSONResponse:
    response = JSONResponse(payer_view(row), status_code=status)
    _set_session(response, ctx, session.renewed())
    return response


# --- the routes -------------------------------------------------------------------------


STATIC_FILES = {"pay.css": "text/css; charset=utf-8", "pay.js": "text/javascript; charset=utf-8"}


@router.get("/static/{name}")
async def static_file(name: str) -> Response:
    """The page's own stylesheet and script (nothing else is served from here)."""
    if name not in STATIC_FILES:
        raise ApiError(404, "not_found", "No such file.", title="Not found")
    return Response((STATIC / name).read_bytes(), media_type=STATIC_FILES[name])


@router.get("/{payment_id}")
async def page(
    payment_id: str,
    request: Request,
    ctx: Ctx,
    token: str | None = None,
    lang: str | None = None,
) -> Response:
    """The link (``?token=``), exchanged for a session; or the page (session cookie)."""
    language = _language(request, lang)
    response = await _page(payment_id, request, ctx, token, language, lang)
    if lang in LANGUAGES:
        _remember_language(response, ctx, language)
    return response


async def _page(
    payment_id: str,
    request: Request,
    ctx: Any,
    token: str | None,
    language: str,
    asked: str | None,
) -> Response:
    if not PAYMENT_ID.fullmatch(payment_id):
        return _html(message_page(language, "not_found"), 404)
    session = _session_of(request, ctx, payment_id)
    if token is not None:
        try:
            row = await payment_for_payer(ctx, payment_id, token if token.isascii() else None)
        except ApiError:
            return _html(message_page(language, "not_found"), 404)
        if session is None and not _link_exchangeable(row):
            return _html(status_page(row, await names_of(ctx, row), language))
        target = f"/pay/{payment_id}" + (f"?lang={asked}" if asked in LANGUAGES else "")
        if session is not None:  # the cookie came: a same-site visit, which a redirect keeps
            moved: Response = RedirectResponse(target, status_code=303)
            _set_session(moved, ctx, session.renewed())
        else:  # perhaps from another site (opening_page says why no redirect)
            moved = _html(opening_page(language, target))
            _set_session(moved, ctx, payer_session.new_session(payment_id))
        return moved
    if session is None:
        return _html(message_page(language, "session_expired"), 403)
    row = await store.get_payment_any_department(ctx.pool, payment_id)
    if row is None:
        return _html(message_page(language, "not_found"), 404)
    csrf = payer_session.csrf_token(ctx.settings.token_secret, session)
    response = _html(payment_page(row, await names_of(ctx, row), language, csrf))
    _set_session(response, ctx, session.renewed())
    return response


def _link_exchangeable(row: asyncpg.Record) -> bool:
    """The link opens a session only before the payment has started: once a method has
    been handed over (even one declined) it is no longer the payer's way in."""
    return (
        row["state"] == PaymentState.RESERVED
        and not _get(row, "declines")
        and not _get(row, "last_decline")
    )


@router.get("/{payment_id}/status")
async def status(payment_id: str, request: Request, ctx: Ctx) -> JSONResponse:
    """Where the payment is, for the page's progress and receipt."""
    session = page_session(request, ctx, payment_id)
    return _view_response(ctx, await _row(ctx, payment_id), session)


@router.post("/{payment_id}/authorise")
async def authorise(payment_id: str, request: Request, ctx: Ctx) -> JSONResponse:
    """The page's card form: as ``POST /v1/payments/{id}/authorise``, answered with the
    payer's view (202 while the payment is still working)."""
    session = page_session(request, ctx, payment_id)
    body = await _body(request, _METHOD)
    row = await _row(ctx, payment_id)
    row, moved_on = await submit_method(
        ctx, row, body, Caller.of(request, session=session.session_id)
    )
    return _view_response(ctx, row, session, 200 if moved_on else 202)


@router.post("/{payment_id}/3ds")
async def three_d_secure(payment_id: str, request: Request, ctx: Ctx) -> JSONResponse:
    """The page's one-time-password step."""
    session = page_session(request, ctx, payment_id)
    body = await _body(request, _CHALLENGE)
    row = await _row(ctx, payment_id)
    row, moved_on = await submit_challenge(
        ctx, row, body.otp, Caller.of(request, session=session.session_id)
    )
    return _view_response(ctx, row, session, 200 if moved_on else 202)


@router.get("/{payment_id}/receipt.pdf")
async def receipt_pdf(payment_id: str, request: Request, ctx: Ctx) -> Response:
    """The receipt as a PDF, in English and Arabic; only a paid payment has one."""
    lang = _language(request, None)
    session = _session_of(request, ctx, payment_id) if PAYMENT_ID.fullmatch(payment_id) else None
    row = await store.get_payment_any_department(ctx.pool, payment_id) if session else None
    if row is None or row["state"] != PaymentState.SUCCEEDED or not row["receipt_number"]:
        return _html(message_page(lang, "not_found"), 404)
    pdf = receipt_document(row, await names_of(ctx, row))
    filename = f"receipt-{row['receipt_number']}.pdf"
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


# --- the receipt PDF --------------------------------------------------------------------

FONTS = STATIC / "fonts"


def receipt_document(row: asyncpg.Record, names: Names) -> bytes:
    """A one-page A4 receipt: English on the left, Arabic on the right (shaped by
    uharfbuzz through fpdf2's text shaping, so its letters join and run right to left)."""
    view = payer_view(row)
    en, ar = STRINGS["en"], STRINGS["ar"]
    pdf = FPDF(format="A4")
    pdf.set_title(f"{en['receipt_heading']} {row['receipt_number']}")
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
        ("reference", row["reference"], row["reference"]),
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
    for line in row["lines"]:
        code = "line_" + line["code"]
        pair(
            f"{en.get(code, line['code'])}: {aed(line['amount'], 'en')}",
            f"{ar.get(code, line['code'])}: {aed(line['amount'], 'ar')}",
            size=11,
            height=7,
        )
    pdf.line(18, pdf.get_y() + 1, pdf.w - 18, pdf.get_y() + 1)
    pdf.ln(3)
    pair(
        f"{en['amount_paid']}: {aed(row['amount_total'], 'en')}",
        f"{ar['amount_paid']}: {aed(row['amount_total'], 'ar')}",
        bold=True,
        size=13,
        height=9,
    )
    return bytes(pdf.output())
