"""A schema-driven fuzz run against the served OpenAPI: schemathesis generates requests for
every ``/v1`` operation from ``GET /openapi.json`` of the running API, valid ones and ones
that break the schema, and each answer must be no 5xx, of a status, content type and
headers the document declares for the operation, and match its schema; a request that
breaks the schema must be refused with a 4xx.

Department calls carry a department key; the calls on one payment (the department's and the
payer's) are made on real payments with their real token, so that they reach the handlers
rather than stop at an unknown id, and a quarter of the valid cases are given what a schema
cannot say (``deepen``) so that they get through to the partners. Bounded to about a
minute in the suite (``MAX_EXAMPLES`` per operation and mode, no shrinking, no deadline);
``make fuzz`` runs it with ``EPAY_FUZZ_EXAMPLES=300`` (some ten minutes). It sends
only to the run's own stack: a webhook endpoint it registers points at the sandbox and is
deleted at once.
"""

from __future__ import annotations

import itertools
import os
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import Stack, card, token_of

MAX_EXAMPLES = int(os.environ.get("EPAY_FUZZ_EXAMPLES", "20"))
"""Examples per operation and mode: a small run in ``make test``, a long one in ``make fuzz``."""
DERANDOMIZE = "EPAY_FUZZ_EXAMPLES" not in os.environ
"""The suite's small run draws the same examples every time, so that a red ``make test``
means a change broke something; ``make fuzz`` draws afresh each run to find what is new."""
POOL_SIZE = 8
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]

# Every /v1 operation of the served document (a new one fails the first test until listed).
OPERATIONS = [
    ("GET", "/v1/services"),
    ("POST", "/v1/payments"),
    ("GET", "/v1/payments"),
    ("GET", "/v1/payments/{payment_id}"),
    ("GET", "/v1/payments/{payment_id}/events"),
    ("POST", "/v1/payments/{payment_id}/cancel"),
    ("POST", "/v1/payments/{payment_id}/refunds"),
    ("GET", "/v1/payments/{payment_id}/refunds"),
    ("POST", "/v1/payments/{payment_id}/authorise"),
    ("POST", "/v1/payments/{payment_id}/3ds"),
    ("POST", "/v1/webhooks"),
    ("GET", "/v1/webhooks"),
    ("DELETE", "/v1/webhooks/{endpoint_id}"),
    ("GET", "/v1/webhooks/deliveries"),
]
DEPARTMENT = "DM"


@pytest.fixture(scope="module")
def api_schema(stack: Stack) -> Any:
    schema = schemathesis.openapi.from_url(f"{stack.api_url}/openapi.json", timeout=30)
    # NUL characters too (PostgreSQL cannot store one: each must be refused before it gets
    # there); no query parameters the API does not know, which it ignores (docs/api.md).
    schema.config.generation.update(allow_x00=True, allow_extra_parameters=False)
    return schema


# What a schema cannot say, given to a quarter of the valid cases so that they get past the
# catalogue, the card checks and the refund rules: a service of the catalogue, the
# sandbox's approved card, an amount a paid payment has to refund. (No e-Dirham card of the
# sandbox: a generated PIN is a wrong one, and three lock the card for the rest of the run.)
FIXED_FEE, VARIABLE_FEE = "HEALTH_CERT", "PARKING_FINE"
APPROVED: dict[str, Any] = {
    "card_number": "4242424242424242",
    "expiry_month": 12,
    "expiry_year": 2031,
    "cvv": "737",  # a Visa's security code has three digits (a fourth is refused)
}


def deepen(case: Case, stack: Stack) -> None:
    body = case.body
    if not isinstance(body, dict):
        return
    if case.path == "/v1/payments":
        body["service_code"] = VARIABLE_FEE if "amount" in body else FIXED_FEE
    elif case.path.endswith("/authorise") and body.get("method") == "card":
        body.update(APPROVED)
    elif case.path.endswith("/refunds") and isinstance(amount := body.get("amount"), int):
        body["amount"] = min(amount, 100)
    elif case.path == "/v1/webhooks":
        body["url"] = sandbox_receiver(stack)


def sandbox_receiver(stack: Stack) -> str:
    return f"{stack.sandbox_url}/departments/{DEPARTMENT}/webhooks"


def keep_webhooks_in_the_sandbox(case: Case, stack: Stack) -> None:
    """A webhook URL the API would take is the sandbox's: the run sends nowhere else."""
    body = case.body
    if case.path == "/v1/webhooks" and isinstance(body, dict):
        url = body.get("url")
        try:
            parts = urlsplit(url) if isinstance(url, str) else None
        except ValueError:  # not a URL at all (an IPv6 host left open): the API refuses it
            return
        if parts and parts.scheme in ("http", "https") and parts.netloc:
            body["url"] = sandbox_receiver(stack)


