"""The payer surface's limits: no card-testing oracle, no PIN guessing that locks a card.

Every method a payer hands over is counted in ``payer_attempts`` before it reaches the
workflow, and its outcome is filled in by the payment's records (epay.store) when the
authorisation ends. Before a new method goes on, four limits are checked (docs/security.md):

- **per payment**: the workflow takes at most ``MAX_METHODS`` methods (the token API one:
  its decline is final, as the contract says);
- **per hosted-page session**: ``EPAY_PAYER_SESSION_METHODS`` in 15 minutes;
- **per card**, across payments, by a keyed hash of its number (never the number):
  ``EPAY_PAYER_CARD_FAILURES`` declined or unanswered methods in an hour, and for an e-Dirham
  card ``EPAY_PAYER_WRONG_PINS`` wrong PINs since it last passed the issuer's PIN check on
  ePay (``PIN_PASSED``: it paid, or the issuer found its balance too low), however long ago,
  or since an operator cleared its count (``epay ops clear-pin-limit``, the
  ``pin_limit_clearances`` table). The issuer locks a card at its third wrong PIN in a row,
  forgetting its count only on a right PIN; ePay counts as the issuer does, with no time
  window, and stops asking before the PIN that could lock the card, so that a stranger who
  knows a resident's card number cannot lock it by guessing, however slowly;
- **per client address**, across payments: ``EPAY_PAYER_CLIENT_CARDS`` distinct cards
  declined in 10 minutes (one client testing many cards).

A refused method gets 429 ``too_many_attempts`` with ``Retry-After``: when the oldest attempt
that counts leaves its window. The wrong-PIN limit, which has no window and which waiting
does not end, gets its own code, ``pin_attempts_exceeded`` (the page tells the payer to use
another card or ask for the card to be cleared), with ``Retry-After`` ``PIN_RETRY_AFTER``;
its refusal is kept (``pin_limit_refusals``) so that the operator given that payment finds
the card to clear. The count is read and the attempt written in one transaction under an
advisory lock on the card, so that concurrent submissions of one card cannot both slip under
a limit. The client address is the peer's, or behind a proxy named in
``EPAY_FORWARDED_ALLOW_IPS`` the one it forwards (``epay api``).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from api.errors import ApiError
from domain.failures import FailureCode
from epay.config import Settings

AUTHORISED = "authorised"
WRONG_PIN = FailureCode.INVALID_PIN.value
# The outcomes the issuer gives only after the PIN was right (sandbox/issuer.py checks a card's
# PIN before its balance, and resets its wrong-PIN count on a right one): each ends the card's
# wrong-PIN count. A blocked card is refused before its PIN is checked: it ends nothing.
PIN_PASSED = (AUTHORISED, FailureCode.INSUFFICIENT_FUNDS.value)
SESSION_WINDOW = timedelta(minutes=15)
CARD_WINDOW = timedelta(hours=1)
# The wrong-PIN limit has no window: only the card passing the PIN check on ePay, or an
# operator's clearance, ends it (ePay cannot see a right PIN given elsewhere). Its 429 still
# says when to come back, a day, so that no client retries in a loop.
PIN_RETRY_AFTER = timedelta(hours=24)
CLIENT_WINDOW = timedelta(minutes=10)


@dataclass(frozen=True)
class Limits:
    """How many of each a payer may have; 0 is no limit."""

    wrong_pins: int
    card_failures: int
    client_cards: int
    session_methods: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        def resolved(value: int | None, production_default: int) -> int:
            if value is not None:
                return value
            return production_default if settings.production else 0

        return cls(
            wrong_pins=resolved(settings.payer_wrong_pins, 2),
            card_failures=resolved(settings.payer_card_failures, 5),
            client_cards=resolved(settings.payer_client_cards, 10),
            session_methods=settings.payer_session_methods,
        )


def _key(secret: bytes, purpose: bytes, value: str) -> bytes:
    """A keyed hash of ``value`` for one purpose, under a key derived from the token secret."""
    derived = hmac.new(secret, b"epay-payer-limits:" + purpose, hashlib.sha256).digest()
    return hmac.new(derived, value.encode(), hashlib.sha256).digest()


def card_key(secret: bytes, number: str) -> bytes:
    return _key(secret, b"card", number)


def session_key(secret: bytes, session: str) -> bytes:
    return _key(secret, b"session", session)


class TooManyAttempts(ApiError):
    def __init__(
        self,
        retry_after: timedelta,
        code: str = "too_many_attempts",
        detail: str = "Too many payment attempts; try again later.",
    ) -> None:
        super().__init__(429, code, detail)
        self.retry_after = max(1, math.ceil(retry_after.total_seconds()))
        self.headers = {"Retry-After": str(self.retry_after)}


class PinAttemptsExceeded(TooManyAttempts):
    """The e-Dirham card has met the wrong-PIN limit: waiting does not end it, only the card
    passing the PIN check on ePay or an operator's clearance."""

    def __init__(self) -> None:
        super().__init__(
            PIN_RETRY_AFTER,
            "pin_attempts_exceeded",
            "This e-Dirham card has had too many wrong PINs on ePay and is not sent to the "
            "issuer; pay with another card, or have the card cleared by the department.",
        )


@dataclass(frozen=True)
class Attempt:
    payment_id: str
    attempt: int  # the payment's n-th method
    method_type: str
    card: bytes
    client: str
    session: bytes | None


