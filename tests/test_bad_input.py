"""Bad input against the whole running stack: what only the stack can show.

The API's refusals of bad input, case by case (wrong types, floats, negative or huge
amounts, unknown services, missing fields, malformed JSON, oversize bodies, NUL characters,
bad keys and tokens, tampered cursors, odd field names: each a 4xx problem+json that writes
nothing and echoes no card number, CVV or PIN), are in tests/test_api_validation.py, run
in-process on a database of their own (tests/support/app.py), where "nothing written" and
"nothing reached Temporal" are checked as soon as the answer comes.

Here, one case for each promise that needs the running stack:
- a refused create starts no payment workflow in Temporal and holds no reference;
- a refused payment method leaves the payment's workflow waiting for a good one;
- a NUL in a header is refused by the HTTP server's own parser, before ePay;
- an oversize body sent chunked through the HTTP server is still a 413.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from domain.references import reference_key
from tests.conftest import Stack, card, e_dirham, new_reference
from tests.support import wait_until

PROBLEM_KEYS = ("type", "title", "status", "detail", "code")
JSON = {"Content-Type": "application/json"}


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """A problem+json of ``status`` and ``code`` (tests/test_api_validation.py checks the
    body field by field)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    for key in PROBLEM_KEYS:
        assert key in body, body
    assert body["code"] == code, body
    return body


def fine(**fields: Any) -> dict[str, Any]:
    """A valid body for the variable-fee parking fine, with ``fields`` replaced."""
    body: dict[str, Any] = {
        "service_code": "PARKING_FINE",
        "reference": new_reference("FINE-"),
        "amount": 15000,
    }
    body.update(fields)
    return body


def written_for(stack: Stack, reference: str, key: str | None = None) -> dict[str, int]:
    """The rows a create for ``reference`` (with the Idempotency-Key ``key``) would write."""
    [row] = stack.fetch(
        """SELECT (SELECT count(*) FROM payments WHERE reference = $1) AS payments,
                  (SELECT count(*) FROM fee_reservations WHERE reference = $1) AS reservations,
                  (SELECT count(*) FROM idempotency_keys WHERE key = $2) AS keys""",
        reference,
        key or "",
    )
    return {k: int(v) for k, v in row.items()}


NOTHING = {"payments": 0, "reservations": 0, "keys": 0}


def payment_workflows_for(stack: Stack, reference: str) -> int:
    """How many payment workflows Temporal has for ``reference`` (its visibility store)."""

    async def count() -> int:
        client = await stack.temporal_client()
        query = (
            f"WorkflowType = 'PaymentWorkflow' AND PaymentReference = '{reference_key(reference)}'"
        )
        return (await client.count_workflows(query)).count

    return asyncio.run(count())


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"amount": 1.5}, id="refused-by-the-schema"),
        pytest.param({"service_code": "NO_SUCH_SERVICE"}, id="refused-by-the-catalogue"),
    ],
)
def test_a_refused_create_starts_no_workflow_and_holds_no_reference(
    stack: Stack, bad: dict[str, Any]
) -> None:
    """Refused, the reference is free at once, and the payment then made for it is the only
    workflow Temporal has for it: the refused request started none."""
    body, key = fine(**bad), uuid.uuid4().hex
    with stack.client() as c:
        refused = c.post("/v1/payments", json=body, headers={"Idempotency-Key": key})
    assert_problem(refused, 422, "validation_failed")
    assert written_for(stack, body["reference"], key) == NOTHING

    made = stack.created(service_code="PARKING_FINE", reference=body["reference"], amount=15000)
    wait_until(
        lambda: payment_workflows_for(stack, body["reference"]) >= 1,
        timeout=30,
        what="the payment's workflow in Temporal's visibility",
    )
    assert payment_workflows_for(stack, body["reference"]) == 1
    assert made["state"] == "reserved"


def test_a_refused_payment_method_leaves_the_workflow_waiting_for_a_good_one(
    stack: Stack,
) -> None:
    """The bad card is refused before the workflow hears of it: the payment is untouched,
    and the payer's good method then pays it."""
    payment = stack.created()
    events_before = stack.fetch(
        "SELECT count(*) AS n FROM payment_events WHERE payment_id = $1", payment["id"]
    )
    refused = stack.authorise(payment, card("4242424242424241"))  # fails the Luhn check
    assert_problem(refused, 422, "validation_failed")
    assert "4242424242424241" not in refused.text
    assert stack.get(payment["id"])["state"] == "reserved"
    assert stack.fetch("SELECT 1 FROM card_vault WHERE payment_id = $1", payment["id"]) == []
    assert (
        stack.fetch("SELECT count(*) AS n FROM payment_events WHERE payment_id = $1", payment["id"])
        == events_before
    )

    taken = stack.authorise(payment, e_dirham("7840000000000017"))
    assert taken.status_code in (200, 202), taken.text
    assert stack.wait_for(payment["id"])["state"] == "succeeded"


def raw_request(stack: Stack, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send bytes no HTTP client library would (a NUL in a header): the status and body."""
    host, port = stack.api_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(b"Idempotency-Key: key\x00one", id="idempotency-key"),
        pytest.param(b"X-Payment-Token: tok\x00en", id="payment-token"),
        pytest.param(b"X-Request-Id: id\x00one", id="request-id"),
    ],
)
def test_nul_in_a_header_is_refused_before_the_api(stack: Stack, header: bytes) -> None:
    """HTTP does not allow a NUL in a header (RFC 9110 5.5): the server's HTTP parser refuses
    the request with a plain 400 before it reaches ePay, so nothing is stored and no
    problem+json can be given."""
    payment = stack.created()
    to_authorise = b"Payment" in header
    path = f"/v1/payments/{payment['id']}/authorise" if to_authorise else "/v1/payments"
    create = fine()
    body = json.dumps(card("4242424242424242") if to_authorise else create).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {stack.keys['DM']}\r\n".encode()
        + header
        + b"\r\n"
    )
    status, _ = raw_request(stack, head, body)
    assert status == 400
    assert written_for(stack, create["reference"]) == NOTHING
    now = stack.get(payment["id"])
    assert now["state"] == "reserved", now
    assert now["method"] is None
    assert stack.fetch("SELECT 1 FROM card_vault WHERE payment_id = $1", payment["id"]) == []


def test_an_oversize_chunked_body_is_refused_with_413_by_the_server(stack: Stack) -> None:
    """Sent chunked through the HTTP server, the size is only known while the body is read:
    still 413, not 400, and the request writes nothing."""
    create = fine(description="d" * 70_000)
    raw = json.dumps(create).encode()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(raw), 8192):
            yield raw[i : i + 8192]

    with stack.client() as c:
        response = c.post("/v1/payments", content=chunks(), headers=JSON)
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert_problem(response, 413, "payload_too_large")
    assert "d" * 100 not in response.text
    assert written_for(stack, create["reference"]) == NOTHING
