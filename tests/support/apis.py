"""Another ``epay api`` on the session's stack, with settings of a test's own (a shorter wait
for a reservation, say), beside the stack's API, which keeps its own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.conftest import Stack
from tests.support import BIN, free_port, http_ok, wait_until

IMPATIENT_WAIT_SECONDS = 2
"""The reservation wait of an impatient API (``EPAY_RESERVATION_WAIT_SECONDS``; 45 s by
default): a caller is told 503 ``reservation_unavailable`` after this long."""


@contextmanager
def api_of_its_own(stack: Stack, name: str, **env: str) -> Iterator[str]:
    """An API process named ``name`` with ``env`` over the stack's, ready: its URL."""
    port = free_port()
    api = stack.spawn(name, str(BIN / "epay"), "api", "--port", str(port), env=stack.env | env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(http_ok(f"{url}/readyz"), timeout=60, what=name, proc=api)
        yield url
    finally:
        api.stop()


@contextmanager
def impatient_api(stack: Stack) -> Iterator[str]:
    """An API that waits ``IMPATIENT_WAIT_SECONDS`` for a reservation instead of 45 s."""
    with api_of_its_own(
        stack, "api-impatient", EPAY_RESERVATION_WAIT_SECONDS=str(IMPATIENT_WAIT_SECONDS)
    ) as url:
        yield url


def create_with_key(stack: Stack, api_url: str, reference: str, key: str) -> httpx.Response:
    """The DM department's create of a health certificate with an Idempotency-Key, on the
    API at ``api_url``."""
    with httpx.Client(
        base_url=api_url, headers={"Authorization": f"Bearer {stack.keys['DM']}"}, timeout=90
    ) as c:
        return c.post(
            "/v1/payments",
            json={"service_code": "HEALTH_CERT", "reference": reference},
            headers={"Idempotency-Key": key},
        )
