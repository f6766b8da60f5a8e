"""The payer surface's limits: no card-testing oracle, no PIN guessing that locks a card.

Every method a payer hands over is counted in ``payer_attempts`` before it reaches the
workflow, and its outcome is filled in by the payment's records (store/payments.py) when the
authorisation ends (store/abuse.py counts and records them). Before a new method goes on,
four limits are checked (docs/security.md):

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
  declined in 10 minutes (one client testing many cards). An IPv4 address counts alone, an
  IPv6 one with its /64 network (``client_key``), which one household or one host is given
  whole: a client cannot step past the limit by taking another of its own addresses.

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

import dataclasses
import hashlib
import hmac
import ipaddress
import math
from dataclasses import dataclass
from datetime import timedelta

from asyncpg import Pool

from api.errors import ApiError
from epay.config import Settings
from store import abuse as payer_attempts
from store.abuse import Attempt

# The wrong-PIN limit has no window: only the card passing the PIN check on ePay, or an
# operator's clearance, ends it (ePay cannot see a right PIN given elsewhere). Its 429 still
# says when to come back, a day, so that no client retries in a loop.
PIN_RETRY_AFTER = timedelta(hours=24)


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


IPV6_CLIENT_PREFIX = 64
"""The IPv6 network one client is counted by: a /64 is the least one link, one phone or one
server is given (RFC 7421), and a host picks any address in it at will (temporary addresses,
RFC 8981), so counting each address apart would be no limit at all. A client given a wider
prefix (a /56 or /48 for a home or an office) can still change /64s: the per-card limits
hold there, and a wider grouping would count whole offices and mobile carriers as one."""


def client_key(address: str) -> str:
    """What the per-client limit counts ``address`` (the client's, as the API takes it) by:
    an IPv4 address as it is, an IPv6 one as its /64 network (``2001:db8:1:2::/64``), an
    IPv4-mapped IPv6 address (``::ffff:198.51.100.7``, a dual-stack socket's view of an IPv4
    client) as the IPv4 address, and anything that is no address (a test client's name) as
    given."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv4Address):
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    # From the integer, so that a zone (``fe80::1%eth0``) is dropped with the host bits.
    host_bits = 128 - IPV6_CLIENT_PREFIX
    network = ipaddress.IPv6Network((int(ip) >> host_bits << host_bits, IPV6_CLIENT_PREFIX))
    return str(network)


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


async def admit(pool: Pool, limits: Limits, attempt: Attempt) -> int:
    """Count ``attempt`` against the limits and record it (its id), or raise
    ``TooManyAttempts`` (``PinAttemptsExceeded`` for the wrong-PIN limit, whose refusal is
    recorded against the payment). The client is counted by ``client_key``, and recorded so."""
    attempt = dataclasses.replace(attempt, client=client_key(attempt.client))
    match await payer_attempts.admit(pool, limits, attempt):
        case payer_attempts.Admitted(attempt_id):
            return attempt_id
        case payer_attempts.MustWait(wait):
            raise TooManyAttempts(wait)
        case payer_attempts.AtPinLimit():
            raise PinAttemptsExceeded()
