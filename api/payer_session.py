"""The hosted page's payer session: what the ``?token=`` link is exchanged for.

The token in ``next_url`` is a long-lived capability that travels in e-mails, browser
history and, without care, referrers and logs. The page therefore swaps it, once, for a
short-lived session bound to the one payment, kept in an HttpOnly, SameSite=Strict cookie
whose path is the payment's page. The session is stateless: the payment id, a random session
id and an expiry, signed with HMAC-SHA256 under a key derived from the token secret (nothing
is stored, so no table grows with abandoned pages and any API process can check it).

The page's JSON calls also carry a CSRF value, derived from the session by a second derived
key and handed to the page in a ``<meta>`` tag: a cross-site form cannot read it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

COOKIE = "epay_payer"
LIFETIME_SECONDS = 15 * 60
_SESSION_KEY_LABEL = b"payer-session"
_CSRF_KEY_LABEL = b"payer-csrf"


@dataclass(frozen=True)
class PayerSession:
    payment_id: str
    session_id: str
    expires_at: int  # unix seconds

    def renewed(self, now: float | None = None) -> PayerSession:
        """The same session, good for another ``LIFETIME_SECONDS`` from now."""
        return PayerSession(self.payment_id, self.session_id, _expiry(now))


def _derived(token_secret: bytes, label: bytes) -> bytes:
    return hmac.new(token_secret, label, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _expiry(now: float | None) -> int:
    return int(now if now is not None else time.time()) + LIFETIME_SECONDS


def new_session(payment_id: str, now: float | None = None) -> PayerSession:
    return PayerSession(payment_id, secrets.token_urlsafe(16), _expiry(now))


def encode(token_secret: bytes, session: PayerSession) -> str:
    """The cookie's value: ``payload.mac``, both base64url."""
    payload = f"{session.payment_id}|{session.session_id}|{session.expires_at}".encode()
    mac = hmac.new(_derived(token_secret, _SESSION_KEY_LABEL), payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(mac)}"


def decode(
    token_secret: bytes, payment_id: str, value: str | None, now: float | None = None
) -> PayerSession | None:
    """The session in ``value`` if it is genuine, unexpired and for ``payment_id``; else None
    (a forged, tampered, expired or another payment's cookie are all simply no session)."""
    if not value or not value.isascii() or value.count(".") != 1:
        return None
    payload_b64, mac_b64 = value.split(".")
    try:
        payload, mac = _unb64(payload_b64), _unb64(mac_b64)
    except ValueError:
        return None
    expected = hmac.new(_derived(token_secret, _SESSION_KEY_LABEL), payload, hashlib.sha256)
    if not hmac.compare_digest(expected.digest(), mac):
        return None
    try:
        pid, session_id, expires = payload.decode().split("|")
        expires_at = int(expires)
    except ValueError:
        return None
    if pid != payment_id or expires_at <= int(now if now is not None else time.time()):
        return None
    return PayerSession(pid, session_id, expires_at)


def csrf_token(token_secret: bytes, session: PayerSession) -> str:
    """What the page sends back in ``X-ePay-CSRF``: fixed for the session's life."""
    message = f"{session.payment_id}|{session.session_id}".encode()
    return _b64(hmac.new(_derived(token_secret, _CSRF_KEY_LABEL), message, hashlib.sha256).digest())


def csrf_ok(token_secret: bytes, session: PayerSession, value: str | None) -> bool:
    if not value or not value.isascii():
        return False
    return hmac.compare_digest(csrf_token(token_secret, session), value)
