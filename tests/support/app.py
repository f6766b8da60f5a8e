"""The API in this process, without a stack: the real FastAPI application (api/app.py) on a
migrated and seeded database of its own, called through FastAPI's ASGI transport.

No Temporal server and no partner run. The request context (api/context.py) is handed in
through ``dependency_overrides`` with a stand-in for the Temporal client that writes down
every call. It answers the one call a department's create makes, the fee's reservation,
the way the payment's workflow does first (the same store function its ``reserve_fee``
activity runs), so that a test has a reserved payment to send bad input to; every other
call is refused. A request is over when its response comes: "nothing was written" and
"nothing reached Temporal" are checked at once, with no waiting.

The calls are synchronous for the tests (one event loop per ``InProcessApi``), so that the
validation tests read as the end-to-end ones do.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar, cast

import asyncpg
import httpx
from fastapi import Depends
from temporalio.client import Client, WithStartWorkflowOperation

from api.app import create_app
from api.context import Context, context, plain_request
from commands.seed import seed_catalogue
from domain.failures import FailureCode
from domain.models import PaymentRequest, ReservationResult
from epay.config import Settings
from epay.db import create_pool, migrate
from epay.temporal import payment_workflow_id
from store.keys import create_api_key
from store.payments import reserve_fee
from tests.support import temporary_database

T = TypeVar("T")
PUBLIC_URL = "http://api.epay.test"
DEPARTMENTS = ("DM", "RTA")
DEFAULT_TIMEOUT = 60.0
"""Seconds a call may take before it counts as unanswered (a hang, not a slow answer)."""
TABLES = ("payments", "fee_reservations", "card_vault", "payment_events", "idempotency_keys")


class TemporalCallRefused(RuntimeError):
    """A request reached Temporal where the in-process API has none to offer."""


@dataclass
class RecordingTemporal:
    """Stands in for ``temporalio.client.Client`` in the API's context.

    ``calls`` names every call the API made, in order. The reservation of a department's
    create is answered as the payment's workflow answers it when the fee is free (its
    first step, ``reserve_fee``), or as it ends a payment that started too late to reserve
    (``late_references``); anything else raises ``TemporalCallRefused``."""

    pool: asyncpg.Pool
    calls: list[str] = field(default_factory=list)
    late_references: set[str] = field(default_factory=set)
    """References whose payments' workflows start too late to reserve (workers away past
    the reservation's start limit): each ends unreserved, ``reservation_failed``."""
    ended_unreserved: set[str] = field(default_factory=set)
    """The payments whose workflows so ended: joining one again reads that end."""

    async def execute_update_with_start_workflow(
        self, update: object, *, start_workflow_operation: WithStartWorkflowOperation[Any, Any]
    ) -> ReservationResult:
        self.calls.append("execute_update_with_start_workflow")
        (req,) = start_workflow_operation._start_workflow_input.args
        assert isinstance(req, PaymentRequest), req
        if req.reference in self.late_references or req.payment_id in self.ended_unreserved:
            self.ended_unreserved.add(req.payment_id)
            return ReservationResult(ok=False, code=FailureCode.RESERVATION_FAILED)
        return await reserve_fee(
            self.pool, req, payment_workflow_id(req.payment_id), datetime.now(UTC)
        )

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)

        def refused(*args: object, **kwargs: object) -> None:
            self.calls.append(name)
            raise TemporalCallRefused(f"the API called Temporal's {name}")

        return refused


class ApiClient:
    """A department's (or the payer's) client on the in-process API: ``httpx.Client``'s
    calls, synchronous, and a context manager as ``Stack.client()``'s is."""

    def __init__(self, api: InProcessApi, headers: dict[str, str]) -> None:
        self.api = api
        self.headers = headers

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def request(
        self, method: str, path: str, *, headers: dict[Any, Any] | None = None, **kwargs: Any
    ) -> httpx.Response:
        timeout = float(kwargs.pop("timeout", DEFAULT_TIMEOUT))
        merged = {**self.headers, **(headers or {})}
        call = self.api.http.request(method, path, headers=merged, **kwargs)
        try:
            return self.api.run(asyncio.wait_for(call, timeout))
        except TimeoutError:  # as a server's client would see it: no answer in time
            raise httpx.ReadTimeout(f"{method} {path}: no answer in {timeout} s") from None

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)


