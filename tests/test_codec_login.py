"""The codec server's sign-in: a Secure cookie behind a TLS-terminating proxy in production,
and an oversize form refused before it is read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from commands.codec_server import LOGIN_BODY_LIMIT, create_codec_app
from epay.config import Settings
from epay.crypto import hash_operator_token
from tests.support.settings import production_env

TOKEN = "an-operator-token"
OPERATORS = f"alice:{hash_operator_token(TOKEN).hex()}"


def codec_settings(tmp_path: Path, *, production: bool) -> Settings:
    if not production:
        env = {"EPAY_STATE_DIR": str(tmp_path), "EPAY_OPERATOR_TOKENS": OPERATORS}
        return Settings.from_env_mapping(env, "codec-server")
    full = production_env(tmp_path, EPAY_OPERATOR_TOKENS=OPERATORS)
    held = {"EPAY_DATABASE_URL", "DATABASE_URL", "EPAY_VAULT_KEY", "EPAY_TOKEN_SECRET"}
    return Settings.from_env_mapping(
        {k: v for k, v in full.items() if k not in held}, "codec-server"
    )


def post_login(settings: Settings, content: bytes | AsyncIterator[bytes]) -> httpx.Response:
    """POST /login to the app in-process, over plain http as a proxy would forward it."""

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_codec_app(settings))
        async with httpx.AsyncClient(transport=transport, base_url="http://codec") as client:
            headers = {"content-type": "application/x-www-form-urlencoded"}
            return await client.post("/login", content=content, headers=headers)

    return asyncio.run(call())


@pytest.mark.parametrize("production", [True, False])
def test_the_session_cookie_is_secure_in_production_though_the_proxy_speaks_http(
    tmp_path: Path, production: bool
) -> None:
    answer = post_login(codec_settings(tmp_path, production=production), f"token={TOKEN}".encode())
    assert answer.status_code == 200, answer.text
    cookie = answer.headers["set-cookie"].lower()
    assert ("; secure" in cookie) is production, cookie


def test_an_oversize_sign_in_form_is_refused_by_its_length(tmp_path: Path) -> None:
    padded = f"token={TOKEN}&pad=".encode() + b"x" * LOGIN_BODY_LIMIT
    answer = post_login(codec_settings(tmp_path, production=False), padded)
    assert answer.status_code == 413
    assert "set-cookie" not in answer.headers


def test_an_oversize_sign_in_form_without_a_length_is_refused_while_read(tmp_path: Path) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield f"token={TOKEN}&pad=".encode()
        for _ in range(64):
            yield b"x" * 1024

    answer = post_login(codec_settings(tmp_path, production=False), chunks())
    assert answer.status_code == 413
    assert "set-cookie" not in answer.headers
