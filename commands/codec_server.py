"""``epay codec-server``: Temporal's codec server protocol, for operators only.

The Temporal Web UI and CLI send ``POST /decode`` (and ``/encode``, when an operator sends
input from the UI) with ``{"payloads": [...]}``, the protobuf JSON form of ``Payloads``
(base64 ``metadata`` values and ``data``); the answer has the same form. ``/<namespace>/decode``
is served too, for the CLI's ``--codec-endpoint 'http://host:8081/{namespace}'``.

Every call needs an operator's credential (``EPAY_OPERATOR_TOKENS``): either
``Authorization: Bearer <operator token>`` (the CLI's ``--codec-auth``, scripts), or the
session cookie that ``/login`` sets once the operator has typed their token there. The UI
(2.54, in the dev server) sends that cookie only when the operator's browser uses its own
codec setting with "Include cross-origin credentials" on: ``--ui-codec-endpoint`` cannot
turn that on for everyone, and the UI's "Pass the user access token" sends an OIDC token,
only to an https endpoint, which an operator token is not. No credential: 401; a wrong one:
403. Cross-origin calls are allowed from the UI's origin only (``EPAY_TEMPORAL_UI_ORIGIN``),
with credentials.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import parse_qs

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.common import MetricMeter

from epay import telemetry
from epay.codec import EncryptionCodec, PayloadKeyError
from epay.config import Settings
from epay.crypto import hash_operator_token

log = logging.getLogger("epay.codec_server")

SESSION_COOKIE = "epay_operator_session"
SESSION_SECONDS = 8 * 3600


def _problem(status: int, code: str, detail: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="epay-codec"'} if status == 401 else None
    return JSONResponse(
        {"status": status, "code": code, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
        headers=headers,
    )


def session_key(settings: Settings) -> bytes:
    """The key that signs operators' session cookies, derived from the active payload key.

    The codec server holds the payload keys and the operator tokens only (docs/security.md):
    not the token secret, which signs payers' links and the API's update proofs. A key
    derived under its own label is the same on every replica and across restarts, and
    reveals nothing of the payload key; rotating the active payload key ends the sessions.
    """
    keys = settings.payload_keys
    label = b"epay-codec-session-key|" + keys.active.encode()
    return hmac.new(keys.keys[keys.active], label, hashlib.sha256).digest()


class Operators:
    """Who may use the codec server: operator tokens (hashed) and the sessions made from them."""

    def __init__(self, settings: Settings) -> None:
        self._tokens = dict(settings.operator_tokens)
        self._secret = session_key(settings)

    def by_token(self, token: str) -> str | None:
        digest = hash_operator_token(token)
        found = None
        for name, known in self._tokens.items():
            if hmac.compare_digest(digest, known):
                found = name
        return found

    def _signature(self, name: str, expires: int) -> str:
        # Bound to the operator's token hash: replacing or removing a token ends its sessions.
        message = f"epay-codec-session|{name}|{self._tokens[name].hex()}|{expires}"
        digest = hmac.new(self._secret, message.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def new_session(self, name: str, now: float) -> str:
        expires = int(now) + SESSION_SECONDS
        subject = base64.urlsafe_b64encode(f"{name}|{expires}".encode()).decode().rstrip("=")
        return f"{subject}.{self._signature(name, expires)}"

    def by_session(self, session: str, now: float) -> str | None:
        try:
            subject, signature = session.split(".", 1)
            padded = subject + "=" * (-len(subject) % 4)
            name, expires_text = base64.urlsafe_b64decode(padded).decode().rsplit("|", 1)
            expires = int(expires_text)
        except ValueError:
            return None
        if name not in self._tokens or expires < now:
            return None
        return name if hmac.compare_digest(signature, self._signature(name, expires)) else None


def _login_page(message: str = "", status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ePay codec server: sign in</title></head>
<body>
<h1>ePay codec server</h1>
<p>{message}</p>
<form method="post" action="/login">
  <label>Operator token <input type="password" name="token" autocomplete="off" required></label>
  <button type="submit">Sign in</button>
</form>
<p>Then, once per browser, in the Temporal Web UI: click the Codec Server icon in the top
bar, choose <em>Use my browser setting and ignore Cluster-level setting</em>, paste this
server's address, switch on <em>Include cross-origin credentials</em>, Apply, and reload
the page. Open the UI
on the same host name as this page (127.0.0.1 or localhost, not one of each): the session
cookie is only sent there.</p>
</body></html>""",
        status_code=status,
    )


LOGIN_BODY_LIMIT = 4096
"""The most a sign-in form may hold: a token field and its name, with room to spare."""


