"""Each process holds only the secrets its job needs, production fails closed on what travels
in the clear, and a configuration error never repeats a secret (docs/security.md).

Unit tests: settings read from a mapping, the worker roles' activities bound without a
database or Temporal, the API and the codec server called in this process without a lifespan.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from api.app import create_app
from api.hosted.headers import HSTS, PAGE_HEADERS, PayPageHeaders
from commands.codec_server import create_codec_app
from domain.queues import Role, roles_in
from epay.config import PROCESS_SECRETS, ROLE_SECRETS, Secret, Settings, SettingsError
from epay.crypto import hash_operator_token
from tests.support.settings import production_env
from workers.main import role_activities

VAULT = Secret.VAULT_KEY
TOKEN = Secret.TOKEN_SECRET


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# --- each process holds only its own secrets ------------------------------------------------


@pytest.mark.parametrize(
    ("process", "held"),
    [
        ("codec-server", {Secret.PAYLOAD_KEYS, Secret.OPERATOR_TOKENS}),
        ("migrate", {Secret.DATABASE_URL}),
        ("worker:departments", {Secret.DATABASE_URL, Secret.PAYLOAD_KEYS, TOKEN}),
        ("worker:records", {Secret.DATABASE_URL, Secret.PAYLOAD_KEYS}),
        ("worker:workflows", {Secret.DATABASE_URL, Secret.PAYLOAD_KEYS}),
        ("worker:acquirer", {Secret.DATABASE_URL, Secret.PAYLOAD_KEYS, VAULT}),
        ("api", {Secret.DATABASE_URL, Secret.PAYLOAD_KEYS, VAULT, TOKEN}),
    ],
)
def test_a_process_starts_in_production_with_its_own_secrets_only(
    process: str, held: set[Secret], tmp_path: Path
) -> None:
    """Every secret it does not hold is missing (production would refuse that today), and
    asking for one of them is refused by name."""
    missing = {secret.value: "" for secret in Secret if secret not in held}
    settings = Settings.from_env_mapping(production_env(tmp_path, **missing), process)
    assert settings.secrets_held == held
    getters = {
        VAULT: lambda: settings.vault_key,
        TOKEN: lambda: settings.token_secret,
        Secret.PAYLOAD_KEYS: lambda: settings.payload_keys,
        Secret.OPERATOR_TOKENS: lambda: settings.operator_tokens,
    }
    for secret, read in getters.items():
        if secret in held:
            read()
        else:
            with pytest.raises(SettingsError, match=f"{secret.value}: not read by the {process}"):
                read()
    if Secret.DATABASE_URL not in held:
        assert settings.database_url is None


@pytest.mark.parametrize(
    ("process", "extra"),
    [
        ("codec-server", "EPAY_VAULT_KEY"),
        ("worker:departments", "EPAY_VAULT_KEY"),
        ("migrate", "EPAY_PAYLOAD_KEYS"),
        ("api", "EPAY_OPERATOR_TOKENS"),
    ],
)
def test_production_refuses_a_secret_given_to_a_process_that_does_not_use_it(
    process: str, extra: str, tmp_path: Path
) -> None:
    """A deployment that hands every pod every secret is refused, not silently tolerated."""
    held = {secret.value for secret in PROCESS_SECRETS[process]}
    unheld = {s.value: "" for s in Secret if s.value not in held and s.value != extra}
    env = production_env(tmp_path, **unheld, EPAY_PAYLOAD_ACTIVE_KEY="")
    with pytest.raises(SettingsError, match=f"^{extra}: given to the {process} process") as no:
        Settings.from_env_mapping(env, process)
    assert env[extra].split(":")[-1] not in str(no.value)
    # Outside production the process just does not read it (compose's one-off commands).
    Settings.from_env_mapping(env | {"EPAY_ENV": "development"}, process)


def test_the_codec_server_does_not_read_the_secrets_it_does_not_hold(tmp_path: Path) -> None:
    """Not from its environment, and not made on the fly on a laptop either."""
    env = {
        "EPAY_STATE_DIR": str(tmp_path),
        "EPAY_VAULT_KEY": "not base64!",  # were it read, it would be refused
        "EPAY_TOKEN_SECRET": "not base64!",
        "DATABASE_URL": "postgresql://epay:pa55word@db/epay",
    }
    settings = Settings.from_env_mapping(env, "codec-server")
    assert settings.database_url is None
    made = json.loads((tmp_path / "secrets.json").read_text())
    assert set(made) == {"payload_key", "operator_token"}


def test_only_the_api_and_the_card_workers_hold_the_vault_key() -> None:
    holders = {process for process, held in PROCESS_SECRETS.items() if VAULT in held}
    assert holders == {"api", "worker:acquirer", "worker:issuer", "worker:all"}


def test_a_worker_without_role_holds_the_secrets_of_epay_worker_role(tmp_path: Path) -> None:
    env = {"EPAY_STATE_DIR": str(tmp_path), "EPAY_WORKER_ROLE": "departments"}
    settings = Settings.from_env_mapping(env, "worker")
    assert settings.process == "worker:departments"
    assert VAULT not in settings.secrets_held
    everything = Settings.from_env_mapping({"EPAY_STATE_DIR": str(tmp_path)}, "worker")
    assert everything.secrets_held == PROCESS_SECRETS["worker:all"]


def test_every_worker_role_says_which_secrets_it_holds() -> None:
    assert {r for role in Role for r in roles_in(role)} == set(ROLE_SECRETS)
    assert {f"worker:{role.value}" for role in Role} <= set(PROCESS_SECRETS)


def test_a_worker_read_for_its_role_binds_every_activity_of_it(tmp_path: Path) -> None:
    """The activities a role runs need no secret beyond the role's (workers/main.py)."""

    async def bind(role: Role, settings: Settings) -> list[str]:
        async with httpx.AsyncClient() as http:
            none: Any = None
            return [a.__name__ for a in role_activities(role, none, none, http, settings)]

    for role in roles_in(Role.ALL):
        settings = Settings.from_env_mapping({"EPAY_STATE_DIR": str(tmp_path)}, f"worker:{role}")
        assert asyncio.run(bind(role, settings)), role


