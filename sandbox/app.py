"""The sandbox app: stand-ins for the acquirer, e-Dirham issuer and departments.

One process serves all three so development and tests need a single extra server.
State is kept in a SQLite state file, so it survives restarts, or in memory for as long
as the app instance lives when there is none.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sandbox import acquirer, departments, issuer, webhooks
from sandbox.common import PanMaskingFilter, SandboxError, error_body
from sandbox.state import StateDB

DEFAULT_LOST_ANSWER_DELAY = 15.0
DEFAULT_SLOW_SECONDS = 5.0

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def _install_log_masking() -> None:
    """Access logs show URLs, and admin card URLs contain a card number."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, PanMaskingFilter) for f in logger.filters):
            logger.addFilter(PanMaskingFilter())


def create_app(
    *,
    lost_answer_delay: float | None = None,
    slow_seconds: float | None = None,
    state_file: str | None = None,
) -> FastAPI:
    """Build a sandbox; unset options come from SANDBOX_* env vars, then defaults (no state
    file: a fresh sandbox in memory)."""
    state_file = state_file or os.environ.get("SANDBOX_STATE_FILE") or None
    if lost_answer_delay is None:
        lost_answer_delay = _env_float("SANDBOX_LOST_ANSWER_DELAY", DEFAULT_LOST_ANSWER_DELAY)
    if slow_seconds is None:
        slow_seconds = _env_float("SANDBOX_SLOW_SECONDS", DEFAULT_SLOW_SECONDS)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Run after uvicorn has configured logging, so the filter is not replaced.
        _install_log_masking()
        yield

    app = FastAPI(title="ePay sandbox", version="0.1.0", lifespan=lifespan)
    db = StateDB(state_file)
    app.include_router(acquirer.build_router(db, lost_answer_delay=lost_answer_delay))
    app.include_router(issuer.build_router(db))
    app.include_router(departments.build_router(db, slow_seconds=slow_seconds))
    app.include_router(webhooks.build_router(db))

    @app.exception_handler(SandboxError)
    async def sandbox_error(_: Request, exc: SandboxError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Deliberately omit the rejected input: it may be a card number, CVV or PIN.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}"
            for err in exc.errors()
        )
        return JSONResponse(status_code=422, content=error_body("validation_error", problems))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(
            status_code=exc.status_code,
            content=error_body(code, str(exc.detail)),
            headers=exc.headers,
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
