"""The API's error answers, in-process (FastAPI's transport, no stack): a backend that is
briefly away is a 503 problem the department may retry, never a 500."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from api.errors import install_error_handlers


@pytest.mark.parametrize(
    "away",
    [
        ConnectionRefusedError(111, "Connect call failed ('10.213.1.2', 5432)"),
        ConnectionResetError(104, "Connection reset by peer"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.TooManyConnectionsError("too many clients already"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_database_that_is_away_is_a_503_problem(away: Exception) -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/v1/payments")
    async def create() -> None:
        raise away

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://epay") as client:
            return await client.post("/v1/payments")

    response = asyncio.run(call())
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "temporarily_unavailable"
    assert problem["status"] == 503
    assert "5432" not in response.text  # no address or driver detail in the answer
