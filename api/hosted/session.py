"""The payer's session and language cookies, and the checks of the page's JSON calls:
a payment id, the same origin, a genuine session for the payment, its CSRF value."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import Response

from api import payer_session
from api.context import Context
from api.errors import ApiError
from api.hosted.view import LANGUAGES

PAYMENT_ID = re.compile(r"pay_[0-9a-f]{32}")  # what api.context accepts as a payment id
LANG_COOKIE = "epay_lang"


def language_of(request: Request, asked: str | None) -> str:
    if asked in LANGUAGES:
        return str(asked)
    remembered = request.cookies.get(LANG_COOKIE)
    return remembered if remembered in LANGUAGES else "ar"


def _secure(ctx: Context) -> bool:
    return str(ctx.settings.public_url).startswith("https://")


def set_session(response: Response, ctx: Context, session: payer_session.PayerSession) -> None:
    response.set_cookie(
        payer_session.COOKIE,
        payer_session.encode(ctx.settings.token_secret, session),
        max_age=payer_session.LIFETIME_SECONDS,
        path=f"/pay/{session.payment_id}",
        secure=_secure(ctx),
        httponly=True,
        samesite="strict",
    )


def remember_language(response: Response, ctx: Context, lang: str) -> None:
    response.set_cookie(
        LANG_COOKIE,
        lang,
        max_age=365 * 24 * 3600,
        path="/pay",
        secure=_secure(ctx),
        httponly=True,
        samesite="strict",
    )


def session_of(
    request: Request, ctx: Context, payment_id: str
) -> payer_session.PayerSession | None:
    return payer_session.decode(
        ctx.settings.token_secret, payment_id, request.cookies.get(payer_session.COOKIE)
    )


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _same_origin(request: Request, ctx: Context) -> bool:
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


def page_session(request: Request, ctx: Context, payment_id: str) -> payer_session.PayerSession:
    """The checks of every JSON call of the page, in this order: a payment id, a
    same-origin request, a genuine session for this payment, its CSRF value."""
    if not PAYMENT_ID.fullmatch(payment_id):
        raise ApiError(404, "payment_not_found", "No such payment.", title="Not found")
    if not _same_origin(request, ctx):
        raise ApiError(403, "cross_site_request", "The request did not come from this site.")
    session = session_of(request, ctx, payment_id)
    if session is None:
        raise ApiError(
            401,
            "payer_session_expired",
            "The payment page has expired; the payment link opens once.",
        )
    if not payer_session.csrf_ok(
        ctx.settings.token_secret, session, request.headers.get("x-epay-csrf")
    ):
        raise ApiError(403, "csrf_token_invalid", "The page's security check failed; reload it.")
    return session
