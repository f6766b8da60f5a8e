"""Settings, read from the environment once, with defaults that run the local stack."""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_STATE_DIR = Path(".epay")


def _dev_secret(name: str, state_dir: Path) -> str:
    """A secret for the local stack, made once and kept in the state folder.

    Production sets ``EPAY_VAULT_KEY`` and ``EPAY_TOKEN_SECRET``; a laptop gets its own
    random ones so that nothing secret is ever committed.
    """
    path = state_dir / "secrets.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    if name not in known:
        known[name] = base64.b64encode(secrets.token_bytes(32)).decode()
        state_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(known))
        path.chmod(0o600)
    return str(known[name])


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
            state_dir=state_dir,
        )

    def require_database_url(self) -> str:
        if not self.database_url:
            raise RuntimeError("DATABASE_URL is not set (make run starts an embedded PostgreSQL)")
        return self.database_url
