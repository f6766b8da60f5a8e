"""The ePay API application: department API, payer calls, health, served OpenAPI."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from api import departments, payer, refunds, webhooks
from api.context import Context, Ctx
from api.errors import INTERNAL_ERROR, install_error_handlers, problem_body
from api.hosted.headers import PayPageHeaders
from api.hosted.routes import router as hosted_router
from api.limits import BodySizeLimit
from api.ratelimit import RateLimiter
from epay import telemetry
from epay.config import Settings
from epay.db import create_pool
from epay.temporal import connect_when_reachable

log = logging.getLogger("epay.api")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env("api")
    process = telemetry.setup(settings, telemetry.SERVICE_API)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        telemetry.adopt_server_logs()  # uvicorn has configured its loggers by now
        pool = await create_pool(settings.require_database_url(), max_size=20)
        temporal = await connect_when_reachable(settings, runtime=process.runtime)
        app.state.ctx = Context(settings=settings, pool=pool, temporal=temporal)
        yield
        await pool.close()
        process.shutdown()

    app = FastAPI(
        title="ePay",
        version="1.0.0",
        description=(
            "Durable payment gateway for government fees and fines. Amounts are integers in "
            "fils (AED 1 = 100 fils). Errors are application/problem+json with a stable `code`."
        ),
        lifespan=lifespan,
        # Off in production unless EPAY_SERVE_API_DOCS asks: departments work from the
        # published contract, and a public service need not map itself to strangers.
        openapi_url="/openapi.json" if settings.api_docs else None,
        docs_url="/docs" if settings.api_docs else None,
        redoc_url="/redoc" if settings.api_docs else None,
    )
    install_error_handlers(app)
    app.state.rate_limiter = RateLimiter.of(settings)  # per department API key (api/context.py)
    app.add_middleware(BodySizeLimit)
    app.add_middleware(
        telemetry.RequestTelemetry,
        meter=process.meter,
        internal_error=json.dumps(problem_body(INTERNAL_ERROR)).encode(),
    )
    # Outermost: on /pay's errors and 500s too; HSTS in production only, so that make run
    # over http:// does not pin 127.0.0.1 to https in the developer's browser.
    app.add_middleware(PayPageHeaders, hsts=settings.production)
    telemetry.instrument_app(app, process.provider)
    app.include_router(departments.router)
    app.include_router(refunds.router)
    app.include_router(payer.router)
    app.include_router(hosted_router)
    app.include_router(webhooks.router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz(ctx: Ctx) -> JSONResponse:
        """The database and Temporal are reachable."""
        checks: dict[str, str] = {}
        try:
            await ctx.pool.fetchval("SELECT 1")
            checks["database"] = "ok"
        except Exception:  # noqa: BLE001
            checks["database"] = "unreachable"
        try:
            await ctx.temporal.service_client.check_health()
            checks["temporal"] = "ok"
        except Exception:  # noqa: BLE001
            checks["temporal"] = "unreachable"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    return app
