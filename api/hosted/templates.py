"""The page's HTML: the payment page, the status page, the opening page, the message page.

Every piece is built with ``markup.html`` (or ``concat``), which escapes each value that is
not already ``Markup``: a text of ``strings.json`` or a field of the payment is escaped
where it is placed, without a call to remember."""

from __future__ import annotations

from typing import Any

from api.hosted.markup import Markup, concat, html, json_for_html
from api.hosted.view import STRINGS, method_text, payer_view, safe_return_url, view_of
from domain.money import format_aed
from domain.states import PaymentState
from store.page import Names
from store.payments import PaymentRow

NO_MARKUP = Markup("")


def _document(
    lang: str,
    body: Markup,
    *,
    csrf: str | None = None,
    script: bool = False,
    refresh_to: str | None = None,
) -> Markup:
    s = STRINGS[lang]
    other = s["switch_language_lang"]
    meta = html('<meta name="epay-csrf" content="{csrf}">', csrf=csrf) if csrf else NO_MARKUP
    if refresh_to:
        meta += html('<meta http-equiv="refresh" content="0;url={url}">', url=refresh_to)
    js = (
        html(
            '<script type="application/json" id="epay-strings">{strings}</script>'
            '<script src="/pay/static/pay.js" defer></script>',
            strings=json_for_html(s),
        )
        if script
        else NO_MARKUP
    )
    return html(
        '<!doctype html><html lang="{lang}" dir="{direction}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">{meta}<title>{title}</title>'
        '<link rel="icon" href="data:,"><link rel="stylesheet" href="/pay/static/pay.css">'
        "{js}</head><body>"
        '<header class="bar"><span class="brand">{brand}</span>'
        '<a class="lang" href="?lang={other}" lang="{other}" hreflang="{other}">'
        "{switch}</a></header>"
        '<main id="main">{body}</main></body></html>',
        lang=lang,
        direction="rtl" if lang == "ar" else "ltr",
        meta=meta,
        title=s["title"],
        js=js,
        brand=s["brand"],
        other=other,
        switch=s["switch_language"],
        body=body,
    )


def _summary(row: PaymentRow, names: Names, lang: str) -> Markup:
    s = STRINGS[lang]
    lines = concat(
        *(
            html(
                '<tr><th scope="row">{label}</th><td class="num">{amount}</td></tr>',
                label=s.get("line_" + line["code"], line["code"]),
                amount=format_aed(line["amount"], lang),
            )
            for line in row.lines
        )
    )
    return html(
        '<section class="card" id="summary" aria-labelledby="summary-heading">'
        '<h1 id="summary-heading">{heading}</h1><dl class="facts">'
        "<div><dt>{department_label}</dt><dd>{department}</dd></div>"
        "<div><dt>{service_label}</dt><dd>{service}</dd></div>"
        '<div><dt>{reference_label}</dt><dd dir="ltr" class="ref">{reference}</dd>'
        '</div></dl><table class="lines"><tbody>{lines}</tbody><tfoot><tr>'
        '<th scope="row">{total_label}</th>'
        '<td class="num" id="total">{total}</td></tr></tfoot>'
        "</table></section>",
        heading=s["summary_heading"],
        department_label=s["department"],
        department=names.department.get(lang, ""),
        service_label=s["service"],
        service=names.service.get(lang, ""),
        reference_label=s["reference"],
        reference=row.reference,
        lines=lines,
        total_label=s["total"],
        total=format_aed(row.amount_total, lang),
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
) -> Markup:
    s = STRINGS[lang]
    described = f"{ident}-hint {ident}-error" if hint else f"{ident}-error"
    hint_html = (
        html('<p class="hint" id="{ident}-hint">{hint}</p>', ident=ident, hint=s[hint])
        if hint
        else NO_MARKUP
    )
    return html(
        '<div class="field{extra}"><label for="{ident}">{label}</label>{hint}'
        '<input id="{ident}" name="{ident}" type="{kind}" inputmode="{inputmode}" '
        'autocomplete="{autocomplete}" maxlength="{maxlength}" dir="ltr" spellcheck="false" '
        'aria-describedby="{described}" required>'
        '<p class="field-error" id="{ident}-error" aria-live="off"></p></div>',
        extra=extra,
        ident=ident,
        label=s[label],
        hint=hint_html,
        kind=kind,
        inputmode=inputmode,
        autocomplete=autocomplete,
        maxlength=maxlength,
        described=described,
    )


