"""What the API's handlers share: settings, the database pool and the Temporal client."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from temporalio.client import Client

from api.errors import SAFE_NAME, ApiError, field_error, not_found
from api.ratelimit import RateLimiter
from domain.cursors import PAYMENT_ID
from epay import crypto
from epay.config import Settings
from store import keys


@dataclass
class Context:
    settings: Settings
    pool: asyncpg.Pool
    temporal: Client


def plain_request(request: Request) -> None:
    """What no handler should have to think of, checked before any:

    - each query parameter at most once: FastAPI reads a repeated one's last value, where a
      proxy or a log in front may read its first (two readings of one request);
    - no NUL in a path or query value: PostgreSQL text cannot hold one, so such a value names
      nothing (a path's is 404, as an unknown id is) and matches nothing (a query's is 422).
    """
    if any("\x00" in value for value in request.path_params.values()):
        raise ApiError(404, "not_found", "No such resource.", title="Not found")
    items = request.query_params.multi_items()
    counts = Counter(key for key, _ in items)
    for key, value in items:
        name = key if SAFE_NAME.fullmatch(key) else "query"
        if counts[key] > 1:
            raise field_error(name, "repeated_parameter", "Give each query parameter once.")
        if "\x00" in value:
            raise field_error(name, "nul_character", "Must not contain NUL characters.")


def context(request: Request, _: Annotated[None, Depends(plain_request)]) -> Context:
    """What every handler shares; taking it also checks the request (``plain_request``)."""
    ctx: Context = request.app.state.ctx
    return ctx


Ctx = Annotated[Context, Depends(context)]


# Declares the department API's bearer key in the served OpenAPI; a missing or malformed
# header is answered below, as a problem, rather than by FastAPI.
API_KEY = HTTPBearer(auto_error=False, description="A department API key (`epk_...`)")


async def department(
    request: Request,
    ctx: Ctx,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(API_KEY)],
) -> str:
    """The department an API key belongs to; any other key is refused alike. The key's call
    is then counted against its rate limit (api/ratelimit.py), before any handler runs: a
    refused call (429 ``rate_limited``) creates nothing."""
    if credentials is None:
        raise ApiError(
            401, "unauthorised", "Send a department API key as 'Authorization: Bearer <key>'."
        )
    key_hash = crypto.hash_api_key(credentials.credentials.strip())
    dept = await keys.department_for_key(ctx.pool, key_hash)
    if dept is None:
        raise ApiError(401, "unauthorised", "The API key is not valid or has been revoked.")
    limiter: RateLimiter = request.app.state.rate_limiter
    limiter.check(key_hash.hex(), dept)
    return dept


Department = Annotated[str, Depends(department)]


def payment_id(payment_id: str) -> str:
    """A payment id from the path; anything that cannot be one is simply not found."""
    if not PAYMENT_ID.fullmatch(payment_id):
        raise not_found()
    return payment_id


PaymentId = Annotated[str, Depends(payment_id)]