def test_the_codec_server_signs_sessions_without_the_token_secret(tmp_path: Path) -> None:
    token = "an-operator-token"
    env = {
        "EPAY_STATE_DIR": str(tmp_path),
        "EPAY_OPERATOR_TOKENS": f"alice:{hash_operator_token(token).hex()}",
    }
    app = create_codec_app(Settings.from_env_mapping(env, "codec-server"))

    async def login() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://codec") as client:
            return await client.post("/login", data={"token": token})

    answer = asyncio.run(login())
    assert answer.status_code in (200, 303), answer.text
    assert "epay_operator_session" in answer.headers.get("set-cookie", "")


# --- a configuration error never repeats a secret -------------------------------------------

KEY = _b64(secrets.token_bytes(32))
TOKEN_TEXT = "Xq9vR2mK7pL4sT8wY1zB6nC3dF5gH0jQ"  # what create-token prints, pasted


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"EPAY_PAYLOAD_KEYS": KEY}, "EPAY_PAYLOAD_KEYS: entry 1 is not of the form"),
        ({"EPAY_PAYLOAD_KEYS": f"k1:{_b64(secrets.token_bytes(32))},{KEY}"}, "entry 2"),
        ({"EPAY_PAYLOAD_KEYS": f"{KEY}:{KEY}"}, "EPAY_PAYLOAD_KEYS: entry 1"),
        ({"EPAY_PAYLOAD_KEYS": f"k1:{KEY}", "EPAY_PAYLOAD_ACTIVE_KEY": KEY}, "ACTIVE_KEY"),
        ({"EPAY_OPERATOR_TOKENS": f"alice:{TOKEN_TEXT}"}, "entry 1 .operator 'alice'. is not"),
        ({"EPAY_OPERATOR_TOKENS": TOKEN_TEXT}, "EPAY_OPERATOR_TOKENS: entry 1 is not of"),
        ({"EPAY_VAULT_KEY": TOKEN_TEXT + "!"}, "EPAY_VAULT_KEY: is not base64"),
    ],
)
def test_a_bad_secret_is_refused_without_repeating_it(
    environ: dict[str, str], named: str, tmp_path: Path
) -> None:
    with pytest.raises(SettingsError, match=named) as refused:
        Settings.from_env_mapping({"EPAY_STATE_DIR": str(tmp_path), **environ})
    message = str(refused.value)
    for value in environ.values():
        for part in value.replace(",", ":").split(":"):
            if len(part) >= 16:
                assert part not in message, message
                assert part[:12] not in message, message


def test_a_plaintext_url_is_named_without_its_credentials(tmp_path: Path) -> None:
    env = production_env(tmp_path, EPAY_ACQUIRER_URL="http://epay:s3cr3t-pa55@acquirer.example")
    with pytest.raises(SettingsError, match="EPAY_ACQUIRER_URL: must be an https") as refused:
        Settings.from_env_mapping(env)
    assert "s3cr3t" not in str(refused.value)


# --- the API in production: HSTS on the page, no served OpenAPI unless asked ----------------


def _get(app: Any, path: str) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://pay.test") as client:
            return await client.get(path)

    return asyncio.run(call())


def _api(tmp_path: Path, production: bool, **environ: str) -> Any:
    base = (
        production_env(tmp_path, EPAY_OPERATOR_TOKENS="")
        if production
        else {"EPAY_STATE_DIR": str(tmp_path)}
    )
    return create_app(Settings.from_env_mapping(base | environ, "api"))


def test_the_page_carries_hsts_in_production_only(tmp_path: Path) -> None:
    name, value = HSTS
    production = _get(_api(tmp_path, production=True), "/pay/no-such-page")
    assert production.headers.get(name) == value
    assert (
        production.headers.get("content-security-policy") == PAGE_HEADERS["content-security-policy"]
    )
    assert name not in _get(_api(tmp_path, production=False), "/pay/no-such-page").headers


def test_the_page_headers_add_hsts_when_asked() -> None:
    async def page(request: Request) -> PlainTextResponse:
        return PlainTextResponse("page")

    app = Starlette(routes=[Route("/pay/x", page), Route("/v1/x", page)])
    name, value = HSTS
    with_hsts = cast(Any, PayPageHeaders(app, hsts=True))
    assert _get(with_hsts, "/pay/x").headers[name] == value
    assert name not in _get(with_hsts, "/v1/x").headers  # the page's, not the API's
    assert name not in _get(cast(Any, PayPageHeaders(app)), "/pay/x").headers


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/redoc"])
def test_production_serves_no_api_docs_unless_asked(path: str, tmp_path: Path) -> None:
    assert _get(_api(tmp_path, production=True), path).status_code == 404
    asked = _api(tmp_path, production=True, EPAY_SERVE_API_DOCS="true")
    assert _get(asked, path).status_code == 200
    assert _get(_api(tmp_path, production=False), path).status_code == 200
