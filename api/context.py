"""What the API's handlers share: settings, the database pool and the Temporal client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from temporalio.client import Client

from api.errors import ApiError, not_found
from epay import secrets, store
from epay.config import Settings


@dataclass
class Context:
    settings: Settings
    pool: asyncpg.Pool
    temporal: Client


def context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


Ctx = Annotated[Context, Depends(context)]


# Declares the department API's bearer key in the served OpenAPI; a missing or malformed
# header is answered below, as a problem, rather than by FastAPI.
API_KEY = HTTPBearer(auto_error=False, description="A department API key (`epk_...`)")


async def department(
    ctx: Ctx,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(API_KEY)],
) -> str:
    """The department an API key belongs to; any other key is refused alike."""
    if credentials is None:
        raise ApiError(
            401, "unauthorised", "Send a department API key as 'Authorization: Bearer <key>'."
        )
    key_hash = secrets.hash_api_key(credentials.credentials.strip())
    dept = await store.department_for_key(ctx.pool, key_hash)
    if dept is None:
        raise ApiError(401, "unauthorised", "The API key is not valid or has been revoked.")
    return dept


Department = Annotated[str, Depends(department)]


def payment_id(payment_id: str) -> str:
    """A payment id from the path; anything that cannot be one is simply not found."""
    if not store.PAYMENT_ID.fullmatch(payment_id):
        raise not_found()
    return payment_id


PaymentId = Annotated[str, Depends(payment_id)]
