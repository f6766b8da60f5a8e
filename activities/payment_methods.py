"""The e-Dirham issuer and the card acquirer, reached over HTTP.

Every call carries an idempotency key derived from the payment, so a retry after a lost
answer finds the hold or authorisation that was made instead of making another. Final
answers (declines, bad PINs) come back as results; only transient trouble raises, so that
Temporal retries exactly what is worth retrying.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import compensation_begun
from domain.cards import MethodType
from domain.failures import DECLINE_CODES, ErrorType
from domain.models import (
    AuthorisationResult,
    AuthorisationStatus,
    AuthoriseRequest,
    ChallengeAnswer,
    FundsRequest,
    attempt_key,
)
from domain.refunds import RefundCall
from epay import crypto
from epay.http import error_code, raise_for_transient
from store import vault


class PaymentMethods:
    def __init__(
        self,
        pool: asyncpg.Pool,
        http: httpx.AsyncClient,
        *,
        vault_key: bytes,
        acquirer_url: str,
        issuer_url: str,
    ) -> None:
        self.pool = pool
        self.http = http
        self.vault_key = vault_key
        self.acquirer_url = acquirer_url
        self.issuer_url = issuer_url

    async def _card_data(self, req: AuthoriseRequest) -> dict[str, Any]:
        entry = await vault.vault_get(self.pool, req.vault_token)
        if entry is None or entry.payment_id != req.payment_id:
            raise ApplicationError(
                "the card data for this payment is no longer held",
                type=ErrorType.AUTHORISATION_FAILED,
                non_retryable=True,
            )
        return crypto.unseal(
            self.vault_key, entry.token, entry.payment_id, entry.nonce, entry.ciphertext
        )

    @activity.defn
    async def authorise(self, req: AuthoriseRequest) -> AuthorisationResult:
        """Place an e-Dirham hold or a card authorisation for the payment's total."""
        card = await self._card_data(req)
        if req.method_type == MethodType.E_DIRHAM:
            url = f"{self.issuer_url}/holds"
            body: dict[str, Any] = {"card_number": card["card_number"], "pin": card["pin"]}
        else:
            url = f"{self.acquirer_url}/authorisations"
            body = {k: card[k] for k in ("card_number", "expiry_month", "expiry_year", "cvv")}
            body["cardholder_name"] = card.get("cardholder_name", "")
        body |= {"amount": req.amount, "currency": "AED", "reference": req.payment_id}
        response = await self.http.post(
            url,
            json=body,
            headers={"Idempotency-Key": attempt_key(req.payment_id, "authorise", req.attempt)},
        )
        del card, body  # card data leaves memory with this call
        result = _authorisation_result(response)
        activity.logger.info("%s authorisation: %s", req.method_type, _outcome(result))
        return result

    @activity.defn
    async def complete_challenge(self, answer: ChallengeAnswer) -> AuthorisationResult:
        """Send the payer's 3-D Secure answer to the acquirer."""
        response = await self.http.post(
            f"{self.acquirer_url}/authorisations/{answer.authorisation_id}/3ds",
            json={"otp": answer.otp},
            headers={"Idempotency-Key": attempt_key(answer.payment_id, "3ds", answer.attempt)},
        )
        result = _authorisation_result(response, answer.authorisation_id)
        activity.logger.info("3-D Secure challenge: %s", _outcome(result))
        return result

    def _funds_url(self, req: FundsRequest, action: str) -> str:
        if req.method_type == MethodType.E_DIRHAM:
            return f"{self.issuer_url}/holds/{req.authorisation_id}/{action}"
        return f"{self.acquirer_url}/authorisations/{req.authorisation_id}/{action}"

    @activity.defn
    async def capture(self, req: FundsRequest) -> None:
        """Take the authorised funds; capturing twice captures once.

        Only an explicit refusal is final. Anything unclear (a timeout, the same request
        still in progress, an unknown authorisation, an unexpected answer) may hide a
        capture that happened, so it is retried with the same idempotency key.
        """
        response = await self.http.post(
            self._funds_url(req, "capture"),
            json={"amount": req.amount},
            headers={"Idempotency-Key": f"{req.payment_id}:capture"},
        )
        raise_for_transient(response)
        if response.status_code < 400:
            activity.logger.info("%s captured", req.method_type)
            return
        code = error_code(response)
        if code in CAPTURE_REFUSALS:
            raise ApplicationError(
                f"capture refused: {code}", type=ErrorType.CAPTURE_REFUSED, non_retryable=True
            )
        raise ApplicationError(f"capture unclear: {response.status_code} ({code})")

    @activity.defn
    async def void_authorisation(self, req: FundsRequest) -> None:
        """Release a hold or authorisation, by its id or, when the authorising call's answer
        was lost, by that call's idempotency key.

        A compensation must end up done, so anything unclear is retried. Only the partner's
        explicit, final refusal (it captured the authorisation, or does not know it) ends
        the call, as ``void_refused``: the workflow records it for an operator and goes on.
        """
        compensation_begun(method=req.method_type)
        await self.void(req)
        activity.logger.info("%s authorisation voided", req.method_type)

    async def void(self, req: FundsRequest) -> None:
        """``void_authorisation`` outside an activity (``epay ops resolve``): raises
        ``ApplicationError`` on trouble, non-retryable for a final refusal."""
        if req.authorisation_id:
            response = await self.http.post(
                self._funds_url(req, "void"),
                headers={"Idempotency-Key": attempt_key(req.payment_id, "void", req.attempt)},
            )
        else:  # the authorisation's answer never came: reverse whatever that request did
            base = self.issuer_url if req.method_type == MethodType.E_DIRHAM else self.acquirer_url
            response = await self.http.post(
                f"{base}/reversals",
                json={"idempotency_key": attempt_key(req.payment_id, "authorise", req.attempt)},
            )
        raise_for_transient(response)
        if response.status_code >= 400:
            code = error_code(response)
            raise ApplicationError(
                f"void refused: {code}",
                type=ErrorType.VOID_REFUSED,
                non_retryable=code in VOID_REFUSALS,
            )

    @activity.defn
    async def refund(self, req: RefundCall) -> None:
        """Return part or all of a captured payment through its authorisation or hold.

        As with capture, only an explicit refusal is final: anything unclear may hide a
        refund that was made, so it is asked again with the same idempotency key (one per
        refund), which refunds once however often it is asked.
        """
        if req.method_type == MethodType.E_DIRHAM:
            url = f"{self.issuer_url}/holds/{req.authorisation_id}/refunds"
        else:
            url = f"{self.acquirer_url}/authorisations/{req.authorisation_id}/refunds"
        response = await self.http.post(
            url, json={"amount": req.amount}, headers={"Idempotency-Key": f"{req.refund_id}:refund"}
        )
        raise_for_transient(response)
        if response.status_code < 400:
            activity.logger.info("%s refunded", req.method_type)
            return
        code = error_code(response)
        if code in REFUND_REFUSALS:
            raise ApplicationError(
                f"refund refused: {code}", type=ErrorType.REFUND_REFUSED, non_retryable=True
            )
        raise ApplicationError(f"refund unclear: {response.status_code} ({code})")


# The acquirer's and issuer's explicit, final refusals of a capture, a void, and a refund.
CAPTURE_REFUSALS = frozenset({"not_capturable", "amount_too_large"})
VOID_REFUSALS = frozenset({"not_voidable", "not_found"})
REFUND_REFUSALS = frozenset({"not_refundable", "refund_exceeds_captured"})


def _outcome(result: AuthorisationResult) -> str:
    return result.failure_code or result.status.value


def _authorisation_result(
    response: httpx.Response, authorisation_id: str | None = None
) -> AuthorisationResult:
    raise_for_transient(response)
    if response.status_code in (200, 201):
        data = response.json()
        status = (
            AuthorisationStatus.REQUIRES_ACTION
            if data.get("status") == "requires_action"
            else AuthorisationStatus.AUTHORISED
        )
        return AuthorisationResult(status=status, authorisation_id=data.get("id", authorisation_id))
    code = error_code(response)
    if code in DECLINE_CODES:
        return AuthorisationResult(
            status=AuthorisationStatus.DECLINED,
            authorisation_id=authorisation_id,
            failure_code=code,
        )
    raise ApplicationError(
        f"unexpected answer {response.status_code} ({code})",
        type="authorisation_failed",
        non_retryable=True,
    )