class Resources:
    """Real payments and endpoints for the calls on one: taken in turn from a pool of open
    payments, or one of its own for a call that ends it (a cancel) or is to go deeper (for
    ``/3ds`` one waiting for its challenge, for ``/refunds`` a paid one, for a delete a new
    endpoint)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.pool = itertools.cycle([stack.created() for _ in range(POOL_SIZE)])

    def payment_for(self, path: str, deeper: bool) -> dict[str, Any]:
        if not (deeper or path.endswith("/cancel")):
            return next(self.pool)
        if path.endswith("/refunds"):
            return self.stack.pay(card("4242424242424242"))
        payment = self.stack.created()
        if path.endswith("/3ds"):
            response = self.stack.authorise(payment, card("4000000000003220"))
            assert response.json()["state"] == "requires_action", response.text
        return payment

    def endpoint(self) -> str:
        with self.stack.client(DEPARTMENT) as c:
            response = c.post("/v1/webhooks", json={"url": sandbox_receiver(self.stack)})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def delete_endpoint(self, endpoint_id: str) -> None:
        with self.stack.client(DEPARTMENT) as c:
            assert c.delete(f"/v1/webhooks/{endpoint_id}").status_code == 204


@pytest.fixture(scope="module")
def resources(stack: Stack) -> Resources:
    return Resources(stack)


def test_the_fuzz_run_covers_every_v1_operation(api_schema: Any) -> None:
    served = {
        (op.method.upper(), op.path)
        for op in (result.ok() for result in api_schema.get_all_operations())
        if op.path.startswith("/v1/")
    }
    assert served == set(OPERATIONS)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_every_answer_matches_the_served_schema(
    api_schema: Any,
    stack: Stack,
    resources: Resources,
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    """No 5xx; each answer's status, content type, headers and body as the document says for
    the operation; data that breaks the schema refused with a 4xx."""
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode), quarter=st.integers(0, 3))
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=DERANDOMIZE,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def answers_as_documented(case: Case, quarter: int) -> None:
        deeper = quarter == 0 and mode == GenerationMode.POSITIVE
        if deeper:
            deepen(case, stack)
        keep_webhooks_in_the_sandbox(case, stack)
        # The department's key, unless the case leaves the header out to see it refused.
        headers = {}
        if "Authorization" in (case.headers or {}) or not _negative(case, "header"):
            headers["Authorization"] = f"Bearer {stack.keys[DEPARTMENT]}"
        path_parameters = case.path_parameters or {}
        if "payment_id" in path_parameters and not _negative(case, "path"):
            payment = resources.payment_for(path, deeper)
            case.path_parameters = {"payment_id": payment["id"]}
            # The payment's own token, unless the case sends one of its own to see refused
            # (not on a payment of its own: a challenge left open would end later in the run).
            own = "token" in (case.query or {}) or "X-Payment-Token" in (case.headers or {})
            if path.endswith(("/authorise", "/3ds")):
                headers = {} if own and not deeper else {"X-Payment-Token": token_of(payment)}
        if "endpoint_id" in path_parameters and deeper:
            case.path_parameters = {"endpoint_id": resources.endpoint()}
        response = case.call_and_validate(headers=headers, checks=CHECKS, timeout=60)
        statuses.add(response.status_code)
        if path == "/v1/webhooks" and response.status_code == 201:
            resources.delete_endpoint(response.json()["id"])

    statuses: set[int] = set()
    answers_as_documented()
    if mode == GenerationMode.POSITIVE:  # the run got past the checks to the handler's work
        assert any(200 <= status < 300 for status in statuses), sorted(statuses)


def test_no_webhook_endpoint_is_left_from_the_run(stack: Stack) -> None:
    """Runs after the fuzz run (tests run in file order): it left nothing to send events to."""
    with httpx.Client(base_url=stack.api_url, timeout=30) as c:
        c.headers["Authorization"] = f"Bearer {stack.keys[DEPARTMENT]}"
        urls = [e["url"] for e in c.get("/v1/webhooks").json()["items"]]
    assert sandbox_receiver(stack) not in urls


def _negative(case: Case, location: str) -> bool:
    """Whether the case breaks the schema at ``location`` (``header``, ``path``, ...)."""
    meta = case.meta
    if meta is None:
        return False
    return any(
        loc.name.lower() == location and info.mode.is_negative
        for loc, info in meta.components.items()
    )
