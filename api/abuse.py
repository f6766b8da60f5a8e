"""The payer surface's limits: no card-testing oracle, no PIN guessing that locks a card.

Every method a payer hands over is counted in ``payer_attempts`` before it reaches the
workflow, and its outcome is filled in by the payment's records (epay.store) when the
authorisation ends. Before a new method goes on, four limits are checked (docs/security.md):

- **per payment**: the workflow takes at most ``MAX_METHODS`` methods (the token API one:
  its decline is final, as the contract says);
- **per hosted-page session**: ``EPAY_PAYER_SESSION_METHODS`` in 15 minutes;
- **per card**, across payments, by a keyed hash of its number (never the number):
  ``EPAY_PAYER_CARD_FAILURES`` declined or unanswered methods in an hour, and for an e-Dirham
  card ``EPAY_PAYER_WRONG_PINS`` wrong PINs since it last paid, however long ago. The issuer
  locks a card at its third wrong PIN in a row, forgetting its count only on a right PIN;
  ePay counts as the issuer does, with no time window, and stops asking before the PIN that
  could lock the card, so that a stranger who knows a resident's card number cannot lock it
  by guessing, however slowly;
- **per client address**, across payments: ``EPAY_PAYER_CLIENT_CARDS`` distinct cards
  declined in 10 minutes (one client testing many cards).

A refused method gets 429 ``too_many_attempts`` with ``Retry-After``: when the oldest attempt
that counts leaves its window; for the wrong PINs, which have none, ``PIN_RETRY_AFTER``. The
count is read and the attempt written in one transaction under an advisory lock on the card,
so that concurrent submissions of one card cannot both slip under a limit. The client address
is the peer's, or behind a proxy named in ``EPAY_FORWARDED_ALLOW_IPS`` the one it forwards
(``epay api``).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from api.errors import ApiError
from epay.config import Settings

AUTHORISED = "authorised"
WRONG_PIN = "invalid_pin"
SESSION_WINDOW = timedelta(minutes=15)
CARD_WINDOW = timedelta(hours=1)
# The wrong-PIN limit has no window: only the card paying ends it (ePay cannot see a right PIN
# given elsewhere). Its 429 still says when to come back, a day, so that no client retries
# in a loop.
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
    def __init__(self, retry_after: timedelta) -> None:
        super().__init__(
            429,
            "too_many_attempts",
            "Too many payment attempts; try again later.",
        )
        self.retry_after = max(1, math.ceil(retry_after.total_seconds()))
        self.headers = {"Retry-After": str(self.retry_after)}


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
    ``TooManyAttempts``."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(encode($1::bytea, 'hex'), 0))",
            attempt.card,
        )
        now = await conn.fetchval("SELECT now()")
        waits = [
            wait
            for wait in (
                await _session_wait(conn, limits, attempt, now),
                await _card_wait(conn, limits, attempt, now),
                await _client_wait(conn, limits, attempt, now),
            )
            if wait is not None
        ]
        if waits:
            raise TooManyAttempts(max(waits))
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
    waits: list[timedelta] = []
    if limits.card_failures:
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
        wait = _wait(failed, limits.card_failures, CARD_WINDOW, now)
        if wait is not None:
            waits.append(wait)
    if limits.wrong_pins and attempt.method_type == "e_dirham":
        # The wrong PINs since the card last paid, as the issuer counts them (one still
        # unanswered may be wrong too), however old.
        wrong: int = await conn.fetchval(
            """SELECT count(*) FROM payer_attempts
               WHERE card_key = $1 AND (outcome IS NULL OR outcome = $2)
                 AND created_at > coalesce(
                     (SELECT max(created_at) FROM payer_attempts
                      WHERE card_key = $1 AND outcome = $3),
                     '-infinity')""",
            attempt.card,
            WRONG_PIN,
            AUTHORISED,
        )
        if wrong >= limits.wrong_pins:
            waits.append(PIN_RETRY_AFTER)
    return max(waits) if waits else None


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
