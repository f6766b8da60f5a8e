"""What the API's handlers share: settings, the database pool and the Temporal client."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends, Header, Request
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


async def department(
    ctx: Ctx,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> str:
    """The department an API key belongs to; any other key is refused alike."""
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not key:
        raise ApiError(
            401, "unauthorised", "Send a department API key as 'Authorization: Bearer <key>'."
        )
    dept = await store.department_for_key(ctx.pool, secrets.hash_api_key(key.strip()))
    if dept is None:
        raise ApiError(401, "unauthorised", "The API key is not valid or has been revoked.")
    return dept


Department = Annotated[str, Depends(department)]


PAYMENT_ID = re.compile(r"pay_[0-9a-f]{32}")


def payment_id(payment_id: str) -> str:
    """A payment id from the path; anything that cannot be one is simply not found."""
    if not PAYMENT_ID.fullmatch(payment_id):
        raise not_found()
    return payment_id


PaymentId = Annotated[str, Depends(payment_id)]
