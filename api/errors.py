"""Errors as ``application/problem+json`` (RFC 9457), each with a stable ``code``.

Nothing the caller sent is echoed back in an error: a malformed card number must not come
back in a response, a log line or a trace.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError

log = logging.getLogger("epay.api")

PROBLEM_JSON = "application/problem+json"


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        title: str | None = None,
        errors: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title or code.replace("_", " ").capitalize()
        self.errors = errors


def problem_body(error: ApiError) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"/problems/{error.code}",
        self.headers: dict[str, str] = {}  # e.g. a 429's Retry-After
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "code": error.code,
    }
    if error.errors is not None:
        body["errors"] = error.errors
    return body


# What an unexpected exception is answered with (``epay.telemetry.RequestTelemetry`` answers it,
# and logs the exception's type and the request id alone).
INTERNAL_ERROR = ApiError(500, "internal_error", "Something went wrong on our side.")


def problem(error: ApiError) -> JSONResponse:
    return JSONResponse(
        problem_body(error),
        status_code=error.status,
        media_type=PROBLEM_JSON,
        headers=error.headers or None,
    )


def not_found(what: str = "payment") -> ApiError:
    return ApiError(404, f"{what}_not_found", f"No such {what}.", title="Not found")


def field_error(field: str, code: str, message: str) -> ApiError:
    return ApiError(
        422,
        "validation_failed",
        message,
        title="Invalid request",
        errors=[{"field": field, "code": code, "message": message}],
    )


UNION_TAGS = frozenset({"card", "e_dirham"})


def _field_name(error: dict[str, Any]) -> str:
    """The field as the caller sent it: without the ``body`` prefix and without the tag
    that a discriminated union adds (``card.cvv`` is the ``cvv`` field)."""
    discriminator = (error.get("ctx") or {}).get("discriminator")
    if error.get("type") in ("union_tag_invalid", "union_tag_not_found") and discriminator:
        return str(discriminator).strip("'\"")
    where, *rest = tuple(error.get("loc", ())) or ("body",)
    loc = tuple(rest)
    if where == "body" and len(loc) > 1 and loc[0] in UNION_TAGS:
        loc = loc[1:]
    return ".".join(str(p) for p in loc) or "body"


# pydantic's messages for these repeat the value that was sent, which may be card data.
ECHOING_TYPES = {
    "union_tag_invalid": "Unknown value: use one of the documented values.",
    "enum": "Unknown value: use one of the documented values.",
    "literal_error": "Unknown value: use one of the documented values.",
}


def _message(error: dict[str, Any]) -> str:
    return ECHOING_TYPES.get(str(error.get("type")), str(error.get("msg", "invalid value")))


def _validation_problem(exc: RequestValidationError) -> ApiError:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return ApiError(400, "malformed_json", "The request body is not valid JSON.")
    fields = [
        {
            "field": _field_name(dict(e)),
            "code": str(e.get("type", "invalid")),
            "message": _message(dict(e)),
        }
        for e in errors
    ]
    return ApiError(
        422,
        "validation_failed",
        "Some fields are missing or not valid: " + ", ".join(sorted({f["field"] for f in fields})),
        title="Invalid request",
        errors=fields,
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return problem(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return problem(_validation_problem(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        code = codes.get(exc.status_code, f"http_{exc.status_code}")
        return problem(ApiError(exc.status_code, code, str(exc.detail)))

    @app.exception_handler(RPCError)
    async def _temporal_unavailable(request: Request, exc: RPCError) -> JSONResponse:
        log.error("Temporal call failed on %s %s: %s", request.method, request.url.path, exc.status)
        return problem(
            ApiError(
                503,
                "temporarily_unavailable",
                "The payment service is briefly unavailable; retry the request.",
                title="Service unavailable",
            )
        )
