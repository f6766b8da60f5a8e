"""Settings, read from the environment once, with defaults that run the local stack."""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from epay.codec import PayloadKeys
from epay.secrets import hash_operator_token

DEFAULT_STATE_DIR = Path(".epay")


def _dev_secret(name: str, state_dir: Path) -> str:
    """A secret for the local stack, made once and kept in the state folder.

    Production sets ``EPAY_VAULT_KEY``, ``EPAY_TOKEN_SECRET``, ``EPAY_PAYLOAD_KEYS`` and
    ``EPAY_OPERATOR_TOKENS``; a laptop gets its own random ones so that nothing secret is ever
    committed.
    """
    path = state_dir / "secrets.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    if name not in known:
        known[name] = base64.b64encode(secrets.token_bytes(32)).decode()
        state_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(known))
        path.chmod(0o600)
    return str(known[name])


DEV_PAYLOAD_KEY_ID = "local"
DEV_OPERATOR = "operator"


def _payload_keys(environ: Mapping[str, str], state_dir: Path) -> PayloadKeys:
    keys = environ.get("EPAY_PAYLOAD_KEYS")
    if not keys:
        keys = f"{DEV_PAYLOAD_KEY_ID}:{_dev_secret('payload_key', state_dir)}"
    return PayloadKeys.parse(keys, environ.get("EPAY_PAYLOAD_ACTIVE_KEY") or None)


def dev_operator_token(state_dir: Path) -> str:
    """The local stack's operator token (operator ``operator``), used when
    ``EPAY_OPERATOR_TOKENS`` is unset."""
    return _dev_secret("operator_token", state_dir)


def _operator_tokens(environ: Mapping[str, str], state_dir: Path) -> dict[str, bytes]:
    """Operators by name, each with the SHA-256 of their token (never the token itself)."""
    configured = environ.get("EPAY_OPERATOR_TOKENS")
    if not configured:
        return {DEV_OPERATOR: hash_operator_token(dev_operator_token(state_dir))}
    tokens: dict[str, bytes] = {}
    for entry in (e.strip() for e in configured.split(",") if e.strip()):
        name, _, digest = (part.strip() for part in entry.partition(":"))
        try:
            tokens[name] = bytes.fromhex(digest)
        except ValueError:
            tokens[name] = b""
        if not name or len(tokens[name]) != 32:
            raise ValueError(
                f"EPAY_OPERATOR_TOKENS: {entry!r} is not of the form name:<SHA-256 of the "
                "token, hex> (epay operators create-token NAME prints one)"
            )
    return tokens


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    temporal_address: str
    temporal_namespace: str
    task_queue: str
    public_url: str
    acquirer_url: str
    issuer_url: str
    department_base_url: str
    payment_window_seconds: int
    http_timeout_seconds: float
    department_timeout_seconds: float
    department_confirm_deadline_seconds: int
    vault_key: bytes = field(repr=False)
    token_secret: bytes = field(repr=False)
    payload_keys: PayloadKeys = field(repr=False)
    operator_tokens: Mapping[str, bytes] = field(repr=False)
    temporal_ui_origins: tuple[str, ...]
    temporal_ui_url: str  # links to a payment's page (epay ops)
    state_dir: Path = DEFAULT_STATE_DIR

    @classmethod
    def from_env(cls) -> Settings:
        return cls.from_env_mapping(os.environ)

    @classmethod
    def from_env_mapping(cls, environ: Mapping[str, str]) -> Settings:
        def _env(name: str, default: str) -> str:
            return environ.get(name, default)

        state_dir = Path(_env("EPAY_STATE_DIR", str(DEFAULT_STATE_DIR)))
        sandbox = _env("EPAY_SANDBOX_URL", "http://127.0.0.1:8100").rstrip("/")
        vault_key = base64.b64decode(
            environ.get("EPAY_VAULT_KEY") or _dev_secret("vault_key", state_dir)
        )
        if len(vault_key) != 32:
            raise ValueError("EPAY_VAULT_KEY must be 32 bytes, base64-encoded")
        token_secret = base64.b64decode(
            environ.get("EPAY_TOKEN_SECRET") or _dev_secret("token_secret", state_dir)
        )
        return cls(
            database_url=environ.get("DATABASE_URL") or None,
            temporal_address=_env("TEMPORAL_ADDRESS", "127.0.0.1:7233"),
            temporal_namespace=_env("TEMPORAL_NAMESPACE", "default"),
            task_queue=_env("EPAY_TASK_QUEUE", "epay-payments"),
            public_url=_env("EPAY_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/"),
            acquirer_url=_env("EPAY_ACQUIRER_URL", f"{sandbox}/acquirer").rstrip("/"),
            issuer_url=_env("EPAY_ISSUER_URL", f"{sandbox}/issuer").rstrip("/"),
            department_base_url=_env("EPAY_DEPARTMENT_BASE_URL", f"{sandbox}/departments"),
            payment_window_seconds=int(_env("EPAY_PAYMENT_WINDOW_SECONDS", "5400")),
            http_timeout_seconds=float(_env("EPAY_HTTP_TIMEOUT_SECONDS", "5")),
            department_timeout_seconds=float(_env("EPAY_DEPARTMENT_TIMEOUT_SECONDS", "10")),
            department_confirm_deadline_seconds=int(
                _env("EPAY_DEPARTMENT_CONFIRM_DEADLINE_SECONDS", "1800")
            ),
            vault_key=vault_key,
            token_secret=token_secret,
            payload_keys=_payload_keys(environ, state_dir),
            operator_tokens=_operator_tokens(environ, state_dir),
            temporal_ui_origins=tuple(
                origin.strip().rstrip("/")
                for origin in _env("EPAY_TEMPORAL_UI_ORIGIN", "http://127.0.0.1:8233").split(",")
                if origin.strip()
            ),
            state_dir=state_dir,
            temporal_ui_url=_env("EPAY_TEMPORAL_UI_URL", "http://127.0.0.1:8233").rstrip("/"),
        )

    def require_database_url(self) -> str:
        if not self.database_url:
            raise RuntimeError("DATABASE_URL is not set (make run starts an embedded PostgreSQL)")
        return self.database_url