def _pay_form(row: PaymentRow, lang: str, hidden: bool) -> Markup:
    s = STRINGS[lang]
    f = _field
    e_dirham_fields = concat(
        f(lang, "ed-number", "card_number", maxlength=19),
        f(lang, "ed-pin", "pin", kind="password", maxlength=6, extra=" short"),
    )
    card_fields = concat(
        f(lang, "cc-number", "card_number", autocomplete="cc-number"),
        html(
            '<div class="row">{month}{year}{cvv}</div>',
            month=f(lang, "cc-exp-month", "expiry_month", autocomplete="cc-exp-month", maxlength=2),
            year=f(lang, "cc-exp-year", "expiry_year", autocomplete="cc-exp-year", maxlength=4),
            cvv=f(
                lang,
                "cc-cvv",
                "cvv",
                hint="cvv_hint",
                kind="password",
                autocomplete="cc-csc",
                maxlength=4,
            ),
        ),
        f(
            lang,
            "cc-name",
            "cardholder_name",
            autocomplete="cc-name",
            inputmode="text",
            maxlength=100,
        ),
    )
    return html(
        '<section class="card" id="pay"{hidden} aria-labelledby="pay-heading">'
        '<form id="pay-form" novalidate><fieldset class="choice"><legend id="pay-heading">'
        "{heading}</legend>"
        '<label class="option"><input type="radio" name="method" value="e_dirham" checked> '
        "{e_dirham}</label>"
        '<label class="option"><input type="radio" name="method" value="card"> '
        "{card}</label></fieldset>"
        '<fieldset id="fields-e_dirham" class="method">'
        '<legend class="visually-hidden">{e_dirham}</legend>'
        "{e_dirham_fields}"
        '</fieldset><fieldset id="fields-card" class="method" hidden disabled>'
        '<legend class="visually-hidden">{card}</legend>'
        "{card_fields}"
        "</fieldset>"
        '<button type="submit" id="pay-button" class="primary">'
        "{pay}</button>"
        '<p class="note">{note}</p></form></section>',
        hidden=_hidden(hidden),
        heading=s["method_heading"],
        e_dirham=s["method_e_dirham"],
        card=s["method_card"],
        e_dirham_fields=e_dirham_fields,
        card_fields=card_fields,
        pay=s["pay_button"].format(amount=format_aed(row.amount_total, lang)),
        note=s["secure_note"],
    )


def _challenge(lang: str, hidden: bool) -> Markup:
    s = STRINGS[lang]
    return html(
        '<section class="card" id="challenge"{hidden} '
        'aria-labelledby="otp-heading"><h2 id="otp-heading">{heading}</h2>'
        '<p>{intro}</p><form id="otp-form" novalidate>'
        "{field}"
        '<button type="submit" id="otp-button" class="primary">{button}</button>'
        "</form></section>",
        hidden=_hidden(hidden),
        heading=s["otp_heading"],
        intro=s["otp_intro"],
        field=_field(lang, "otp", "otp_label", autocomplete="one-time-code", maxlength=10),
        button=s["otp_button"],
    )