async def admit(pool: asyncpg.Pool, limits: Limits, attempt: Attempt) -> int:
    """Count ``attempt`` against the limits and record it (its id), or raise
    ``TooManyAttempts`` (``PinAttemptsExceeded`` for the wrong-PIN limit, whose refusal is
    recorded against the payment)."""
    refusal: TooManyAttempts
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(encode($1::bytea, 'hex'), 0))",
            attempt.card,
        )
        now = await conn.fetchval("SELECT now()")
        if await _at_pin_limit(conn, limits, attempt):
            await conn.execute(
                """INSERT INTO pin_limit_refusals (payment_id, card_key) VALUES ($1, $2)
                   ON CONFLICT DO NOTHING""",
                attempt.payment_id,
                attempt.card,
            )
            refusal = PinAttemptsExceeded()
        elif waits := [
            wait
            for wait in (
                await _session_wait(conn, limits, attempt, now),
                await _card_wait(conn, limits, attempt, now),
                await _client_wait(conn, limits, attempt, now),
            )
            if wait is not None
        ]:
            refusal = TooManyAttempts(max(waits))
        else:
            attempt_id: int = await conn.fetchval(
                """INSERT INTO payer_attempts (payment_id, attempt, method_type, card_key,
                       session_key, client) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
                attempt.payment_id,
                attempt.attempt,
                attempt.method_type,
                attempt.card,
                attempt.session,
                attempt.client,
            )
            return attempt_id
    raise refusal  # after the transaction, which keeps the refusal's record


async def withdraw(pool: asyncpg.Pool, attempt_id: int) -> None:
    """Forget an attempt the workflow never took (it refused the update)."""
    await pool.execute("DELETE FROM payer_attempts WHERE id = $1", attempt_id)


async def _session_wait(
    conn: asyncpg.Connection, limits: Limits, attempt: Attempt, now: object
) -> timedelta | None:
    if not limits.session_methods or attempt.session is None:
        return None
    rows = await conn.fetch(
        """SELECT created_at FROM payer_attempts
           WHERE session_key = $1 AND created_at > now() - $2::interval
           ORDER BY created_at DESC LIMIT $3""",
        attempt.session,
        SESSION_WINDOW,
        limits.session_methods,
    )
    return _wait(rows, limits.session_methods, SESSION_WINDOW, now)


async def _card_wait(
    conn: asyncpg.Connection, limits: Limits, attempt: Attempt, now: object
) -> timedelta | None:
    if not limits.card_failures:
        return None
    failed = await conn.fetch(
        """SELECT created_at FROM payer_attempts
           WHERE card_key = $1 AND created_at > now() - $2::interval
             AND outcome IS DISTINCT FROM $3
           ORDER BY created_at DESC LIMIT $4""",
        attempt.card,
        CARD_WINDOW,
        AUTHORISED,
        limits.card_failures,
    )
    return _wait(failed, limits.card_failures, CARD_WINDOW, now)


async def _at_pin_limit(conn: asyncpg.Connection, limits: Limits, attempt: Attempt) -> bool:
    if not limits.wrong_pins or attempt.method_type != "e_dirham":
        return False
    return await wrong_pins(conn, attempt.card) >= limits.wrong_pins


async def wrong_pins(conn: asyncpg.Connection, card: bytes) -> int:
    """The card's wrong PINs as the issuer counts them (one still unanswered may be wrong
    too), however old: since its last attempt that passed the PIN check, or its last
    clearance by an operator, whichever is later."""
    count: int = await conn.fetchval(
        """SELECT count(*) FROM payer_attempts
           WHERE card_key = $1 AND (outcome IS NULL OR outcome = $2)
             AND created_at > greatest(
                 (SELECT max(created_at) FROM payer_attempts
                  WHERE card_key = $1 AND outcome = ANY($3::text[])),
                 (SELECT max(created_at) FROM pin_limit_clearances WHERE card_key = $1),
                 '-infinity')""",
        card,
        WRONG_PIN,
        list(PIN_PASSED),
    )
    return count


async def _client_wait(
    conn: asyncpg.Connection, limits: Limits, attempt: Attempt, now: object
) -> timedelta | None:
    if not limits.client_cards:
        return None
    rows = await conn.fetch(
        """SELECT card_key, min(created_at) AS first FROM payer_attempts
           WHERE client = $1 AND created_at > now() - $2::interval
             AND outcome IS DISTINCT FROM 'authorised' AND card_key <> $3
           GROUP BY card_key ORDER BY first DESC LIMIT $4""",
        attempt.client,
        CLIENT_WINDOW,
        attempt.card,
        limits.client_cards,
    )
    if len(rows) < limits.client_cards:
        return None
    return _wait(
        [{"created_at": r["first"]} for r in rows], limits.client_cards, CLIENT_WINDOW, now
    )


def _wait(
    newest_first: list[asyncpg.Record] | list[dict[str, object]],
    most: int,
    window: timedelta,
    now: object,
) -> timedelta | None:
    """None while fewer than ``most`` attempts count; else how long until the oldest of the
    ``most`` newest leaves the window."""
    if len(newest_first) < most:
        return None
    oldest = newest_first[most - 1]["created_at"]
    return oldest + window - now  # type: ignore[no-any-return, operator]
