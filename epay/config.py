"""Settings: one typed model read from the environment, with defaults that run the local stack.

Every process (API, workers, commands) reads the same variables, the README's configuration
table lists them, except the secrets: each process reads only those its job uses
(``PROCESS_SECRETS``; docs/security.md, "Secrets per process"). ``EPAY_ENV=production``
fails closed: it refuses to start on a development default (a secret made on the fly, the
sandbox, the embedded PostgreSQL, a plaintext URL), with a one-line message naming the
variable at fault.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import ipaddress
import json
import os
import re
import secrets
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from temporalio.envconfig import ClientConfigProfile, ClientConnectConfig

from domain.destinations import Allowlist, ip_literal
from domain.queues import Role, roles_in
from epay.codec import PayloadKeys
from epay.crypto import hash_operator_token

DEFAULT_STATE_DIR = Path(".epay")
DEV_SECRET = "made once into the state folder's `secrets.json` (development only)"
DEFAULT_TEMPORAL_ADDRESS = "127.0.0.1:7233"
DEV_PAYLOAD_KEY_ID = "local"
DEV_OPERATOR = "operator"
# The file ``make run`` leaves in the state folder with the embedded server's address, so
# that ``epay`` commands in another terminal find the database without exports.
DATABASE_URL_FILE = "database_url"
# A secret of 32 random bytes has about 27 distinct byte values; fewer than this many
# means it was typed or padded, not drawn.
MIN_DISTINCT_SECRET_BYTES = 16


class SettingsError(ValueError):
    """A setting is missing or unsafe; the message names the variable, on one line."""


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class Secret(StrEnum):
    """The secret settings, each by the variable that carries it."""

    DATABASE_URL = "DATABASE_URL"  # its password
    VAULT_KEY = "EPAY_VAULT_KEY"
    TOKEN_SECRET = "EPAY_TOKEN_SECRET"
    PAYLOAD_KEYS = "EPAY_PAYLOAD_KEYS"
    OPERATOR_TOKENS = "EPAY_OPERATOR_TOKENS"


_DB, _VAULT, _TOKEN = Secret.DATABASE_URL, Secret.VAULT_KEY, Secret.TOKEN_SECRET
_PAYLOAD, _OPERATORS = Secret.PAYLOAD_KEYS, Secret.OPERATOR_TOKENS

# The secrets each worker role uses (workers/main.py, SERVED): every role reads the database
# and talks to Temporal through the payload codec; the acquirer and the issuer open the card
# vault; the departments role unseals the departments' signing secrets (sealed under the
# token secret) to sign confirmations and webhooks. Nothing else holds a secret it does not use.
ROLE_SECRETS: Mapping[Role, frozenset[Secret]] = {
    Role.WORKFLOWS: frozenset({_DB, _PAYLOAD}),
    Role.ACQUIRER: frozenset({_DB, _PAYLOAD, _VAULT}),
    Role.ISSUER: frozenset({_DB, _PAYLOAD, _VAULT}),
    Role.DEPARTMENTS: frozenset({_DB, _PAYLOAD, _TOKEN}),
    Role.RECORDS: frozenset({_DB, _PAYLOAD}),
}
# The secrets of each long-running process and of the commands that need fewer than all
# (``epay worker --role R`` is ``worker:R``); any other command holds every secret.
PROCESS_SECRETS: Mapping[str, frozenset[Secret]] = {
    "api": frozenset({_DB, _PAYLOAD, _VAULT, _TOKEN}),
    "codec-server": frozenset({_PAYLOAD, _OPERATORS}),
    "migrate": frozenset({_DB}),
    "seed": frozenset({_DB, _TOKEN}),
    "departments": frozenset({_DB, _TOKEN}),
    **{
        f"worker:{role.value}": frozenset().union(*(ROLE_SECRETS[r] for r in roles_in(role)))
        for role in Role
    },
}
EVERY_SECRET = frozenset(Secret)
# The processes that run as a pod of their own (deploy/k8s): production refuses to start one
# given a secret it does not use. The commands an operator runs from a shell are not held to it.
DEPLOYED_PROCESSES = frozenset(
    {"api", "codec-server", "migrate", *(f"worker:{role.value}" for role in Role)}
)
# Variables read only together with a secret: withheld with it.
_WITH_SECRET = {Secret.PAYLOAD_KEYS: ("EPAY_PAYLOAD_ACTIVE_KEY",)}


def secrets_of(process: str | None, environ: Mapping[str, str] | None = None) -> frozenset[Secret]:
    """The secrets ``process`` holds: ``api``, ``codec-server``, ``migrate``, ``worker:<role>``
    (``worker`` alone: the role of ``EPAY_WORKER_ROLE``, else ``all``), ...; None (a command,
    a test, a tool) holds every one."""
    if process is None:
        return EVERY_SECRET
    if process == "worker":
        role = ((environ or {}).get("EPAY_WORKER_ROLE") or "").strip() or Role.ALL.value
        process = f"worker:{role}"
    # An unknown worker role is refused by the settings themselves (EPAY_WORKER_ROLE).
    return PROCESS_SECRETS.get(process, EVERY_SECRET)


def _env(name: str, default: Any, *, shown: str | None = None, **kwargs: Any) -> Any:
    """A field read from the environment variable ``name``; its docstring says what it sets,
    and ``shown`` the default as docs/configuration.md shows it when the value alone would
    not tell (``python -m epay.config`` prints that table)."""
    if shown is None:
        shown = (
            "unset"
            if default is None
            else f"`{str(default).lower() if isinstance(default, bool) else default}`"
        )
    return Field(default, validation_alias=name, json_schema_extra={"shown": shown}, **kwargs)


class Settings(BaseSettings):
    """Everything a process is configured with. Build it with :meth:`from_env` (the process
    environment) or :meth:`from_env_mapping` (any mapping, for tests and tools)."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="ignore",
        case_sensitive=True,
        populate_by_name=True,
        use_attribute_docstrings=True,
    )

    env: Environment = _env("EPAY_ENV", Environment.DEVELOPMENT)
    """`production` fails closed: it refuses every development default and unsafe value
    (a missing secret, the sandbox, the embedded PostgreSQL, a plaintext URL), naming it."""
    state_dir: Path = _env("EPAY_STATE_DIR", DEFAULT_STATE_DIR)
    """Where `make run` keeps its state, logs, database address and development secrets."""
    database_url: str | None = _env(
        "DATABASE_URL", None, shown="the address `make run` left in the state folder"
    )
    """PostgreSQL DSN for the API, workers and commands (not the codec server); required in
    production, with the server's certificate verified (`sslmode=verify-full` or `verify-ca`
    in the URL, or `PGSSLMODE`)."""

    task_queue: str = _env("EPAY_TASK_QUEUE", "epay-payments", min_length=1)
    """The workflow task queue the API starts payments on; each partner kind's activity
    queue is derived from it (`<queue>-acquirer`, `-issuer`, `-departments`, `-records`)."""
    allow_plaintext_temporal: bool = _env("EPAY_ALLOW_PLAINTEXT_TEMPORAL", False)
    """Production only: allow Temporal without TLS (behind a service mesh that encrypts)."""

    public_url: str = _env("EPAY_PUBLIC_URL", "http://127.0.0.1:8000")
    """Base of the `next_url` links handed to payers; https in production."""
    sandbox_url: str | None = _env("EPAY_SANDBOX_URL", None, shown="`http://127.0.0.1:8100`")
    """Base of the three partner URLs below when they are not set; refused in production."""
    acquirer_url: str = _env("EPAY_ACQUIRER_URL", "", shown="`$EPAY_SANDBOX_URL/acquirer`")
    """The card acquirer; required and https in production."""
    issuer_url: str = _env("EPAY_ISSUER_URL", "", shown="`$EPAY_SANDBOX_URL/issuer`")
    """The e-Dirham issuer; required and https in production."""
    department_base_url: str = _env(
        "EPAY_DEPARTMENT_BASE_URL", "", shown="`$EPAY_SANDBOX_URL/departments`"
    )
    """Where `epay seed` points each department's confirmation URL (`<base>/<DEPT>`);
    required and https in production."""

    payment_window_seconds: int = _env("EPAY_PAYMENT_WINDOW_SECONDS", 5400, gt=0)
    """How long a payer has to pay before the payment expires (90 minutes)."""
    reservation_wait_seconds: float = _env("EPAY_RESERVATION_WAIT_SECONDS", 45.0, gt=0)
    """How long `POST /v1/payments` waits for the fee's reservation before it answers 503
    `reservation_unavailable` (a payment's workflow answers within 30 s of its start, unless
    workers or Temporal are slow); keep it below the timeout of any proxy in front of the API."""
    http_timeout_seconds: float = _env("EPAY_HTTP_TIMEOUT_SECONDS", 5.0, gt=0)
    """Timeout of each call to the acquirer and the issuer."""
    department_timeout_seconds: float = _env("EPAY_DEPARTMENT_TIMEOUT_SECONDS", 10.0, gt=0)
    """Timeout of each call to a department's system."""
    department_secrets_cache_seconds: float = _env(
        "EPAY_DEPARTMENT_SECRETS_CACHE_SECONDS", 30.0, ge=0
    )
    """How long a departments worker signs with the signing secrets it read: a new or
    retired secret takes effect within this time (`epay departments create-signing-secret`)."""
    webhook_retry_schedule: str = _env(
        "EPAY_WEBHOOK_RETRY_SCHEDULE", "60,300,3600,86400,172800", pattern=r"^\d+(,\d+)*$"
    )
    """Seconds to wait before each retry of a webhook event an endpoint has not accepted,
    after the first attempt (about 1 min, 5 min, 1 h, 1 day, 2 days)."""
    # Webhook destinations (domain/destinations.py; docs/security.md, "Webhook destinations").
    webhook_allowed_hosts: str | None = _env(
        "EPAY_WEBHOOK_ALLOWED_HOSTS", None, shown="unset (`make run`: the sandbox's address)"
    )
    """Webhook destinations taken whatever their addresses, `host` or `host:port`
    (comma-separated): every other endpoint must be a public name or address; production
    refuses a loopback, link-local or unspecified entry."""
    webhook_proxy: str | None = _env("EPAY_WEBHOOK_PROXY", None)
    """An http(s) URL of the egress proxy that webhook deliveries go through (the proxy then
    reaches the department; ePay still checks each destination first)."""

    @field_validator("webhook_allowed_hosts")
    @classmethod
    def _allowlist_parses(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Each entry `host` or `host:port`. In production, no loopback, link-local or
        unspecified entry: a department's endpoint on the pod itself or the cloud's metadata
        service is never meant. A private address (a department's gateway on a private
        link) may be allowed there, by name, on purpose."""
        allowlist = Allowlist.parse(value)  # a ValueError names the entry
        if info.data.get("env") == Environment.PRODUCTION:
            for host, _port in allowlist.entries:
                ip = ip_literal(host)
                if host == "localhost" or (
                    ip is not None and (ip.is_loopback or ip.is_link_local or ip.is_unspecified)
                ):
                    raise ValueError(f"{host!r} is refused in production")
        return value

    @field_validator("webhook_proxy")
    @classmethod
    def _proxy_is_a_url(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    department_confirm_deadline_seconds: int = _env(
        "EPAY_DEPARTMENT_CONFIRM_DEADLINE_SECONDS", 1800, gt=0
    )
    """How long an unreachable department is retried before the payment fails
    `department_unavailable`."""

    vault_key_b64: str | None = _env("EPAY_VAULT_KEY", None, shown=DEV_SECRET, repr=False)
    """Base64 of the 32-byte AES-256-GCM key of the card vault, the same on every API,
    acquirer and issuer worker host, and read by no other process; required there in
    production."""
    token_secret_b64: str | None = _env("EPAY_TOKEN_SECRET", None, shown=DEV_SECRET, repr=False)
    """Base64 of 32 or more random bytes that sign payers' payment tokens and the API's
    update proofs and seal the departments' signing secrets (the API, the departments
    worker, `epay seed`, `epay departments`); required there in production."""
    payload_keys_spec: str | None = _env(
        "EPAY_PAYLOAD_KEYS", None, shown=f"`local:<key>`, {DEV_SECRET}", repr=False
    )
    """The keys of the payload codec, `id:<base64 of 32 bytes>,...` (ids: letters, digits,
    `. _ -`); every listed key decrypts ([rotation](design.md#encrypted-payloads)); required
    in production by every process but `epay migrate`, `seed` and `departments`."""
    payload_active_key: str | None = _env(
        "EPAY_PAYLOAD_ACTIVE_KEY", None, shown="the last id in `EPAY_PAYLOAD_KEYS`"
    )
    """The key that encrypts new payloads."""
    operator_tokens_spec: str | None = _env(
        "EPAY_OPERATOR_TOKENS", None, shown=f"operator `operator`, token {DEV_SECRET}", repr=False
    )
    """Who may use the codec server: `name:<SHA-256 of the token, hex>,...` (`epay operators
    create-token NAME` makes a token and its entry); read by the codec server and the
    operators' commands only; required there in production."""
    temporal_ui_origin: str = _env("EPAY_TEMPORAL_UI_ORIGIN", "http://127.0.0.1:8233")
    """The Temporal Web UI's origin (comma-separated if several), the only one the codec
    server answers cross-origin; https in production."""
    temporal_ui_url: str = _env("EPAY_TEMPORAL_UI_URL", "http://127.0.0.1:8233")
    """The Temporal Web UI, for the links `epay ops` prints to each payment's page."""

    # Workers (docs/design.md, "Worker roles and task queues"; docs/scaling.md).
    worker_role: Role = _env("EPAY_WORKER_ROLE", Role.ALL)
    """What `epay worker` polls when `--role` is not given: `workflows`, `acquirer`,
    `issuer`, `departments`, `records` or `all`."""
    workflow_task_slots: int = _env("EPAY_WORKER_WORKFLOW_TASK_SLOTS", 100, gt=0)
    """Workflow tasks a worker runs at once."""
    activity_slots: int = _env("EPAY_WORKER_ACTIVITY_SLOTS", 100, gt=0)
    """Activities (partner calls, remote database steps) a worker runs at once."""
    local_activity_slots: int = _env("EPAY_WORKER_LOCAL_ACTIVITY_SLOTS", 100, gt=0)
    """Database steps (local activities) a workflow worker runs at once."""
    workflow_pollers: int = _env("EPAY_WORKER_WORKFLOW_POLLERS", 5, gt=0)
    """Concurrent long polls on the workflow task queue."""
    activity_pollers: int = _env("EPAY_WORKER_ACTIVITY_POLLERS", 5, gt=0)
    """Concurrent long polls on each activity task queue."""
    sticky_cache_size: int = _env("EPAY_WORKER_STICKY_CACHE", 1000, ge=0)
    """Workflows a worker keeps in memory between their tasks (Temporal's sticky cache)."""
    db_pool_size: int = _env("EPAY_DB_POOL_SIZE", 0, ge=0, shown="`0`: sized to the slots")
    """PostgreSQL connections per process."""
    acquirer_rate_limit: float | None = _env("EPAY_ACQUIRER_RATE_LIMIT", None, gt=0)
    """Card acquirer calls per second across the whole acquirer task queue."""
    issuer_rate_limit: float | None = _env("EPAY_ISSUER_RATE_LIMIT", None, gt=0)
    """e-Dirham issuer calls per second across the whole issuer task queue."""
    departments_rate_limit: float | None = _env("EPAY_DEPARTMENTS_RATE_LIMIT", None, gt=0)
    """Department calls per second across the whole departments task queue."""
    health_port: int | None = _env("EPAY_HEALTH_PORT", None, ge=1, le=65535)
    """A worker's liveness and readiness port (`/healthz`, `/readyz`)."""

    # The payer surface's limits (api/abuse.py, docs/security.md); 0 turns one off, which
    # production refuses. The local
    # stack serves every payer from 127.0.0.1 and drives the same sandbox cards over and over,
    # so outside production the limits across payments are off unless set.
    payer_wrong_pins: int | None = _env(
        "EPAY_PAYER_WRONG_PINS", None, ge=0, shown="`2` in production, else `0` (off)"
    )
    """Wrong PINs one e-Dirham card may meet across payments since it last paid, however long
    ago, before ePay stops asking the issuer (which locks a card at its third wrong PIN in a
    row and forgets only on a right one): a stranger cannot lock it."""
    payer_card_failures: int | None = _env(
        "EPAY_PAYER_CARD_FAILURES", None, ge=0, shown="`5` in production, else `0` (off)"
    )
    """Declined or unanswered methods one card (by its keyed hash) may have across payments
    in an hour."""
    payer_client_cards: int | None = _env(
        "EPAY_PAYER_CLIENT_CARDS", None, ge=0, shown="`10` in production, else `0` (off)"
    )
    """Distinct cards declined for one client address in 10 minutes (card testing)."""
    payer_session_methods: int = _env("EPAY_PAYER_SESSION_METHODS", 5, ge=0)
    """Payment methods one hosted-page session may hand over in 15 minutes. For this limit
    and the three above, production refuses 0 (no limit)."""
    forwarded_allow_ips: str | None = _env(
        "EPAY_FORWARDED_ALLOW_IPS", None, shown="unset: no proxy, the peer is the client"
    )
    """`epay api`: the proxies (IP addresses or networks, comma-separated; `*` any, refused
    in production) whose
    `X-Forwarded-For` and `X-Forwarded-Proto` name the client, for the per-client payer limit;
    behind an ingress, its addresses and no wider
    ([security](security.md#left-to-the-deployment))."""

    # The department API's limits (api/ratelimit.py, docs/security.md, "Limits per
    # department"); a rate or burst of 0 turns the key limit off, which production refuses.
    api_rate_per_second: float = _env("EPAY_API_RATE_PER_SECOND", 20, ge=0, allow_inf_nan=False)
    """Requests a second one department API key may make on average (a token bucket's refill,
    counted per API replica); production sets it per department (the overrides)."""
    api_rate_burst: int = _env("EPAY_API_RATE_BURST", 40, ge=0)
    """Requests one department API key may make at once before the average applies (the
    bucket's size); a refused request is 429 `rate_limited` with `Retry-After`."""
    api_rate_overrides: str | None = _env("EPAY_API_RATE_OVERRIDES", None)
    """Per-department rates and bursts over the two above, `DEPT=RATE:BURST` comma-separated
    (`RTA=100:200,DM=50:100`)."""
    webhook_endpoints_per_department: int = _env("EPAY_WEBHOOK_ENDPOINTS_PER_DEPARTMENT", 10, ge=1)
    """Active webhook endpoints one department may have; one more is 409
    `endpoint_limit_reached`."""

    @field_validator("api_rate_overrides")
    @classmethod
    def _rate_overrides_parse(cls, value: str | None) -> str | None:
        parse_rate_overrides(value)
        return value

    @property
    def api_rates(self) -> dict[str, tuple[float, int]]:
        """The per-department overrides: department code → (rate a second, burst)."""
        return parse_rate_overrides(self.api_rate_overrides)

    serve_api_docs: bool | None = _env(
        "EPAY_SERVE_API_DOCS", None, shown="`false` in production, else `true`"
    )
    """`epay api`: serve the OpenAPI document and its browsable pages (`/openapi.json`,
    `/docs`, `/redoc`); production keeps them off unless this asks for them: departments
    work from the published contract, and a public service need not map itself."""

    # Telemetry (docs/observability.md).
    metrics_port: int | None = _env("EPAY_METRICS_PORT", None, ge=1, le=65535)
    """The process's Prometheus endpoint: the Temporal SDK's metrics and ePay's own."""
    log_format: Literal["json", "text"] = _env("EPAY_LOG_FORMAT", "json")
    """`json` (one object a line, with the payment, workflow, run, activity and request ids
    where there are some) or `text`."""
    otlp_endpoint: str | None = _env("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    """OTLP/HTTP endpoint that receives the OpenTelemetry traces; https in production."""

    _vault_key: bytes = PrivateAttr()
    _token_secret: bytes = PrivateAttr()
    _payload_keys: PayloadKeys = PrivateAttr()
    _operator_tokens: dict[str, bytes] = PrivateAttr()
    _temporal: ClientConnectConfig = PrivateAttr()

    _process: str = PrivateAttr(default="command")
    _held: frozenset[Secret] = PrivateAttr(default=EVERY_SECRET)
    _given_unheld: tuple[str, ...] = PrivateAttr(default=())

    @classmethod
    def from_env(cls, process: str | None = None) -> Settings:
        return cls.from_env_mapping(os.environ, process)

    @classmethod
    def from_env_mapping(cls, environ: Mapping[str, str], process: str | None = None) -> Settings:
        """The settings a process with ``environ`` as its environment would have.

        ``process`` (``api``, ``codec-server``, ``worker:departments``, ...: see
        ``PROCESS_SECRETS``) reads only the secrets that process uses: the others are not read
        from ``environ``, not made on the fly, and not required in production, and asking for
        one raises. Unset, every secret is read (commands, tests, tools)."""
        if process == "worker":  # the role EPAY_WORKER_ROLE names, else all
            process = f"worker:{(environ.get('EPAY_WORKER_ROLE') or '').strip() or Role.ALL}"
        held = secrets_of(process, environ)
        withheld = {s.value for s in EVERY_SECRET - held}
        withheld |= {v for s in EVERY_SECRET - held for v in _WITH_SECRET.get(s, ())}
        given = {name: value for name, value in environ.items() if name not in withheld}
        try:
            settings = cls.model_validate(given)
        except ValidationError as err:
            first = err.errors()[0]
            name = ".".join(str(part) for part in first["loc"]) or "settings"
            # The message only, never the input: the input may be a secret.
            raise SettingsError(f"{name}: {first['msg']}") from None
        settings._process = process or "command"
        settings._held = held
        settings._given_unheld = tuple(
            name for name in sorted(withheld) if (environ.get(name) or "").strip()
        )
        settings._derive(given)
        return settings

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxies_are_addresses(cls, value: str | None) -> str | None:
        """Each entry an IP address or network, or `*`: uvicorn would take a typo for a
        host name that no connection ever has, and trust nobody without a word."""
        if value is None:
            return None
        entries = [entry.strip() for entry in value.split(",") if entry.strip()]
        for entry in entries:
            if entry == "*":
                continue
            try:
                ipaddress.ip_network(entry)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return ",".join(entries) or None

    @model_validator(mode="before")
    @classmethod
    def _empty_is_unset(cls, data: Any) -> Any:
        """An empty variable means the same as an unset one (``DATABASE_URL=`` included)."""
        if isinstance(data, Mapping):
            return {k: v for k, v in data.items() if not (isinstance(v, str) and not v.strip())}
        return data

    def _derive(self, environ: Mapping[str, str]) -> None:
        """Decode the secrets, resolve the partner URLs and the Temporal connection, and in
        production refuse anything that is a development default or unsafe."""
        production = self.env == Environment.PRODUCTION
        if production:
            self._refuse_development_defaults()
        sandbox = (self.sandbox_url or "http://127.0.0.1:8100").rstrip("/")
        defaults = {
            "acquirer_url": f"{sandbox}/acquirer",
            "issuer_url": f"{sandbox}/issuer",
            "department_base_url": f"{sandbox}/departments",
        }
        for name, default in defaults.items():
            object.__setattr__(self, name, (getattr(self, name) or default).rstrip("/"))
        object.__setattr__(self, "public_url", self.public_url.rstrip("/"))
        object.__setattr__(self, "temporal_ui_url", self.temporal_ui_url.rstrip("/"))
        if self.database_url is None and not production and _DB in self._held:
            saved = self.state_dir / DATABASE_URL_FILE
            if saved.is_file():
                object.__setattr__(self, "database_url", saved.read_text().strip() or None)

        if _VAULT in self._held:
            self._vault_key = self._secret("EPAY_VAULT_KEY", self.vault_key_b64, "vault_key")
            if len(self._vault_key) != 32:
                raise SettingsError("EPAY_VAULT_KEY: must be 32 bytes, base64-encoded")
        if _TOKEN in self._held:
            self._token_secret = self._secret(
                "EPAY_TOKEN_SECRET", self.token_secret_b64, "token_secret"
            )
        if _PAYLOAD in self._held:
            keys = self.payload_keys_spec or (
                f"{DEV_PAYLOAD_KEY_ID}:{_dev_secret('payload_key', self.state_dir)}"
            )
            self._payload_keys = _payload_keys(keys, self.payload_active_key)
        if _OPERATORS in self._held:
            self._operator_tokens = _operator_tokens(self.operator_tokens_spec, self.state_dir)
        self._temporal = _temporal_connection(environ)
        if production:
            self._refuse_weak_secrets()
            self._refuse_plaintext_temporal(environ)
            self._refuse_unsafe_production_values(environ)
            self._refuse_secrets_of_other_jobs()

    def _secret(self, name: str, value: str | None, dev_name: str) -> bytes:
        try:
            return base64.b64decode(value or _dev_secret(dev_name, self.state_dir), validate=True)
        except binascii.Error:
            raise SettingsError(f"{name}: is not base64") from None

    def _refuse_development_defaults(self) -> None:
        held_secrets = {
            _DB: self.database_url,
            _VAULT: self.vault_key_b64,
            _TOKEN: self.token_secret_b64,
            _PAYLOAD: self.payload_keys_spec,
            _OPERATORS: self.operator_tokens_spec,
        }
        required = {s.value: value for s, value in held_secrets.items() if s in self._held} | {
            "EPAY_ACQUIRER_URL": self.acquirer_url,
            "EPAY_ISSUER_URL": self.issuer_url,
            "EPAY_DEPARTMENT_BASE_URL": self.department_base_url,
        }
        for name, value in required.items():
            if not value:
                raise SettingsError(f"{name}: must be set explicitly in production")
        if self.sandbox_url:
            raise SettingsError("EPAY_SANDBOX_URL: the sandbox is refused in production")
        urls = {
            "EPAY_PUBLIC_URL": self.public_url,
            "EPAY_ACQUIRER_URL": self.acquirer_url,
            "EPAY_ISSUER_URL": self.issuer_url,
            "EPAY_DEPARTMENT_BASE_URL": self.department_base_url,
        }
        for name, url in urls.items():
            if not url.lower().startswith("https://"):
                raise SettingsError(
                    f"{name}: must be an https:// URL in production, not {_redacted(url)!r}"
                )
        if _is_embedded_database(self.database_url or "", self.state_dir):
            raise SettingsError(
                "DATABASE_URL: the embedded PostgreSQL of make run is refused in production"
            )

    def _refuse_weak_secrets(self) -> None:
        named: dict[str, bytes] = {}
        if _VAULT in self._held:
            named["EPAY_VAULT_KEY"] = self._vault_key
        if _TOKEN in self._held:
            named["EPAY_TOKEN_SECRET"] = self._token_secret
        if _PAYLOAD in self._held:
            named |= {f"EPAY_PAYLOAD_KEYS ({kid})": k for kid, k in self._payload_keys.keys.items()}
        for name, secret in named.items():
            if len(secret) < 32 or len(set(secret)) < MIN_DISTINCT_SECRET_BYTES:
                raise SettingsError(f"{name}: too weak; use 32 random bytes, base64-encoded")
        seen: dict[bytes, str] = {}
        for name, secret in named.items():
            if secret in seen:
                raise SettingsError(f"{name}: the same secret as {seen[secret]}; use one each")
            seen[secret] = name

    def _refuse_plaintext_temporal(self, environ: Mapping[str, str]) -> None:
        if not self._temporal.get("tls") and not self.allow_plaintext_temporal:
            raise SettingsError(
                "TEMPORAL_TLS: Temporal without TLS is refused in production (set TEMPORAL_TLS, "
                "client certificates or TEMPORAL_API_KEY; or EPAY_ALLOW_PLAINTEXT_TEMPORAL=true "
                "behind a mesh that encrypts)"
            )
        if _truthy(environ.get("TEMPORAL_TLS_DISABLE_HOST_VERIFICATION")):
            raise SettingsError("TEMPORAL_TLS_DISABLE_HOST_VERIFICATION: refused in production")

    def _refuse_secrets_of_other_jobs(self) -> None:
        """A secret given to a process that does not use it is a deployment that hands every
        pod everything: the process would not read it, but whoever breaks into the pod would."""
        if self._given_unheld and self._process in DEPLOYED_PROCESSES:
            raise SettingsError(
                f"{self._given_unheld[0]}: given to the {self._process} process, which does "
                "not use it; "
                "production refuses it (docs/security.md, Secrets per process)"
            )

    def _refuse_unsafe_production_values(self, environ: Mapping[str, str]) -> None:
        """What production refuses beyond development defaults: traffic in the clear, a
        proxy trusted whoever it is, a payer limit turned off."""
        if _DB in self._held and not _verifies_tls(self.database_url or "", environ):
            raise SettingsError(
                "DATABASE_URL: PostgreSQL without verified TLS is refused in production "
                "(add sslmode=verify-full, or verify-ca, to the URL or set PGSSLMODE)"
            )
        if self.otlp_endpoint and not self.otlp_endpoint.lower().startswith("https://"):
            raise SettingsError(
                "OTEL_EXPORTER_OTLP_ENDPOINT: must be an https:// URL in production"
            )
        # The origin matters to the codec server, which answers it cross-origin with credentials.
        for origin in self.temporal_ui_origins if _OPERATORS in self._held else ():
            if not origin.lower().startswith("https://"):
                raise SettingsError(
                    "EPAY_TEMPORAL_UI_ORIGIN: must be https:// origins in production"
                )
        if "*" in (self.forwarded_allow_ips or "").split(","):
            raise SettingsError(
                "EPAY_FORWARDED_ALLOW_IPS: '*' (any proxy) is refused in production; name the "
                "ingress's addresses or networks"
            )
        limits: dict[str, float | None] = {
            "EPAY_PAYER_WRONG_PINS": self.payer_wrong_pins,
            "EPAY_PAYER_CARD_FAILURES": self.payer_card_failures,
            "EPAY_PAYER_CLIENT_CARDS": self.payer_client_cards,
            "EPAY_PAYER_SESSION_METHODS": self.payer_session_methods,
            "EPAY_API_RATE_PER_SECOND": self.api_rate_per_second,
            "EPAY_API_RATE_BURST": self.api_rate_burst,
        }
        for dept, (rate, burst) in self.api_rates.items():
            limits[f"EPAY_API_RATE_OVERRIDES ({dept})"] = min(rate, burst)
        for name, limit in limits.items():
            if limit == 0:
                raise SettingsError(f"{name}: 0 (no limit) is refused in production")

    # --- what the processes use --------------------------------------------------------

    @property
    def production(self) -> bool:
        return self.env == Environment.PRODUCTION

    @property
    def process(self) -> str:
        """What these settings were read for (``api``, ``worker:acquirer``, ...; ``command``)."""
        return self._process

    @property
    def secrets_held(self) -> frozenset[Secret]:
        return self._held

    def _holds(self, secret: Secret) -> None:
        if secret not in self._held:
            raise SettingsError(
                f"{secret.value}: not read by the {self._process} process, which must not "
                "use it (docs/security.md, Secrets per process)"
            )

    @property
    def vault_key(self) -> bytes:
        self._holds(_VAULT)
        return self._vault_key

    @property
    def token_secret(self) -> bytes:
        self._holds(_TOKEN)
        return self._token_secret

    @property
    def payload_keys(self) -> PayloadKeys:
        self._holds(_PAYLOAD)
        return self._payload_keys

    @property
    def operator_tokens(self) -> Mapping[str, bytes]:
        """Operators by name, each with the SHA-256 of their token (never the token)."""
        self._holds(_OPERATORS)
        return self._operator_tokens

    @property
    def api_docs(self) -> bool:
        """Whether `epay api` serves `/openapi.json`, `/docs` and `/redoc`."""
        return self.serve_api_docs if self.serve_api_docs is not None else not self.production

    @property
    def temporal_address(self) -> str:
        return str(self._temporal.get("target_host") or DEFAULT_TEMPORAL_ADDRESS)

    @property
    def temporal_namespace(self) -> str:
        return str(self._temporal.get("namespace") or "default")

    @property
    def temporal_connect_config(self) -> ClientConnectConfig:
        """Keyword arguments for ``Client.connect``: address, namespace, TLS, API key, gRPC
        metadata, as the SDK's environment configuration reads them."""
        config: ClientConnectConfig = {
            **self._temporal,
            "target_host": self.temporal_address,
            "namespace": self.temporal_namespace,
        }
        return config

    @property
    def temporal_ui_origins(self) -> tuple[str, ...]:
        return tuple(
            origin.strip().rstrip("/")
            for origin in self.temporal_ui_origin.split(",")
            if origin.strip()
        )

    @property
    def webhook_retries(self) -> list[int]:
        return [int(n) for n in self.webhook_retry_schedule.split(",")]

    @property
    def webhook_allowlist(self) -> Allowlist:
        return Allowlist.parse(self.webhook_allowed_hosts)

    def require_database_url(self) -> str:
        if not self.database_url:
            raise RuntimeError("DATABASE_URL is not set (make run starts an embedded PostgreSQL)")
        return self.database_url


def parse_rate_overrides(spec: str | None) -> dict[str, tuple[float, int]]:
    """``EPAY_API_RATE_OVERRIDES`` read: ``DEPT=RATE:BURST`` entries, comma-separated."""
    rates: dict[str, tuple[float, int]] = {}
    for entry in (spec or "").split(","):
        if not entry.strip():
            continue
        dept, _, limit = entry.partition("=")
        rate, _, burst = limit.partition(":")
        try:
            parsed = (float(rate), int(burst))
        except ValueError:
            parsed = (-1.0, -1)
        if not dept.strip() or not 0 <= parsed[0] < float("inf") or parsed[1] < 0:
            raise ValueError(
                f"{entry.strip()!r} is not DEPT=RATE:BURST (a rate a second and a burst, "
                "both 0 or more)"
            )
        rates[dept.strip()] = parsed
    return rates


def _dev_secret(name: str, state_dir: Path) -> str:
    """A secret for the local stack, made once and kept in the state folder.

    Production sets ``EPAY_VAULT_KEY``, ``EPAY_TOKEN_SECRET``, ``EPAY_PAYLOAD_KEYS`` and
    ``EPAY_OPERATOR_TOKENS`` (and refuses to start without them); a laptop gets its own random
    ones so that nothing secret is ever committed.

    Several processes may start at once on a fresh checkout (``make run``, two ``epay migrate``
    runs): the file is read and extended under an exclusive lock, and replaced whole, so that no
    process reads it half written and no two processes make different secrets of one name.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "secrets.json"
    lock = os.open(state_dir / "secrets.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        known = json.loads(path.read_text()) if path.exists() else {}
        if name not in known:
            known[name] = base64.b64encode(secrets.token_bytes(32)).decode()
            staged = state_dir / f"secrets.json.{os.getpid()}"
            fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(json.dumps(known))
            os.replace(staged, path)
        return str(known[name])
    finally:
        os.close(lock)


def dev_operator_token(state_dir: Path) -> str:
    """The local stack's operator token (operator ``operator``), used when
    ``EPAY_OPERATOR_TOKENS`` is unset."""
    return _dev_secret("operator_token", state_dir)


_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _operator_tokens(configured: str | None, state_dir: Path) -> dict[str, bytes]:
    """Operators and their token digests. A message names an entry by its place and the
    operator, never by what was written: an entry may be a token pasted where its digest
    belongs, or a token with no name at all."""
    if not configured:
        return {DEV_OPERATOR: hash_operator_token(dev_operator_token(state_dir))}
    tokens: dict[str, bytes] = {}
    for place, entry in enumerate((e.strip() for e in configured.split(",") if e.strip()), 1):
        name, sep, digest = (part.strip() for part in entry.partition(":"))
        if not sep or not _NAME.fullmatch(name):
            raise SettingsError(
                f"EPAY_OPERATOR_TOKENS: entry {place} is not of the form name:<SHA-256 of the "
                "token, hex> (epay operators create-token NAME prints one)"
            )
        try:
            tokens[name] = bytes.fromhex(digest)
        except ValueError:
            tokens[name] = b""
        if len(tokens[name]) != 32:
            raise SettingsError(
                f"EPAY_OPERATOR_TOKENS: entry {place} (operator {name!r}) is not a SHA-256 "
                "digest in hex: give the entry epay operators create-token prints, never the "
                "token itself"
            )
    return tokens


def _payload_keys(spec: str, active: str | None) -> PayloadKeys:
    """The payload keys of ``EPAY_PAYLOAD_KEYS``; a message names a key by its place or its
    id, never by what was written (a key given without its id would be its id)."""
    parsed: dict[str, bytes] = {}
    for place, entry in enumerate((e.strip() for e in spec.split(",") if e.strip()), 1):
        key_id, sep, encoded = (part.strip() for part in entry.partition(":"))
        if not sep or not _KEY_ID.fullmatch(key_id):
            raise SettingsError(
                f"EPAY_PAYLOAD_KEYS: entry {place} is not of the form id:<base64 key> (ids: "
                "1-64 letters, digits, . _ -)"
            )
        if key_id in parsed:
            raise SettingsError(f"EPAY_PAYLOAD_KEYS: key id {key_id!r} is listed twice")
        try:
            parsed[key_id] = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise SettingsError(f"EPAY_PAYLOAD_KEYS: key {key_id!r} is not base64") from None
        if len(parsed[key_id]) != 32:
            raise SettingsError(f"EPAY_PAYLOAD_KEYS: key {key_id!r} must be 32 bytes, base64")
    if not parsed:
        raise SettingsError("EPAY_PAYLOAD_KEYS: is empty; give at least one id:<base64 key>")
    if active is not None and active not in parsed:
        raise SettingsError(
            "EPAY_PAYLOAD_ACTIVE_KEY: is not among the ids of EPAY_PAYLOAD_KEYS "
            f"({', '.join(parsed)})"
        )
    return PayloadKeys(parsed, active or list(parsed)[-1])


def _verifies_tls(dsn: str, environ: Mapping[str, str]) -> bool:
    """PostgreSQL over TLS with the server's certificate checked: ``sslmode=verify-full`` or
    ``verify-ca`` in the URL's query (asyncpg reads libpq's names), else in ``PGSSLMODE``."""
    query = parse_qs(urlsplit(dsn).query)
    modes = query.get("sslmode") or query.get("ssl") or [environ.get("PGSSLMODE", "")]
    return modes[-1].strip().lower() in {"verify-full", "verify-ca"}


def _redacted(url: str) -> str:
    """``url`` without the user and password it may carry."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()


def _temporal_connection(environ: Mapping[str, str]) -> ClientConnectConfig:
    """The Temporal connection from the SDK's environment configuration (TEMPORAL_* and an
    optional TOML profile), read from ``environ`` rather than the process's environment; an
    empty variable is unset there too."""
    given = {name: value for name, value in environ.items() if value.strip()}
    try:
        profile = ClientConfigProfile.load(override_env_vars=given)
    except Exception as err:  # noqa: BLE001 - the SDK raises several kinds; name the cause
        raise SettingsError(f"TEMPORAL_*: {err}".splitlines()[0]) from None
    return profile.to_client_connect_config()


def _is_embedded_database(dsn: str, state_dir: Path) -> bool:
    """The embedded server listens on a Unix socket inside make run's state folder."""
    return "pgdata" in dsn or str(state_dir.resolve()) in dsn


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes"}


# The Temporal SDK's own variables (temporalio.envconfig), listed with ePay's.
TEMPORAL_VARIABLES = [
    ("TEMPORAL_ADDRESS", f"`{DEFAULT_TEMPORAL_ADDRESS}`", "Temporal frontend, `host:port`."),
    ("TEMPORAL_NAMESPACE", "`default`", "Temporal namespace."),
    (
        "TEMPORAL_API_KEY",
        "unset",
        "API key (Temporal Cloud or a cluster with API key authorisation); turns TLS on.",
    ),
    ("TEMPORAL_TLS", "unset", "`true` for TLS with the system's trust store."),
    (
        "TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_KEY_PATH",
        "unset",
        "The client certificate and key for mutual TLS (or `..._DATA` with the PEM itself).",
    ),
    (
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH, TEMPORAL_TLS_SERVER_NAME",
        "unset",
        "The CA that signed the server's certificate, and the name to check it against.",
    ),
    (
        "TEMPORAL_PROFILE, TEMPORAL_CONFIG_FILE",
        "unset",
        "A profile of the SDK's TOML client configuration instead of the variables.",
    ),
]


def settings_table() -> str:
    """The configuration table of docs/configuration.md, from the model itself."""
    rows = ["| variable | default | what it sets |", "| --- | --- | --- |"]
    for field in Settings.model_fields.values():
        extra = field.json_schema_extra
        shown = extra.get("shown") if isinstance(extra, dict) else None
        what = " ".join((field.description or "").split())
        rows.append(f"| `{field.validation_alias}` | {shown} | {what} |")
    for names, shown, what in TEMPORAL_VARIABLES:
        variables = ", ".join(f"`{name}`" for name in names.split(", "))
        rows.append(f"| {variables} | {shown} | {what} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())