def _progress(lang: str, step: str | None, hidden: bool) -> Markup:
    s = STRINGS[lang]
    steps = ("authorising", "confirming", "capturing")
    reached = steps.index(step) if step in steps else -1
    items = concat(
        *(
            html(
                '<li data-step="{name}" class="{state}"{current}>{text}</li>',
                name=name,
                state=_step_class(i, reached),
                current=Markup(' aria-current="step"') if i == reached else NO_MARKUP,
                text=s["step_" + name],
            )
            for i, name in enumerate(steps)
        )
    )
    return html(
        '<section class="card" id="progress"{hidden} '
        'aria-labelledby="progress-heading"><h2 id="progress-heading">'
        '{heading}</h2><ol class="steps">{items}</ol>'
        '<p id="progress-live" role="status" aria-live="polite">{live}</p>'
        '<p class="note">{wait}</p></section>',
        hidden=_hidden(hidden),
        heading=s["progress_heading"],
        items=items,
        live=s["step_" + step] if step in steps else "",
        wait=s["progress_wait"],
    )


def _hidden(hidden: bool) -> Markup:
    """The ``hidden`` attribute (with the space before it) of a part the state does not show."""
    return Markup(" hidden") if hidden else NO_MARKUP


def _step_class(i: int, reached: int) -> str:
    return "done" if i < reached else "current" if i == reached else ""


def _return_link(url: str | None, lang: str, ident: str) -> Markup:
    return html(
        '<a class="button" id="{ident}" href="{url}"{hidden}>{text}</a>',
        ident=ident,
        url=url or "#",
        hidden=_hidden(not url),
        text=STRINGS[lang]["return"],
    )


def _receipt(
    row: PaymentRow, payment_id: str, lang: str, view: dict[str, Any], hidden: bool
) -> Markup:
    s = STRINGS[lang]
    receipt = view["receipt"] or {}
    date = f"{receipt['issued_at_text']} ({s['dubai_time']})" if receipt else ""
    return html(
        '<section class="card" id="receipt"{hidden} '
        'aria-labelledby="receipt-heading"><h2 id="receipt-heading" tabindex="-1">'
        '{heading}</h2><p class="success">{thanks}</p>'
        '<dl class="facts">'
        '<div><dt>{number_label}</dt><dd id="r-number" class="code" dir="ltr">'
        "{number}</dd></div>"
        '<div><dt>{date_label}</dt><dd id="r-date">{date}</dd></div>'
        '<div><dt>{confirmation_label}</dt><dd id="r-confirmation" class="code" dir="ltr">'
        "{confirmation}</dd></div>"
        '<div><dt>{method_label}</dt><dd id="r-method">'
        "{method}</dd></div>"
        "<div><dt>{amount_label}</dt><dd>{amount}</dd></div>"
        '</dl><div class="actions">'
        '<button type="button" id="print-button" class="secondary">{print}</button>'
        '<a class="button secondary" id="pdf-link" href="/pay/{payment_id}/receipt.pdf" download>'
        "{download}</a>"
        "{return_link}"
        "</div></section>",
        hidden=_hidden(hidden),
        heading=s["receipt_heading"],
        thanks=s["receipt_thanks"],
        number_label=s["receipt_number"],
        number=receipt.get("number", ""),
        date_label=s["receipt_date"],
        date=date,
        confirmation_label=s["confirmation"],
        confirmation=view["department_confirmation"] or "",
        method_label=s["paid_with"],
        method=method_text(view["method"], lang),
        amount_label=s["amount_paid"],
        amount=format_aed(row.amount_total, lang),
        print=s["print"],
        payment_id=payment_id,
        download=s["download_pdf"],
        return_link=_return_link(view["return_url"], lang, "return-link"),
    )


def _ended(lang: str, view: dict[str, Any], hidden: bool) -> Markup:
    s = STRINGS[lang]
    message = s.get(f"msg_{view['message']}", "") if view["view"] == "ended" else ""
    return html(
        '<section class="card" id="ended"{hidden}>'
        '<h2>{heading}</h2><p id="ended-message">{message}</p>'
        "{return_link}"
        "</section>",
        hidden=_hidden(hidden),
        heading=s["status_heading"],
        message=message,
        return_link=_return_link(view["return_url"], lang, "ended-return-link"),
    )


