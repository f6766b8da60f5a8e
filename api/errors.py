"""Errors as ``application/problem+json`` (RFC 9457), each with a stable ``code``.

Nothing the caller sent is echoed back in an error: a malformed card number must not come
back in a response, a log line or a trace.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError

from api.schemas import Problem

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
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title or code.replace("_", " ").capitalize()
        self.errors = errors
        self.headers: dict[str, str] = {}  # e.g. a 429's Retry-After


def problem_body(error: ApiError) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"/problems/{error.code}",
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

# A name from the body that may be repeated in an error: the shape of every field the API
# declares. The names of unknown fields and the keys of ``metadata`` are the caller's own
# strings (a card number, markup, a megabyte of text): one of another shape is not repeated.
SAFE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")


def _field_name(error: dict[str, Any]) -> tuple[str, bool]:
    """The field as the caller sent it, without the ``body`` prefix and without the tag that
    a discriminated union adds (``card.cvv`` is the ``cvv`` field); and whether it is named
    in full. A name in the body's path that is not a ``SAFE_NAME`` ends the path there: the
    error is then the enclosing object's (``metadata``, ``payer``, or the ``body``)."""
    discriminator = (error.get("ctx") or {}).get("discriminator")
    if error.get("type") in ("union_tag_invalid", "union_tag_not_found") and discriminator:
        return str(discriminator).strip("'\""), True
    where, *rest = tuple(error.get("loc", ())) or ("body",)
    loc = tuple(rest)
    if where != "body":  # a query, header or path parameter: the API's own names
        return ".".join(str(p) for p in loc) or str(where), True
    if len(loc) > 1 and loc[0] in UNION_TAGS:
        loc = loc[1:]
    named: list[str] = []
    for part in loc:
        if not isinstance(part, int) and not SAFE_NAME.fullmatch(str(part)):
            return ".".join(named) or "body", False
        named.append(str(part))
    return ".".join(named) or "body", True


# pydantic's messages for these repeat the value that was sent, which may be card data.
ECHOING_TYPES = {
    "union_tag_invalid": "Unknown value: use one of the documented values.",
    "enum": "Unknown value: use one of the documented values.",
    "literal_error": "Unknown value: use one of the documented values.",
}
UNKNOWN_FIELD = "Not a field of this request."


def _message(error: dict[str, Any]) -> str:
    """pydantic's message, unless it may repeat what was sent. Its ``input`` and ``ctx``
    (which can hold the value) are never part of an answer."""
    message = ECHOING_TYPES.get(str(error.get("type")), str(error.get("msg", "invalid value")))
    sent = error.get("input")
    if isinstance(sent, str) and len(sent) >= 3 and sent in message:
        return "The value is not valid."
    return message


def _validation_problem(exc: RequestValidationError) -> ApiError:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return ApiError(400, "malformed_json", "The request body is not valid JSON.")
    fields: list[dict[str, Any]] = []
    unnamed: Counter[str] = Counter()  # unknown fields whose names are not repeated, by parent
    for error in map(dict, errors):
        name, in_full = _field_name(error)
        if error.get("type") != "extra_forbidden":
            fields.append(
                {
                    "field": name,
                    "code": str(error.get("type", "invalid")),
                    "message": _message(error),
                }
            )
        elif in_full:
            fields.append({"field": name, "code": "unknown_field", "message": UNKNOWN_FIELD})
        else:
            unnamed[name] += 1
    for parent, count in unnamed.items():
        fields.append(
            {
                "field": parent,
                "code": "unknown_field",
                "message": f"{count} unknown field(s) in {parent}, not named here.",
                "count": count,
            }
        )
    return ApiError(
        422,
        "validation_failed",
        "Some fields are missing or not valid: " + ", ".join(sorted({f["field"] for f in fields})),
        title="Invalid request",
        errors=fields,
    )


def document_problems(app: FastAPI) -> None:
    """Give every ``application/problem+json`` answer in the served OpenAPI the ``Problem``
    schema. FastAPI would put a response ``model`` under ``application/json``, which no
    error is sent as, so the routes declare the media type alone and the schema is filled
    in here."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        _, definitions = models_json_schema(
            [(Problem, "serialization")], ref_template="#/components/schemas/{model}"
        )
        document.setdefault("components", {}).setdefault("schemas", {}).update(definitions["$defs"])
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                for response in operation.get("responses", {}).values():
                    content = response.get("content", {})
                    if PROBLEM_JSON in content:
                        content[PROBLEM_JSON] = {"schema": {"$ref": "#/components/schemas/Problem"}}
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def install_error_handlers(app: FastAPI) -> None:
    document_problems(app)

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
        return problem(_unavailable())

    async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        """PostgreSQL refusing, resetting or dropping connections (a partition, a restart, a
        full server) is the service being briefly away, as for Temporal: 503, not 500."""
        log.error(
            "database unreachable on %s %s: %s",
            request.method,
            request.url.path,
            type(exc).__name__,
        )
        return problem(_unavailable())

    for unreachable in DATABASE_UNREACHABLE:
        app.add_exception_handler(unreachable, _database_unavailable)


# A connection to PostgreSQL refused, reset or lost, or the server refusing new ones.
DATABASE_UNREACHABLE: tuple[type[Exception], ...] = (
    ConnectionError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
)


def _unavailable() -> ApiError:
    return ApiError(
        503,
        "temporarily_unavailable",
        "The payment service is briefly unavailable; retry the request.",
        title="Service unavailable",
    )
