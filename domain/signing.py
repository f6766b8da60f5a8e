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
from dataclasses import dataclass

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


MAX_HEADER_LENGTH = 4096
"""The longest header read: ``t`` and some 60 ``v1`` (67 characters each; ePay writes one per
active secret, two while a secret is rotated). A longer one is refused before it is split,
so that no caller makes the receiver split and compare at length."""
_TIMESTAMP_DIGITS = 12  # seconds since 1970 stay under 12 digits for 30,000 years
_HEX = frozenset("0123456789abcdef")
_SIGNATURE_LENGTH = 64  # hex digits of an HMAC-SHA256


@dataclass(frozen=True)
class Signed:
    """What a well-formed ``ePay-Signature`` header says: when, and the ``v1`` signatures."""

    timestamp: int
    signatures: tuple[str, ...]


def parse_header(header: str) -> Signed | None:
    """The header's parts, or None if it is not one ``ePay-Signature`` as ePay writes it.

    A header is comma-separated ``name=value`` parts: exactly one ``t`` of ASCII digits (not
    ``²`` or ``٤``, which ``str.isdigit`` takes and ``int`` may refuse), and one or more
    ``v1``, each 64 lower-case hex digits. Parts of another name are ignored, as a newer
    scheme's would be; a part without ``=``, an empty name, a second ``t`` or a header over
    ``MAX_HEADER_LENGTH`` is malformed. Nothing here raises: whatever the header, the
    receiver answers with a refusal, never with an error of its own.
    """
    if len(header) > MAX_HEADER_LENGTH or not header.isascii():
        return None
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, equals, value = part.strip().partition("=")
        if not equals or not name:
            return None
        if name == "t":
            if timestamp is not None or not _ascii_number(value):
                return None
            timestamp = int(value)
        elif name == "v1":
            if len(value) != _SIGNATURE_LENGTH or not _HEX.issuperset(value):
                return None
            signatures.append(value)
    if timestamp is None or not signatures:
        return None
    return Signed(timestamp, tuple(signatures))


def _ascii_number(value: str) -> bool:
    return 0 < len(value) <= _TIMESTAMP_DIGITS and value.isascii() and value.isdigit()


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
    ``signature_malformed`` (``parse_header``), ``signature_expired`` or
    ``signature_invalid``. It never raises on what the caller sent, so that the receiver
    answers 401 to any header, never 500."""
    if not header:
        return "signature_missing"
    signed = parse_header(header)
    if signed is None:
        return "signature_malformed"
    if abs(now - signed.timestamp) > tolerance:
        return "signature_expired"
    for secret in secrets_:
        expected = sign(secret, signed.timestamp, method, target, body)
        if any(hmac.compare_digest(expected, g) for g in signed.signatures):
            return None
    return "signature_invalid"
