"""Signatures on every request ePay sends to a department's system.

A department must be able to refuse a forged call (anyone who can reach its confirmation
URL could otherwise mark a fine paid) and a replayed one. ePay signs each request with
HMAC-SHA256 under a secret it shares with that department alone, over the time of sending,
the method, the path with its query, and the body, and sends::

    ePay-Signature: t=1764633600,v1=<hex>[,v1=<hex>]

one ``v1`` per active secret: while a department's secret is being rotated both the old
and the new sign, so the department can switch at its own pace (docs/departments.md). A
department accepts the request if one ``v1`` matches a secret it holds and ``t`` is within
``TOLERANCE`` of its clock; a replay later than that is refused, and one within it carries
the same payment id and idempotency key as the original, which the department answers once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable

HEADER = "ePay-Signature"
TOLERANCE = 300  # seconds either side of the receiver's clock
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A department's signing secret, as handed to the department (once)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _message(timestamp: int, method: str, target: str, body: bytes) -> bytes:
    return b"%d.%s.%s." % (timestamp, method.upper().encode(), target.encode()) + body


def sign(secret: str, timestamp: int, method: str, target: str, body: bytes) -> str:
    """The ``v1`` signature of one request; ``target`` is the path with its query string."""
    return hmac.new(
        secret.encode(), _message(timestamp, method, target, body), hashlib.sha256
    ).hexdigest()


def signature_header(
    secrets_: Iterable[str], timestamp: int, method: str, target: str, body: bytes
) -> str:
    signatures = [f"v1={sign(s, timestamp, method, target, body)}" for s in secrets_]
    if not signatures:
        raise ValueError("no signing secret")
    return ",".join([f"t={timestamp}", *signatures])


def verify(
    header: str | None,
    secrets_: Iterable[str],
    method: str,
    target: str,
    body: bytes,
    now: int,
    tolerance: int = TOLERANCE,
) -> str | None:
    """None if the request is ePay's, else why not: ``signature_missing``,
    ``signature_malformed``, ``signature_expired`` or ``signature_invalid``."""
    if not header:
        return "signature_missing"
    timestamp: int | None = None
    given: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1" and value:
            given.append(value)
    if timestamp is None or not given:
        return "signature_malformed"
    if abs(now - timestamp) > tolerance:
        return "signature_expired"
    for secret in secrets_:
        expected = sign(secret, timestamp, method, target, body)
        if any(hmac.compare_digest(expected, g) for g in given):
            return None
    return "signature_invalid"