def _notice(lang: str, code: str | None, shown: bool) -> Markup:
    text = STRINGS[lang].get(f"msg_{code}", "") if code and shown else ""
    return html(
        '<div id="notice" class="notice" role="alert" tabindex="-1"{hidden}>{text}</div>',
        hidden=_hidden(not text),
        text=text,
    )


def payment_page(row: PaymentRow, names: Names, lang: str, csrf: str) -> Markup:
    """The page of a payer with a session: every part is there, the state's shown; pay.js
    moves between them as the payment moves on (``payer_view``'s ``view``)."""
    view = payer_view(row)
    v = view["view"]
    body = concat(
        _notice(lang, view["message"], v == "form"),
        _summary(row, names, lang),
        _pay_form(row, lang, hidden=v != "form"),
        _challenge(lang, hidden=v != "challenge"),
        _progress(lang, view["step"], hidden=v != "progress"),
        _receipt(row, row.id, lang, view, hidden=v != "receipt"),
        _ended(lang, view, hidden=v != "ended"),
        Markup(
            '<noscript><p class="notice">JavaScript is needed to pay on this page.</p></noscript>'
        ),
        html(
            '<script type="application/json" id="epay-status">{view}</script>',
            view=json_for_html(view),
        ),
    )
    return _document(lang, body, csrf=csrf, script=True)


def status_page(row: PaymentRow, names: Names, lang: str) -> Markup:
    """A link opened for a payment that has started or ended, without a session: where the
    payment is, and no card form (nor the receipt: that needs the payer's session)."""
    s = STRINGS[lang]
    state = PaymentState(row.state)
    view, message = view_of(row)
    if state == PaymentState.SUCCEEDED:
        text = s["msg_paid"]
    elif view == "form":  # open again after a decline, for the page that tried
        text = s["msg_link_used"]
    elif view in ("progress", "challenge"):
        text = s["msg_in_progress"]
    else:
        text = s.get(f"msg_{message}", s["msg_failed"])
    body = html(
        '{summary}<section class="card" id="ended"><h2>{heading}</h2>'
        '<p id="ended-message">{text}</p>{return_link}</section>',
        summary=_summary(row, names, lang),
        heading=s["status_heading"],
        text=text,
        return_link=_return_link(safe_return_url(row.return_url), lang, "ended-return-link"),
    )
    return _document(lang, body)


def opening_page(lang: str, target: str) -> Markup:
    """The answer to the link: the page moves on to ``target`` by itself (a link too, for a
    browser that does not). A redirect would lose the session: a browser does not send a
    SameSite=Strict cookie on a redirect of a navigation another site started, such as the
    department's "Pay" button, whereas this page's own move is same-site. The link's URL,
    token and all, is replaced in the browser's history as a redirect's would be."""
    s = STRINGS[lang]
    body = html(
        '<section class="card" id="opening"><p>{opening}</p>'
        '<p><a id="open-payment-page" href="{target}">{open}</a>'
        "</p></section>",
        opening=s["opening"],
        target=target,
        open=s["open_payment_page"],
    )
    return _document(lang, body, refresh_to=target)


def message_page(lang: str, code: str, carry_on: str | None = None) -> Markup:
    """A page that says one thing and asks for nothing: no form, no payment details. With
    ``carry_on`` (a path of this site), a link there, for the browser that holds the
    payment's session: it is a same-site navigation, so the session's cookie goes with it."""
    s = STRINGS[lang]
    link = (
        html(
            '<p><a id="carry-on" href="{target}">{text}</a></p>',
            target=carry_on,
            text=s["carry_on_here"],
        )
        if carry_on
        else NO_MARKUP
    )
    body = html(
        '<section class="card" id="ended"><p id="ended-message">{text}</p>{link}</section>',
        text=s["msg_" + code],
        link=link,
    )
    return _document(lang, body)