class InProcessApi:
    """What a test needs of the API: the department's and the payer's calls, the records."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        http: httpx.AsyncClient,
        pool: asyncpg.Pool,
        temporal: RecordingTemporal,
        settings: Settings,
        keys: dict[str, str],
    ) -> None:
        self.loop = loop
        self.http = http
        self.pool = pool
        self.temporal = temporal
        self.settings = settings
        self.keys = keys

    def run(self, call: Awaitable[T]) -> T:
        async def awaited() -> T:
            return await call

        return self.loop.run_until_complete(awaited())

    def client(self, department: str = "DM") -> ApiClient:
        return ApiClient(self, {"Authorization": f"Bearer {self.keys[department]}"})

    def anonymous(self) -> ApiClient:
        """No API key: the payer's calls, and a department's without one."""
        return ApiClient(self, {})

    def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return [dict(r) for r in self.run(self.pool.fetch(sql, *args))]

    def table_counts(self) -> dict[str, int]:
        sql = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t}) AS {t}" for t in TABLES)
        return {k: int(v) for k, v in self.fetch(sql)[0].items()}

    @contextmanager
    def nothing_changes(self) -> Iterator[None]:
        """No row written and no call to Temporal while the block runs. In-process the
        request is over when its response is: no background write can still come."""
        before = self.table_counts()
        calls = len(self.temporal.calls)
        yield
        assert self.table_counts() == before
        assert self.temporal.calls[calls:] == [], "the request reached Temporal"

    # --- as tests/conftest.py's Stack has them ---------------------------------------------

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
            "reference": reference or f"INV-{uuid.uuid4().hex[:12]}",
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

    def get(self, payment_id: str, department: str = "DM") -> dict[str, Any]:
        with self.client(department) as c:
            response = c.get(f"/v1/payments/{payment_id}")
        assert response.status_code == 200, response.text
        payment: dict[str, Any] = response.json()
        return payment

    def authorise(self, payment: dict[str, Any], method: dict[str, Any]) -> httpx.Response:
        token = str(payment["next_url"].split("token=", 1)[1])
        return self.anonymous().post(
            f"/v1/payments/{payment['id']}/authorise",
            json=method,
            headers={"X-Payment-Token": token},
        )

    def three_d_secure(self, payment: dict[str, Any], otp: str) -> httpx.Response:
        token = str(payment["next_url"].split("token=", 1)[1])
        return self.anonymous().post(
            f"/v1/payments/{payment['id']}/3ds?token={token}", json={"otp": otp}
        )


def in_process_settings(dsn: str, **env: str) -> Settings:
    """A development configuration on ``dsn``: development secrets, no partner reachable, the
    key rate limit far above the tests' calls; ``env`` over it."""
    return Settings.from_env_mapping(
        {
            "DATABASE_URL": dsn,
            "EPAY_PUBLIC_URL": PUBLIC_URL,
            "EPAY_STATE_DIR": f"/tmp/epay-in-process-{uuid.uuid4().hex[:6]}",
            "EPAY_LOG_FORMAT": "text",
            "EPAY_API_RATE_PER_SECOND": "10000",
            "EPAY_API_RATE_BURST": "10000",
        }
        | env
    )


@contextmanager
def _root_logging_kept() -> Iterator[None]:
    """The API's setup takes over the root logger (one JSON handler, as a server wants): the
    test session keeps its own (pytest's capture)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


@contextmanager
def _libraries_left_uninstrumented() -> Iterator[None]:
    """The API's setup instruments httpx and asyncpg for tracing, process-wide, as a server
    wants; the test session's later tests get their clients back as they were."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    untouched = [
        instrumentor
        for instrumentor in (HTTPXClientInstrumentor(), AsyncPGInstrumentor())
        if not instrumentor.is_instrumented_by_opentelemetry
    ]
    try:
        yield
    finally:
        for instrumentor in untouched:
            if instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.uninstrument()


@contextmanager
def in_process_api(**env: str) -> Iterator[InProcessApi]:
    """The API on a database of its own (migrated, the sandbox catalogue seeded, a key for
    each of DM and RTA), configured with ``env`` over ``in_process_settings``, for as long as
    the block runs."""
    with temporary_database() as dsn, _libraries_left_uninstrumented():
        settings = in_process_settings(dsn, **env)
        with _root_logging_kept():
            app = create_app(settings)
        loop = asyncio.new_event_loop()

        def run(call: Coroutine[Any, Any, T]) -> T:
            return loop.run_until_complete(call)

        run(migrate(dsn))
        pool = run(create_pool(dsn, max_size=5))
        try:
            run(seed_catalogue(pool, settings))
            keys = {d: run(create_api_key(pool, d, "in-process tests")) for d in DEPARTMENTS}
            temporal = RecordingTemporal(pool)
            ctx = Context(settings=settings, pool=pool, temporal=cast(Client, temporal))

            def in_process_context(_: Annotated[None, Depends(plain_request)]) -> Context:
                """The request's context; taking it still checks the request (NUL, repeats)."""
                return ctx

            app.dependency_overrides[context] = in_process_context
            http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL)
            try:
                yield InProcessApi(loop, http, pool, temporal, settings, keys)
            finally:
                run(http.aclose())
        finally:
            run(pool.close())
            loop.close()
