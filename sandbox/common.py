"""Helpers shared by the sandbox's stand-in systems.

The sandbox imitates outside parties, so it keeps its own tiny toolkit instead of
importing from the gateway: errors look like real partner errors, and nothing here
can drift together with the code under test.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

# 12-19 digit runs look like card numbers; they are masked out of access logs.
_PAN_RE = re.compile(r"\d{12,19}")


class SandboxError(Exception):
    """An error answer in the partners' shared `{"error": {...}}` shape."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message)

    def response(self) -> JSONResponse:
        return JSONResponse(status_code=self.status_code, content=self.body())


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def unavailable(system: str) -> SandboxError:
    return SandboxError(503, "unavailable", f"The {system} is unavailable.")


@dataclass
class Outcome:
    """A final answer, stored so that a repeat of its request gets it again."""

    status_code: int
    body: dict[str, Any]

    def response(self) -> JSONResponse:
        return JSONResponse(status_code=self.status_code, content=self.body)


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def last4(card_number: str) -> str:
    return card_number[-4:]


def card_key(card_number: str) -> str:
    """A lookup key for a card that is not the card number itself."""
    return hashlib.sha256(card_number.encode()).hexdigest()


def hash_secret(secret: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


def secret_matches(secret: str, salt: str, digest: str) -> bool:
    return hmac.compare_digest(hash_secret(secret, salt), digest)


def require_idempotency_key(key: str | None) -> str:
    """Partners refuse money-moving calls that could not be safely retried."""
    if key is None or not key.strip():
        raise SandboxError(400, "idempotency_key_required", "Header Idempotency-Key is required.")
    return key


def mask_pans(text: str) -> str:
    return _PAN_RE.sub(lambda m: "*" * (len(m.group()) - 4) + m.group()[-4:], text)


class PanMaskingFilter(logging.Filter):
    """Masks card numbers in log lines (admin card paths carry one in the URL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(mask_pans(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = mask_pans(record.msg)
        return True


class ReversalRequest(BaseModel):
    """Undo whatever the request sent with ``idempotency_key`` did, answered or not."""

    idempotency_key: str = Field(min_length=1, max_length=255)


def reversed_outcome() -> Outcome:
    """What a request arriving after its own reversal is told."""
    return Outcome(402, error_body("reversed", "This request was reversed before it arrived."))
