"""The sandbox as a real process for its own tests, its fixtures and request helpers.

A test module takes the fixtures with
``server, client = sandbox_support.server, sandbox_support.client`` and gets a sandbox
process of its own, keeping its state in a file.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
import uuid
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from commands.catalogue import DEPARTMENTS
from domain import signing
from tests.support import Process, free_port, http_ok, wait_until

LOST_ANSWER_DELAY = 2.0
SLOW_SECONDS = 1.0

SECRET_KEYS = {"card_number", "cvv", "pin"}
CVV = "987"
# What the sandbox's departments are handed as ePay's signing secret in these tests.
SIGNING_SECRET = "whsec_sandbox-tests-" + uuid.uuid4().hex


class SignedAsEPay(httpx.Auth):
    """Signs each call to a sandbox department's system as ePay does (domain/signing.py),
    handing the department the secret first (as ``epay seed`` does) if it has not been."""

    requires_request_body = True

    def __init__(self, secret: str = SIGNING_SECRET) -> None:
        self.secret = secret
        self.handed: set[str] = set()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        path = request.url.path
        if path.startswith("/departments/") and "/_admin/" not in path:
            dept = path.split("/")[2].upper()
            if dept not in self.handed:
                yield httpx.Request(
                    "PUT",
                    request.url.copy_with(
                        path=f"/departments/{dept}/_admin/signing-secrets", query=b""
                    ),
                    json={"secrets": [self.secret]},
                )
                self.handed.add(dept)
            query = request.url.query.decode()
            request.headers[signing.HEADER] = signing.signature_header(
                [self.secret],
                int(time.time()),
                request.method,
                path + (f"?{query}" if query else ""),
                request.content,
            )
        yield request


class Sandbox:
    """``python -m sandbox`` on a port of its own; ``restart`` brings it back on the same
    port and state file."""

    def __init__(self, log_dir: Path, state_file: Path | None) -> None:
        self.log_dir = log_dir
        self.state_file = state_file
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = self._start()

    def _start(self) -> Process:
        args = [sys.executable, "-m", "sandbox", "--port", str(self.port)]
        if self.state_file is not None:
            args += ["--state-file", str(self.state_file)]
        env = dict(
            os.environ,
            SANDBOX_LOST_ANSWER_DELAY=str(LOST_ANSWER_DELAY),
            SANDBOX_SLOW_SECONDS=str(SLOW_SECONDS),
            PYTHONUNBUFFERED="1",
        )
        env.pop("SANDBOX_STATE_FILE", None)
        process = Process("sandbox", args, env, self.log_dir)
        wait_until(http_ok(f"{self.url}/healthz"), timeout=30, what="sandbox", proc=process)
        for dept in DEPARTMENTS:
            httpx.put(
                f"{self.url}/departments/{dept.code}/_admin/signing-secrets",
                json={"secrets": [SIGNING_SECRET]},
                timeout=10,
            ).raise_for_status()
        return process

    def restart(self, sig: int = signal.SIGKILL) -> None:
        self.process.kill(sig)
        self.process.stop()
        self.process = self._start()

    def client(self, timeout: float = 10) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout, auth=SignedAsEPay())

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    folder = tmp_path_factory.mktemp("sandbox")
    sandbox = Sandbox(folder, folder / "sandbox.db")
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture
def client(server: Sandbox) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


# --------------------------------------------------------------------------- helpers


def uid() -> str:
    return uuid.uuid4().hex


def error_code(resp: httpx.Response) -> str:
    code: str = resp.json()["error"]["code"]
    return code


def assert_no_secrets(payload: Any, *secrets: str) -> None:
    """No secret field names, no secret values, and no full card number anywhere."""
    text = json.dumps(payload)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            assert not SECRET_KEYS & set(node), node
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        else:
            assert node not in secrets, node

    walk(payload)
    for secret in secrets:
        if len(secret) >= 12:  # card numbers: not even as a substring
            assert secret not in text


def call(
    client: httpx.Client, path: str, body: dict[str, Any] | None = None, key: str | None = None
) -> httpx.Response:
    """A money-moving POST, with a fresh Idempotency-Key unless ``key`` is given."""
    return client.post(path, json=body, headers={"Idempotency-Key": key or uid()})


@contextmanager
def switched_down(client: httpx.Client, system: str) -> Iterator[None]:
    """The acquirer or the issuer down for the block (shared by the module's tests)."""
    assert client.post(f"/{system}/_admin/down").status_code == 200
    try:
        yield
    finally:
        assert client.post(f"/{system}/_admin/up").status_code == 200


@contextmanager
def slow_captures(client: httpx.Client, system: str, seconds: float) -> Iterator[None]:
    resp = client.post(f"/{system}/_admin/behaviour", json={"capture_delay_seconds": seconds})
    assert resp.status_code == 200, resp.text
    try:
        yield
    finally:
        client.post(f"/{system}/_admin/behaviour", json={"capture_delay_seconds": 0})


def retry_while_in_flight(
    client: httpx.Client, path: str, body: dict[str, Any] | None, key: str, timeout: float
) -> tuple[int, httpx.Response]:
    """Repeat a call until it is no longer refused as in flight: (409s seen, last answer)."""
    refused = 0
    deadline = time.monotonic() + timeout
    while True:
        resp = call(client, path, body, key=key)
        if resp.status_code != 409 or error_code(resp) != "request_in_progress":
            return refused, resp
        refused += 1
        assert time.monotonic() < deadline, "still in flight"
        time.sleep(0.1)


# --------------------------------------------------------------------------- acquirer


def card_body(card_number: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "card_number": card_number,
        "expiry_month": 12,
        "expiry_year": time.gmtime().tm_year + 3,
        "cvv": CVV,
        "cardholder_name": "Test Holder",
        "amount": 10_000,
        "currency": "AED",
        "reference": f"pay_{uid()}",
    }
    body.update(overrides)
    return body


def authorise(
    client: httpx.Client, card_number: str, key: str | None = None, **overrides: Any
) -> httpx.Response:
    resp = call(client, "/acquirer/authorisations", card_body(card_number, **overrides), key)
    assert_no_secrets(resp.json(), card_number, CVV)
    return resp


def admin_auths(client: httpx.Client, reference: str) -> list[dict[str, Any]]:
    resp = client.get("/acquirer/_admin/authorisations", params={"reference": reference})
    assert resp.status_code == 200
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


# --------------------------------------------------------------------------- issuer


def new_edirham_card(
    client: httpx.Client, balance: int = 100_000, pin: str = "4321", blocked: bool = False
) -> str:
    number = "7841" + "".join(random.choices("0123456789", k=12))
    while number.endswith(pin):  # the visible last four must never look like the PIN
        number = "7841" + "".join(random.choices("0123456789", k=12))
    resp = client.post(
        "/issuer/_admin/cards",
        json={"card_number": number, "pin": pin, "balance": balance, "blocked": blocked},
    )
    assert resp.status_code == 200, resp.text
    assert_no_secrets(resp.json(), number, pin)
    return number


def hold(
    client: httpx.Client,
    card_number: str,
    pin: str,
    amount: int,
    key: str | None = None,
    reference: str | None = None,
) -> httpx.Response:
    body = {
        "card_number": card_number,
        "pin": pin,
        "amount": amount,
        "reference": reference or f"pay_{uid()}",
    }
    resp = call(client, "/issuer/holds", body, key)
    assert_no_secrets(resp.json(), card_number, pin)
    return resp


def admin_holds(client: httpx.Client, reference: str) -> list[dict[str, Any]]:
    resp = client.get("/issuer/_admin/holds", params={"reference": reference})
    assert resp.status_code == 200
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


def card_view(client: httpx.Client, card_number: str) -> dict[str, Any]:
    resp = client.get(f"/issuer/_admin/cards/{card_number}")
    assert resp.status_code == 200
    view: dict[str, Any] = resp.json()
    assert_no_secrets(view, card_number)
    return view


# --------------------------------------------------------------------------- departments


def confirm(
    client: httpx.Client, dept: str, reference: str, payment_id: str | None = None
) -> httpx.Response:
    return client.post(
        f"/departments/{dept}/confirmations",
        json={
            "payment_id": payment_id or f"pay_{uid()}",
            "reference": reference,
            "service_code": "SVC-1",
            "amount": 15_000,
        },
    )


def dept_records(client: httpx.Client, dept: str, payment_id: str) -> list[dict[str, Any]]:
    resp = client.get(
        f"/departments/{dept}/_admin/confirmations", params={"payment_id": payment_id}
    )
    assert resp.status_code == 200
    items: list[dict[str, Any]] = resp.json()["items"]
    return items
