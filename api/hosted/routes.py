"""The page's routes: the link and the page, its three JSON calls, its static files and
the receipt PDF."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import TypeAdapter, ValidationError

from api import payer_session, schemas
from api.context import Context, Ctx
from api.errors import ApiError
from api.hosted.receipt import receipt_document
from api.hosted.session import (
    PAYMENT_ID,
    language_of,
    page_session,
    remember_language,
    session_of,
    set_session,
)
from api.hosted.templates import message_page, opening_page, payment_page, status_page
from api.hosted.view import LANGUAGES, STATIC, payer_view
from api.payer import Caller, link_expired, payment_for_payer, submit_challenge, submit_method
from domain.states import PaymentState
from store import page as page_store
from store import payments
from store.page import Names
from store.payments import PaymentRow

router = APIRouter(prefix="/pay", include_in_schema=False)


def _html(text: str, status: int = 200) -> Response:
    return Response(text, status_code=status, media_type="text/html; charset=utf-8")


async def _row(ctx: Context, payment_id: str) -> PaymentRow:
    row = await payments.get_payment_any_department(ctx.pool, payment_id)
    if row is None:
        raise ApiError(404, "payment_not_found", "No such payment.", title="Not found")
    return row


async def _names(ctx: Context, row: PaymentRow) -> Names:
    return await page_store.names_of(ctx.pool, row.department, row.service_code)


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
    ctx: Context, row: PaymentRow, session: payer_session.PayerSession, status: int = 200
) -> JSONResponse:
    response = JSONResponse(payer_view(row), status_code=status)
    set_session(response, ctx, session.renewed())
    return response


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
    """The link (``?token=``), exchanged once for a session; or the page (session cookie).

    The first browser to open the link gets the session and the exchange is recorded on the
    payment; a later one without that session is told the link was opened (410), as is any
    browser once the payment's window is over. The browser with the session carries on."""
    language = language_of(request, lang)
    response = await _page(payment_id, request, ctx, token, language, lang)
    if lang in LANGUAGES:
        remember_language(response, ctx, language)
    return response


async def _page(
    payment_id: str,
    request: Request,
    ctx: Context,
    token: str | None,
    language: str,
    asked: str | None,
) -> Response:
    if not PAYMENT_ID.fullmatch(payment_id):
        return _html(message_page(language, "not_found"), 404)
    session = session_of(request, ctx, payment_id)
    if token is not None:
        try:
            linked = await payment_for_payer(ctx, payment_id, token if token.isascii() else None)
        except ApiError:
            return _html(message_page(language, "not_found"), 404)
        target = f"/pay/{payment_id}" + (f"?lang={asked}" if asked in LANGUAGES else "")
        if session is not None:  # the cookie came: a same-site visit, which a redirect keeps
            moved: Response = RedirectResponse(target, status_code=303)
            set_session(moved, ctx, session.renewed())
            return moved
        if link_expired(linked):
            return _html(message_page(language, "link_expired"), 410)
        if not _link_exchangeable(linked) and not await page_store.payer_link_used(
            ctx.pool, payment_id
        ):  # started on the token API, or ended: where it is, and no form
            return _html(status_page(linked, await _names(ctx, linked), language))
        if not await page_store.exchange_payer_link(ctx.pool, payment_id):
            # Opened before, by another browser or by this one arriving from another site
            # (which sends no SameSite=Strict cookie): the link is spent; the page's own
            # same-site link lets the browser that holds the session carry on.
            return _html(message_page(language, "link_opened", carry_on=f"/pay/{payment_id}"), 410)
        # Perhaps from another site (opening_page says why no redirect).
        moved = _html(opening_page(language, target))
        set_session(moved, ctx, payer_session.new_session(payment_id))
        return moved
    if session is None:
        return _html(message_page(language, "session_expired"), 403)
    row = await payments.get_payment_any_department(ctx.pool, payment_id)
    if row is None:
        return _html(message_page(language, "not_found"), 404)
    csrf = payer_session.csrf_token(ctx.settings.token_secret, session)
    response = _html(payment_page(row, await _names(ctx, row), language, csrf))
    set_session(response, ctx, session.renewed())
    return response


def _link_exchangeable(row: PaymentRow) -> bool:
    """The link opens a session only before the payment has started: once a method has
    been handed over (even one declined, on the token API too) it is no longer the payer's
    way in. ``store.page.exchange_payer_link`` repeats the check in its UPDATE."""
    return row.state == PaymentState.RESERVED and not row.declines and not row.last_decline


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
    lang = language_of(request, None)
    session = session_of(request, ctx, payment_id) if PAYMENT_ID.fullmatch(payment_id) else None
    row = await payments.get_payment_any_department(ctx.pool, payment_id) if session else None
    if row is None or row.state != PaymentState.SUCCEEDED or not row.receipt_number:
        return _html(message_page(lang, "not_found"), 404)
    pdf = receipt_document(row, await _names(ctx, row))
    filename = f"receipt-{row.receipt_number}.pdf"
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )
