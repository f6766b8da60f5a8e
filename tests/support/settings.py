"""A complete, safe production configuration for the settings tests to spoil one thing of."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

from epay.crypto import hash_operator_token


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def production_env(state_dir: Path, **overrides: str) -> dict[str, str]:
    """A complete, safe production configuration; each test spoils one thing of it."""
    env = {
        "EPAY_ENV": "production",
        "EPAY_STATE_DIR": str(state_dir),
        "DATABASE_URL": "postgresql://epay@db.internal:5432/epay?sslmode=verify-full",
        "EPAY_VAULT_KEY": b64(secrets.token_bytes(32)),
        "EPAY_TOKEN_SECRET": b64(secrets.token_bytes(32)),
        "EPAY_PAYLOAD_KEYS": f"2026-12:{b64(secrets.token_bytes(32))}",
        "EPAY_OPERATOR_TOKENS": f"alice:{hash_operator_token('t0ken').hex()}",
        "EPAY_PUBLIC_URL": "https://pay.example.gov.ae",
        "EPAY_ACQUIRER_URL": "https://acquirer.example.com/v1",
        "EPAY_ISSUER_URL": "https://edirham.example.gov.ae/api",
        "EPAY_DEPARTMENT_BASE_URL": "https://departments.example.gov.ae",
        "EPAY_TEMPORAL_UI_ORIGIN": "https://temporal.example.gov.ae",
        "TEMPORAL_ADDRESS": "epay.a1b2c.tmprl.cloud:7233",
        "TEMPORAL_NAMESPACE": "epay.a1b2c",
        "TEMPORAL_API_KEY": "temporal-api-key",
    }
    return env | overrides
