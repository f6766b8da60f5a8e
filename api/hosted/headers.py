"""The headers of every response under ``/pay``: the page's content security policy and
the rest, on its errors and static files as well as its pages."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
}
# Production only (the page is served over https there; make run serves it over http): two
# years, subdomains included, as the HSTS preload list asks.
HSTS = ("strict-transport-security", "max-age=63072000; includeSubDomains")


@dataclass
class PayPageHeaders:
    """ASGI middleware: ``PAGE_HEADERS`` (and with ``hsts`` the ``HSTS`` header) on every
    response under ``/pay``, the errors and the static files included (a header of the same
    name that a handler set is replaced)."""

    app: ASGIApp
    hsts: bool = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == "/pay" or path.startswith("/pay/")):
            await self.app(scope, receive, send)
            return

        added = PAGE_HEADERS | dict([HSTS] if self.hsts else [])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.decode("latin-1").lower() not in added
                ]
                headers += [(k.encode(), v.encode()) for k, v in added.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