async def _small_body(request: Request, limit: int) -> bytes | None:
    """The request's body, or None as soon as it is known to pass ``limit`` bytes: by its
    Content-Length before anything is read, or while a body without one is streamed."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isascii() or not declared.isdigit()):
        return None
    if declared is not None and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def create_codec_app(settings: Settings, meter: MetricMeter = MetricMeter.noop) -> FastAPI:
    codec = EncryptionCodec(settings.payload_keys)
    operators = Operators(settings)
    allowed_origins = set(settings.temporal_ui_origins)
    app = FastAPI(title="ePay codec server", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=sorted(allowed_origins),
        allow_credentials=True,
        allow_methods=["POST"],
        allow_headers=["Content-Type", "X-Namespace", "Authorization"],
        max_age=600,
    )
    app.add_middleware(
        telemetry.RequestTelemetry,
        meter=meter,
        internal_error=bytes(_problem(500, "internal_error", "Something went wrong.").body),
    )
    payloads = meter.create_counter(
        "epay_codec_payloads", "Payloads decoded or encoded for operators, by direction"
    )

    def operator_of(request: Request) -> str | Response:
        origin = request.headers.get("origin")
        if origin is not None and origin not in allowed_origins:
            return _problem(403, "origin_not_allowed", f"calls from {origin} are not allowed")
        header = request.headers.get("authorization")
        if header:
            scheme, _, token = header.partition(" ")
            name = operators.by_token(token.strip()) if scheme.lower() == "bearer" else None
        elif session := request.cookies.get(SESSION_COOKIE):
            name = operators.by_session(session, time.time())
        else:
            return _problem(
                401,
                "operator_credential_required",
                "send Authorization: Bearer <operator token>, or sign in at /login",
            )
        if name is None:
            return _problem(403, "operator_credential_refused", "not a valid operator credential")
        return name

    async def convert(
        request: Request,
        direction: str,
        run: Callable[[Sequence[Payload]], Awaitable[list[Payload]]],
    ) -> Response:
        operator = operator_of(request)
        if isinstance(operator, Response):
            return operator
        try:
            received = json_format.Parse(
                await request.body(), Payloads(), ignore_unknown_fields=True
            )
        except (json_format.ParseError, DecodeError, UnicodeDecodeError) as exc:
            return _problem(400, "malformed_payloads", f"not a JSON Payloads object: {exc}")
        try:
            converted = await run(received.payloads)
        except PayloadKeyError as exc:
            return _problem(400, "payload_key_unknown", str(exc))
        payloads.add(len(converted), {"direction": direction})
        namespace = request.headers.get("x-namespace") or request.path_params.get("namespace")
        log.info(
            "operator %s: %s %d payloads (namespace %s)",
            operator,
            direction,
            len(converted),
            namespace or "-",
        )
        answer = json_format.MessageToJson(Payloads(payloads=converted))
        return Response(answer, media_type="application/json")

    @app.post("/decode")
    @app.post("/{namespace}/decode")
    async def decode(request: Request) -> Response:
        return await convert(request, "decoded", codec.decode)

    @app.post("/encode")
    @app.post("/{namespace}/encode")
    async def encode(request: Request) -> Response:
        return await convert(request, "encoded", codec.encode)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/login")
    async def login_form() -> HTMLResponse:
        return _login_page()

    @app.post("/login")
    async def login(request: Request) -> HTMLResponse:
        body = await _small_body(request, LOGIN_BODY_LIMIT)
        if body is None:
            return _login_page("That is not a sign-in form.", status=413)
        form = parse_qs(body.decode(errors="replace"))
        name = operators.by_token(form.get("token", [""])[0].strip())
        if name is None:
            return _login_page("That is not a valid operator token.", status=403)
        response = _login_page(
            f"Signed in as <strong>{html.escape(name)}</strong> for "
            f"{SESSION_SECONDS // 3600} hours."
        )
        response.set_cookie(
            SESSION_COOKIE,
            operators.new_session(name, time.time()),
            max_age=SESSION_SECONDS,
            httponly=True,
            samesite="strict",
            # In production the server sits behind a TLS-terminating proxy: the cookie is
            # Secure even though the request reaches it in the clear.
            secure=settings.production or request.url.scheme == "https",
        )
        log.info("operator %s signed in", name)
        return response

    @app.post("/logout")
    async def logout() -> HTMLResponse:
        response = _login_page("Signed out.")
        response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict")
        return response

    return app


def serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    process = telemetry.setup(settings, telemetry.SERVICE_CODEC_SERVER)
    app = create_codec_app(settings, process.meter)
    telemetry.instrument_app(app, process.provider)
    # The process's logging stays as set up: JSON lines, and one access line a request
    # from RequestTelemetry instead of uvicorn's.
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)
