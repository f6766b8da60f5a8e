"""Card vault encryption (AES-256-GCM), payer capability tokens, API key and operator token
hashing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def new_vault_token() -> str:
    return "vt_" + secrets.token_urlsafe(24)


def _aad(token: str, payment_id: str) -> bytes:
    # Binding the ciphertext to its token and payment stops a row being replayed elsewhere.
    return f"{token}|{payment_id}".encode()


def seal(key: bytes, token: str, payment_id: str, data: dict[str, object]) -> tuple[bytes, bytes]:
    """Encrypt card data for the vault; returns (nonce, ciphertext)."""
    nonce = secrets.token_bytes(12)
    plaintext = json.dumps(data).encode()
    return nonce, AESGCM(key).encrypt(nonce, plaintext, _aad(token, payment_id))


def unseal(
    key: bytes, token: str, payment_id: str, nonce: bytes, ciphertext: bytes
) -> dict[str, Any]:
    plaintext = AESGCM(key).decrypt(nonce, ciphertext, _aad(token, payment_id))
    result: dict[str, Any] = json.loads(plaintext)
    return result


def payer_token(secret: bytes, payment_id: str) -> str:
    """The payer's capability for one payment: an HMAC of its id. What bounds it is read from
    the payment at each use (api.payer, api.hosted.routes): its window's end
    (``expires_at``) and the one exchange of the link for a page session
    (``payer_link_used_at``). Nothing in the token changes with them, so a token sent before
    those checks is bounded by them alike."""
    digest = hmac.new(secret, f"payer:{payment_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def payer_token_ok(secret: bytes, payment_id: str, token: str | None) -> bool:
    """Whether ``token`` is the payment's own, compared in constant time.

    Compared as bytes: ``hmac.compare_digest`` raises TypeError on a str that is not ASCII,
    and a token from a query string or a header may be anything (a header's bytes arrive
    decoded as Latin-1). Such a token is simply wrong, like any other.
    """
    if not token:
        return False
    given = token.encode("utf-8", "surrogatepass")
    return hmac.compare_digest(payer_token(secret, payment_id).encode(), given)


def new_api_key() -> str:
    return "epk_" + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_operator_token() -> str:
    return "eop_" + secrets.token_urlsafe(32)


def hash_operator_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
