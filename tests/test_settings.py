"""Settings: one typed model, errors that name the variable, production that fails closed."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest

from epay.config import DATABASE_URL_FILE, Settings, SettingsError, settings_table
from tests.support import BIN, ROOT, wait_until
from tests.support.settings import b64 as _b64
from tests.support.settings import production_env


def test_a_complete_production_configuration_starts(tmp_path: Path) -> None:
    settings = Settings.from_env_mapping(production_env(tmp_path))
    assert settings.production
    connect = settings.temporal_connect_config
    assert connect["target_host"] == "epay.a1b2c.tmprl.cloud:7233"
    assert connect["namespace"] == "epay.a1b2c"
    assert connect.get("api_key") == "temporal-api-key"
    assert connect.get("tls")
    # Production makes no development secret on the fly.
    assert not (tmp_path / "secrets.json").exists()


WEAK = _b64(b"correct horse battery staple!!!!")  # 32 bytes, typed, not drawn
SHORT = _b64(secrets.token_bytes(16))


@pytest.mark.parametrize(
    ("spoil", "named"),
    [
        ({"EPAY_VAULT_KEY": ""}, "EPAY_VAULT_KEY: must be set explicitly in production"),
        ({"EPAY_TOKEN_SECRET": ""}, "EPAY_TOKEN_SECRET: must be set explicitly"),
        ({"EPAY_PAYLOAD_KEYS": ""}, "EPAY_PAYLOAD_KEYS: must be set explicitly"),
        ({"EPAY_OPERATOR_TOKENS": ""}, "EPAY_OPERATOR_TOKENS: must be set explicitly"),
        ({"DATABASE_URL": ""}, "DATABASE_URL: must be set explicitly"),
        ({"EPAY_ACQUIRER_URL": ""}, "EPAY_ACQUIRER_URL: must be set explicitly"),
        ({"EPAY_SANDBOX_URL": "https://sandbox.example"}, "EPAY_SANDBOX_URL: the sandbox"),
        ({"EPAY_ISSUER_URL": "http://edirham.example/api"}, "EPAY_ISSUER_URL: must be an https"),
        ({"EPAY_PUBLIC_URL": "http://pay.example"}, "EPAY_PUBLIC_URL: must be an https"),
        (
            {"EPAY_DEPARTMENT_BASE_URL": "http://127.0.0.1:8100/departments"},
            "EPAY_DEPARTMENT_BASE_URL: must be an https",
        ),
        (
            {"DATABASE_URL": "postgresql://postgres:@/epay?host=/srv/.epay/pgdata"},
            "DATABASE_URL: the embedded PostgreSQL",
        ),
        ({"EPAY_VAULT_KEY": WEAK}, "EPAY_VAULT_KEY: too weak"),
        ({"EPAY_TOKEN_SECRET": SHORT}, "EPAY_TOKEN_SECRET: too weak"),
        ({"EPAY_PAYLOAD_KEYS": f"k1:{WEAK}"}, r"EPAY_PAYLOAD_KEYS \(k1\): too weak"),
        ({"TEMPORAL_API_KEY": ""}, "TEMPORAL_TLS: Temporal without TLS is refused"),
        (
            {"TEMPORAL_TLS_DISABLE_HOST_VERIFICATION": "true"},
            "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION: refused",
        ),
        # Traffic in the clear, a proxy trusted whoever it is, a payer limit turned off.
        (
            {"DATABASE_URL": "postgresql://epay@db.internal/epay"},
            "DATABASE_URL: PostgreSQL without verified TLS is refused",
        ),
        (
            {"DATABASE_URL": "postgresql://epay@db.internal/epay?sslmode=require"},
            "DATABASE_URL: PostgreSQL without verified TLS is refused",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector.internal:4318"},
            "OTEL_EXPORTER_OTLP_ENDPOINT: must be an https:// URL in production",
        ),
        (
            {"EPAY_TEMPORAL_UI_ORIGIN": "https://ui.example.gov.ae,http://10.0.0.7:8080"},
            "EPAY_TEMPORAL_UI_ORIGIN: must be https:// origins in production",
        ),
        ({"EPAY_FORWARDED_ALLOW_IPS": "10.0.0.0/8,*"}, r"EPAY_FORWARDED_ALLOW_IPS: '\*'"),
        ({"EPAY_PAYER_CARD_FAILURES": "0"}, "EPAY_PAYER_CARD_FAILURES: 0 .no limit. is refused"),
        ({"EPAY_PAYER_WRONG_PINS": "0"}, "EPAY_PAYER_WRONG_PINS: 0 .no limit. is refused"),
        ({"EPAY_PAYER_CLIENT_CARDS": "0"}, "EPAY_PAYER_CLIENT_CARDS: 0 .no limit. is refused"),
        (
            {"EPAY_PAYER_SESSION_METHODS": "0"},
            "EPAY_PAYER_SESSION_METHODS: 0 .no limit. is refused",
        ),
    ],
)
def test_production_refuses_each_unsafe_setting_naming_it(
    spoil: dict[str, str], named: str, tmp_path: Path
) -> None:
    with pytest.raises(SettingsError, match=named) as refused:
        Settings.from_env_mapping(production_env(tmp_path, **spoil))
    assert "\n" not in str(refused.value)


def test_production_refuses_one_secret_used_twice(tmp_path: Path) -> None:
    key = _b64(secrets.token_bytes(32))
    env = production_env(tmp_path, EPAY_VAULT_KEY=key, EPAY_TOKEN_SECRET=key)
    with pytest.raises(SettingsError, match="EPAY_TOKEN_SECRET: the same secret as EPAY_VAULT"):
        Settings.from_env_mapping(env)


def test_production_takes_postgresql_with_a_verified_certificate(tmp_path: Path) -> None:
    """``sslmode=verify-full`` or ``verify-ca`` in the URL, or ``PGSSLMODE`` beside it."""
    base = "postgresql://epay@db.internal/epay"
    for given in (
        {"DATABASE_URL": f"{base}?sslmode=verify-ca"},
        {"DATABASE_URL": base, "PGSSLMODE": "verify-full"},
    ):
        assert Settings.from_env_mapping(production_env(tmp_path, **given)).database_url


def test_development_keeps_its_plaintext_neighbours(tmp_path: Path) -> None:
    """make run: a local collector, the UI on 127.0.0.1, any proxy, limits off."""
    settings = Settings.from_env_mapping(
        {
            "EPAY_STATE_DIR": str(tmp_path),
            "DATABASE_URL": "postgresql://postgres@127.0.0.1/epay",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
            "EPAY_FORWARDED_ALLOW_IPS": "*",
            "EPAY_PAYER_CARD_FAILURES": "0",
        }
    )
    assert settings.temporal_ui_origins == ("http://127.0.0.1:8233",)


def test_plaintext_temporal_is_allowed_in_production_only_when_said(tmp_path: Path) -> None:
    env = production_env(tmp_path, TEMPORAL_API_KEY="", EPAY_ALLOW_PLAINTEXT_TEMPORAL="true")
    assert Settings.from_env_mapping(env).temporal_connect_config.get("tls") is None


def test_mutual_tls_comes_from_the_sdk_environment_configuration(tmp_path: Path) -> None:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    env = production_env(
        tmp_path,
        TEMPORAL_API_KEY="",
        TEMPORAL_TLS_CLIENT_CERT_PATH=str(cert),
        TEMPORAL_TLS_CLIENT_KEY_PATH=str(key),
        TEMPORAL_TLS_SERVER_NAME="temporal.internal",
    )
    tls: Any = Settings.from_env_mapping(env).temporal_connect_config["tls"]
    assert tls.client_cert == cert.read_bytes()
    assert tls.client_private_key == key.read_bytes()
    assert tls.domain == "temporal.internal"


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"EPAY_ENV": "prod"}, "EPAY_ENV: Input should be 'development' or 'production'"),
        ({"EPAY_WORKER_ACTIVITY_SLOTS": "many"}, "EPAY_WORKER_ACTIVITY_SLOTS: Input should be"),
        (
            {"EPAY_WORKER_ACTIVITY_SLOTS": "0"},
            "EPAY_WORKER_ACTIVITY_SLOTS: Input should be greater",
        ),
        ({"EPAY_METRICS_PORT": "70000"}, "EPAY_METRICS_PORT: Input should be less than"),
        ({"EPAY_PAYMENT_WINDOW_SECONDS": "-5"}, "EPAY_PAYMENT_WINDOW_SECONDS: Input should be"),
        ({"EPAY_LOG_FORMAT": "xml"}, "EPAY_LOG_FORMAT: Input should be 'json' or 'text'"),
        ({"EPAY_WORKER_ROLE": "payments"}, "EPAY_WORKER_ROLE: Input should be 'workflows'"),
        ({"EPAY_VAULT_KEY": "not base64!"}, "EPAY_VAULT_KEY: is not base64"),
        ({"EPAY_VAULT_KEY": _b64(b"short")}, "EPAY_VAULT_KEY: must be 32 bytes"),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(
    environ: dict[str, str], named: str, tmp_path: Path
) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env_mapping({"EPAY_STATE_DIR": str(tmp_path), **environ})


def test_development_defaults_run_the_local_stack(tmp_path: Path) -> None:
    settings = Settings.from_env_mapping({"EPAY_STATE_DIR": str(tmp_path), "DATABASE_URL": ""})
    assert not settings.production
    assert settings.database_url is None
    assert settings.acquirer_url == "http://127.0.0.1:8100/acquirer"
    assert settings.temporal_address == "127.0.0.1:7233"
    assert settings.temporal_namespace == "default"
    assert len(settings.vault_key) == 32
    assert settings.worker_role == "all"
    assert settings.log_format == "json"
    again = Settings.from_env_mapping({"EPAY_STATE_DIR": str(tmp_path)})
    assert again.vault_key == settings.vault_key  # made once, kept in the state folder


def test_the_sandbox_url_is_the_base_of_the_partner_urls(tmp_path: Path) -> None:
    settings = Settings.from_env_mapping(
        {
            "EPAY_STATE_DIR": str(tmp_path),
            "EPAY_SANDBOX_URL": "http://127.0.0.1:9100/",
            "EPAY_ISSUER_URL": "http://issuer.test/api/",
        }
    )
    assert settings.acquirer_url == "http://127.0.0.1:9100/acquirer"
    assert settings.department_base_url == "http://127.0.0.1:9100/departments"
    assert settings.issuer_url == "http://issuer.test/api"


def test_commands_find_the_database_make_run_left_behind(tmp_path: Path) -> None:
    (tmp_path / DATABASE_URL_FILE).write_text("postgresql://postgres:@/epay?host=/x\n")
    found = Settings.from_env_mapping({"EPAY_STATE_DIR": str(tmp_path)})
    assert found.database_url == "postgresql://postgres:@/epay?host=/x"
    given = Settings.from_env_mapping(
        {"EPAY_STATE_DIR": str(tmp_path), "DATABASE_URL": "postgresql://db/epay"}
    )
    assert given.database_url == "postgresql://db/epay"  # an explicit setting wins


def test_secrets_stay_out_of_the_settings_repr(tmp_path: Path) -> None:
    env = production_env(tmp_path)
    shown = repr(Settings.from_env_mapping(env))
    for name in ("EPAY_VAULT_KEY", "EPAY_TOKEN_SECRET", "EPAY_PAYLOAD_KEYS", "TEMPORAL_API_KEY"):
        assert env[name].split(":")[-1] not in shown


@pytest.mark.parametrize(
    ("command", "secret"),
    [
        (["api"], "EPAY_TOKEN_SECRET"),
        (["worker"], "EPAY_TOKEN_SECRET"),
        (["worker", "--role", "acquirer"], "EPAY_VAULT_KEY"),
        (["migrate"], "DATABASE_URL"),
        (["codec-server"], "EPAY_OPERATOR_TOKENS"),
        (["ops", "stuck"], "EPAY_TOKEN_SECRET"),
    ],
)
def test_each_process_refuses_to_start_with_one_line_naming_the_setting(
    command: list[str], secret: str, tmp_path: Path
) -> None:
    """Each without one secret its own job needs (tests/test_process_secrets.py: only those)."""
    env = dict(os.environ) | production_env(tmp_path, **{secret: ""})
    done = subprocess.run(
        [str(BIN / "epay"), *command], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        f"epay: configuration: {secret}: must be set explicitly in production"
    ], done.stderr


@pytest.mark.parametrize("command", [["sandbox", "serve"], ["seed"]])
def test_production_refuses_the_sandbox(command: list[str], tmp_path: Path) -> None:
    env = dict(os.environ) | production_env(tmp_path)
    done = subprocess.run(
        [str(BIN / "epay"), *command], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "is refused in production" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_configuration_page_shows_the_table_the_model_prints() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert settings_table() in page, "run: .venv/bin/python -m epay.config"


def test_processes_starting_at_once_on_a_fresh_checkout_share_one_set_of_dev_secrets(
    tmp_path: Path,
) -> None:
    """``make run`` and two ``epay migrate`` runs can start together before ``secrets.json``
    exists: each must read the same secrets, none a half-written file."""
    go = tmp_path / "go"
    probe = (
        "import pathlib, sys, time\n"
        "from epay.config import Settings\n"
        "pathlib.Path(sys.argv[2]).touch()\n"
        "while not pathlib.Path(sys.argv[1]).exists(): time.sleep(0.001)\n"
        "s = Settings.from_env()\n"
        "print(s.vault_key.hex(), s.token_secret.hex())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPAY_")}
    env["EPAY_STATE_DIR"] = str(tmp_path / "state")
    runs = [
        subprocess.Popen(
            [str(BIN / "python"), "-c", probe, str(go), str(tmp_path / f"ready-{n}")],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(8)
    ]
    # Every process imported and waiting (or one ended early, which the checks below show):
    # then all read at once.
    wait_until(
        lambda: (
            all((tmp_path / f"ready-{n}").exists() for n in range(8))
            or any(run.poll() is not None for run in runs)
        ),
        timeout=60,
        what="the eight processes waiting",
    )
    go.touch()
    answers = [run.communicate(timeout=60) for run in runs]
    assert [run.returncode for run in runs] == [0] * 8, [err for _, err in answers]
    assert len({out for out, _ in answers}) == 1
    assert (tmp_path / "state" / "secrets.json").stat().st_mode & 0o077 == 0


def test_no_proxy_is_trusted_unless_named(tmp_path: Path) -> None:
    """`epay api` believes X-Forwarded-For only from the proxies EPAY_FORWARDED_ALLOW_IPS
    names: none by default, not even 127.0.0.1 (tests/test_payer_limits.py runs it)."""
    unset = Settings.from_env_mapping({"EPAY_STATE_DIR": str(tmp_path)})
    assert unset.forwarded_allow_ips is None
    empty = Settings.from_env_mapping(
        {"EPAY_STATE_DIR": str(tmp_path), "EPAY_FORWARDED_ALLOW_IPS": " "}
    )
    assert empty.forwarded_allow_ips is None
    named = Settings.from_env_mapping(
        {"EPAY_STATE_DIR": str(tmp_path), "EPAY_FORWARDED_ALLOW_IPS": "10.0.0.0/8, fd00::1,*"}
    )
    assert named.forwarded_allow_ips == "10.0.0.0/8,fd00::1,*"


@pytest.mark.parametrize("proxies", ["ingress.internal", "10.0.0.1/8", "10.0.0.0/8,10.1"])
def test_a_proxy_that_is_no_address_or_network_is_refused(proxies: str, tmp_path: Path) -> None:
    """uvicorn would take it for a host name no connection has and trust nobody, silently."""
    with pytest.raises(SettingsError, match=r"EPAY_FORWARDED_ALLOW_IPS: .* is not an IP address"):
        Settings.from_env_mapping(
            {"EPAY_STATE_DIR": str(tmp_path), "EPAY_FORWARDED_ALLOW_IPS": proxies}
        )
