"""The payer attempts (``payer_attempts``) and the wrong-PIN limit's records
(``pin_limit_refusals``, ``pin_limit_clearances``): what the payer surface's limits count.

api/abuse.py says what the limits are and answers a refused method with 429; this module
counts and records, each attempt read and written in one transaction under an advisory lock
on its card, so that concurrent submissions of one card cannot both slip under a limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from asyncpg import Connection, Pool

from domain.failures import FailureCode

AUTHORISED = "authorised"
WRONG_PIN = FailureCode.INVALID_PIN.value
# The outcomes the issuer gives only after the PIN was right (sandbox/issuer.py checks a card's
# PIN before its balance, and resets its wrong-PIN count on a right one): each ends the card's
# wrong-PIN count. A blocked card is refused before its PIN is checked: it ends nothing.
PIN_PASSED = (AUTHORISED, FailureCode.INSUFFICIENT_FUNDS.value)
SESSION_WINDOW = timedelta(minutes=15)
CARD_WINDOW = timedelta(hours=1)
CLIENT_WINDOW = timedelta(minutes=10)


class Thresholds(Protocol):
    """How many of each a payer may have; 0 is no limit (api.abuse.Limits)."""

    @property
    def wrong_pins(self) -> int: ...
    @property
    def card_failures(self) -> int: ...
    @property
    def client_cards(self) -> int: ...
    @property
    def session_methods(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Attempt:
    """A method a payer hands over, by keyed hashes of its card and page session (never the
    card number)."""

    payment_id: str
    attempt: int  # the payment's n-th method
    method_type: str
    card: bytes
    client: str
    session: bytes | None


@dataclass(frozen=True, slots=True)
class Admitted:
    attempt_id: int


@dataclass(frozen=True, slots=True)
class AtPinLimit:
    """The e-Dirham card has met the wrong-PIN limit; the refusal is recorded against the
    payment, so that the operator given it finds the card to clear."""


@dataclass(frozen=True, slots=True)
class MustWait:
    """A windowed limit is met: ``wait`` is how long until its oldest counted attempt leaves
    the window."""

    wait: timedelta


async def admit(
    pool: Pool, limits: Thresholds, attempt: Attempt
) -> Admitted | AtPinLimit | MustWait:
    """Count ``attempt`` against the limits and record it if none is met."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(encode($1::bytea, 'hex'), 0))",
            attempt.card,
        )
        now: datetime = await conn.fetchval("SELECT now()")
        if await _at_pin_limit(conn, limits, attempt):
            await conn.execute(
                """INSERT INTO pin_limit_refusals (payment_id, card_key) VALUES ($1, $2)
                   ON CONFLICT DO NOTHING""",
                attempt.payment_id,
                attempt.card,
            )
            return AtPinLimit()
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
            return MustWait(max(waits))
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
        return Admitted(attempt_id)


async def withdraw(pool: Pool, attempt_id: int) -> None:
    """Forget an attempt the workflow never took (it refused the update)."""
    await pool.execute("DELETE FROM payer_attempts WHERE id = $1", attempt_id)


async def record_outcome(conn: Connection, payment_id: str, outcome: str) -> None:
    """How the payer's pending method ended, in the transaction of the payment's records
    that learn it (store/payments.py)."""
    await conn.execute(
        "UPDATE payer_attempts SET outcome = $2 WHERE payment_id = $1 AND outcome IS NULL",
        payment_id,
        outcome,
    )


async def _session_wait(
    conn: Connection, limits: Thresholds, attempt: Attempt, now: datetime
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
    return _wait([r["created_at"] for r in rows], limits.session_methods, SESSION_WINDOW, now)


async def _card_wait(
    conn: Connection, limits: Thresholds, attempt: Attempt, now: datetime
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
    return _wait([r["created_at"] for r in failed], limits.card_failures, CARD_WINDOW, now)


async def _at_pin_limit(conn: Connection, limits: Thresholds, attempt: Attempt) -> bool:
    if not limits.wrong_pins or attempt.method_type != "e_dirham":
        return False
    return await wrong_pins(conn, attempt.card) >= limits.wrong_pins


async def wrong_pins(conn: Connection, card: bytes) -> int:
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
    conn: Connection, limits: Thresholds, attempt: Attempt, now: datetime
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
    return _wait([r["first"] for r in rows], limits.client_cards, CLIENT_WINDOW, now)


def _wait(
    newest_first: list[datetime], most: int, window: timedelta, now: datetime
) -> timedelta | None:
    """None while fewer than ``most`` attempts count; else how long until the oldest of the
    ``most`` newest leaves the window."""
    if len(newest_first) < most:
        return None
    return newest_first[most - 1] + window - now
