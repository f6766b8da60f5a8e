"""The payer's side: hand over a payment method, answer a 3-D Secure challenge.

The token in ``next_url`` is the payer's capability for that payment alone, until the
payment's window ends, and on this token API only while the link has not been opened on the
payment page: once a page session exists, the page is the payer's one way in. Card data is
checked here (Luhn, expiry, CVV) and then sealed into the vault; the workflow receives only
a vault token and the card's brand and last four digits.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse

from api import abuse, schemas, temporal_calls, views
from api.context import Context, Ctx, PaymentId
from api.departments import PROBLEMS
from api.errors import ApiError, field_error, not_found
from domain.cards import (
    MethodSummary,
    MethodType,
    brand_of,
    cvv_length,
    expiry_ok,
    luhn_ok,
    normalise_number,
)
from domain.models import PaymentMethodSubmission
from domain.states import PaymentState
from epay import crypto
from store import abuse as payer_attempts
from store import page as page_store
from store import payments, vault
from store.abuse import Attempt
from store.payments import PaymentRow

router = APIRouter(prefix="/v1", tags=["payers"])

# The payer's calls can also be refused by the payer limits (api/abuse.py): 429, Retry-After.
PAYER_PROBLEMS = {
    **PROBLEMS,
    410: {"model": None, "content": {"application/problem+json": {}}},
    429: {
        "model": None,
        "content": {"application/problem+json": {}},
        "headers": {
            "Retry-After": {
                "description": "Seconds until a method may be tried again",
                "schema": {"type": "integer"},
            }
        },
    },
}

# How long the payer's call waits for the payment to move on before answering 202.
WAIT_FOR_PROGRESS_SECONDS = 10.0


async def payment_for_payer(ctx: Context, payment_id: str, token: str | None) -> PaymentRow:
    row = await payments.get_payment_any_department(ctx.pool, payment_id)
    if row is None or not crypto.payer_token_ok(ctx.settings.token_secret, payment_id, token):
        raise not_found()
    return row


def link_expired(row: PaymentRow, now: datetime | None = None) -> bool:
    """Whether the payment's link has outlived the payment's window (``expires_at``, fixed
    when the payment is created), after which it opens nothing. The token carries no expiry
    of its own: every check of it reads the payment, whose window is the one bound that
    matters, so tokens made before this check are bounded the same way."""
    return (now or datetime.now(UTC)) >= row.expires_at


async def payment_for_token_api(ctx: Context, payment_id: str, token: str | None) -> PaymentRow:
    """The payment for a call of the token API: the token must be the payment's (else 404),
    the link not yet opened on the payment page (409 ``payer_link_used``: the department's
    token API and the payer's page never both hand over methods for one payment) and the
    payment's window not over (410 ``payer_link_expired``)."""
    row = await payment_for_payer(ctx, payment_id, token)
    if await page_store.payer_link_used(ctx.pool, payment_id):
        raise ApiError(
            409,
            "payer_link_used",
            "The payment link has been opened on the payment page; the payer pays there.",
        )
    if link_expired(row):
        raise ApiError(410, "payer_link_expired", "The payment's time to pay has run out.")
    return row


def _check_method(
    body: schemas.CardMethod | schemas.EDirhamMethod,
) -> tuple[str, MethodSummary, dict[str, object]]:
    """The card's number and a summary, or a 422 that names the field (never its value)."""
    number = normalise_number(body.card_number)
    if not luhn_ok(number):
        raise field_error("card_number", "invalid_card_number", "The card number is not valid.")
    if isinstance(body, schemas.EDirhamMethod):
        if len(number) != 16:
            raise field_error(
                "card_number", "invalid_card_number", "An e-Dirham card number has 16 digits."
            )
        summary = MethodSummary(type=MethodType.E_DIRHAM, brand="e_dirham", last4=number[-4:])
        return number, summary, {"card_number": number, "pin": body.pin}
    if not expiry_ok(body.expiry_month, body.expiry_year, datetime.now(UTC).date()):
        raise field_error(
            "expiry_month", "invalid_expiry", "The expiry date is not valid or has passed."
        )
    if len(body.cvv) != cvv_length(number):
        raise field_error(
            "cvv", "invalid_cvv", f"The security code has {cvv_length(number)} digits."
        )
    summary = MethodSummary(type=MethodType.CARD, brand=brand_of(number), last4=number[-4:])
    return (
        number,
        summary,
        {
            "card_number": number,
            "expiry_month": body.expiry_month,
            "expiry_year": body.expiry_year,
            "cvv": body.cvv,
            "cardholder_name": body.cardholder_name,
        },
    )


async def _when_moved_on(
    ctx: Context, payment_id: str, waiting: set[PaymentState], declines_before: int
) -> tuple[PaymentRow, bool]:
    """The payment once it has left ``waiting`` or had the method declined (True), or where
    it is when the wait is over (False).

    A method declined on the page returns the payment to ``reserved``, a state it waits in,
    so the decline is told by the count of declined methods going up: the payer hears of a
    decline as soon as of a success, not when the wait runs out."""
    deadline = time.monotonic() + WAIT_FOR_PROGRESS_SECONDS
    while True:
        row = await payments.get_payment_any_department(ctx.pool, payment_id)
        assert row is not None
        moved_on = row.state not in waiting or row.declines > declines_before
        if moved_on or time.monotonic() >= deadline:
            return row, moved_on
        await asyncio.sleep(0.1)


Token = Annotated[str | None, Query(alias="token", include_in_schema=True)]
TokenHeader = Annotated[str | None, Header(alias="X-Payment-Token")]


@router.post(
    "/payments/{payment_id}/authorise",
    response_model=schemas.Payment,
    responses={202: {"model": schemas.Payment, "description": "Still working"}, **PAYER_PROBLEMS},
)
async def authorise(
    payment_id: PaymentId,
    body: schemas.PaymentMethodBody,
    ctx: Ctx,
    request: Request,
    token: Token = None,
    x_payment_token: TokenHeader = None,
) -> JSONResponse:
    """Pay with an e-Dirham card (PIN) or a credit card."""
    row = await payment_for_token_api(ctx, payment_id, x_payment_token or token)
    row, moved_on = await submit_method(ctx, row, body, Caller.of(request))
    body_out = views.as_json(views.payment(row, ctx.settings))
    return JSONResponse(body_out, status_code=200 if moved_on else 202)


@dataclass(frozen=True)
class Caller:
    """Who hands over a payment method: what the payer surface's limits count by.

    ``session`` is the hosted page's payer session (None on the token API); on the page a
    declined method leaves the payment open for another try, within its limits.
    """

    client: str
    session: str | None = None

    @classmethod
    def of(cls, request: Request, session: str | None = None) -> Caller:
        return cls(client=request.client.host if request.client else "unknown", session=session)

    @property
    def from_page(self) -> bool:
        return self.session is not None


async def submit_method(
    ctx: Context, row: PaymentRow, body: schemas.PaymentMethodBody, caller: Caller
) -> tuple[PaymentRow, bool]:
    """Check, seal and hand over a payment method; the payment's row once it has moved on
    (True) or when the wait is over (False). Raises ``ApiError`` (422 for a malformed card,
    409 when the payment takes no method now)."""
    payment_id = row.id
    number, summary, card_data = _check_method(body)
    method_number = row.declines + 1
    # The workflow's validator has the last word: the records can say `authorising` for a
    # method whose update was lost with its workflow task, and then the payer may try again.
    if row.state not in (PaymentState.RESERVED, PaymentState.AUTHORISING):
        raise ApiError(
            409,
            "not_awaiting_method",
            f"The payment is {row.state}; it takes no payment method now.",
        )
    secret = ctx.settings.token_secret
    attempt_id = await abuse.admit(
        ctx.pool,
        abuse.Limits.of(ctx.settings),
        Attempt(
            payment_id=payment_id,
            attempt=method_number,
            method_type=summary.type,
            card=abuse.card_key(secret, number),
            client=caller.client,
            session=abuse.session_key(secret, caller.session) if caller.session else None,
        ),
    )
    del number
    vault_token = crypto.new_vault_token()
    nonce, ciphertext = crypto.seal(ctx.settings.vault_key, vault_token, payment_id, card_data)
    del card_data
    await vault.vault_put(ctx.pool, vault_token, payment_id, nonce, ciphertext)
    try:
        await temporal_calls.submit_payment_method(
            ctx.temporal,
            secret,
            payment_id,
            PaymentMethodSubmission(
                method=summary, vault_token=vault_token, may_try_again=caller.from_page
            ),
            method_number,
        )
    except temporal_calls.UpdateRejected:
        await vault.vault_discard(ctx.pool, vault_token)
        await payer_attempts.withdraw(ctx.pool, attempt_id)
        raise ApiError(
            409, "not_awaiting_method", f"The payment ({row.state}) takes no payment method now."
        ) from None
    return await _when_moved_on(
        ctx, payment_id, {PaymentState.RESERVED, PaymentState.AUTHORISING}, row.declines
    )


@router.post(
    "/payments/{payment_id}/3ds",
    response_model=schemas.Payment,
    responses={202: {"model": schemas.Payment, "description": "Still working"}, **PAYER_PROBLEMS},
)
async def three_d_secure(
    payment_id: PaymentId,
    body: schemas.ChallengeBody,
    ctx: Ctx,
    request: Request,
    token: Token = None,
    x_payment_token: TokenHeader = None,
) -> JSONResponse:
    """Answer the card's 3-D Secure challenge with the one-time code."""
    row = await payment_for_token_api(ctx, payment_id, x_payment_token or token)
    row, moved_on = await submit_challenge(ctx, row, body.otp, Caller.of(request))
    body_out = views.as_json(views.payment(row, ctx.settings))
    return JSONResponse(body_out, status_code=200 if moved_on else 202)


async def submit_challenge(
    ctx: Context, row: PaymentRow, otp: str, caller: Caller
) -> tuple[PaymentRow, bool]:
    """Hand over the 3-D Secure code; the payment's row as for ``submit_method``."""
    payment_id = row.id
    if row.state != PaymentState.REQUIRES_ACTION:
        raise ApiError(
            409, "not_awaiting_challenge", f"The payment is {row.state}; no challenge is open."
        )
    try:
        await temporal_calls.submit_challenge_answer(
            ctx.temporal,
            ctx.settings.token_secret,
            payment_id,
            otp,
            row.declines + 1,
        )
    except temporal_calls.UpdateRejected:
        raise ApiError(
            409,
            "not_awaiting_challenge",
            f"No challenge is open for this payment ({row.state}).",
        ) from None
    return await _when_moved_on(
        ctx, payment_id, {PaymentState.REQUIRES_ACTION, PaymentState.AUTHORISING}, row.declines
    )
