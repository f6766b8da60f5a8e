"""A worker process's liveness and readiness, over HTTP (``EPAY_HEALTH_PORT``).

``GET /healthz`` answers 200 while the process runs; ``GET /readyz`` answers 200 only when
``ready()`` says so, 503 otherwise. Workers pull their tasks from Temporal, so readiness
routes no traffic: it tells Kubernetes (and an SRE) that the process is polling and can do
its work, and when it has stopped taking any (draining).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

REQUEST_TIMEOUT = 5.0  # seconds a probe has to send its request
MAX_REQUEST_BYTES = 8192


async def serve_health(port: int, ready: Callable[[], Awaitable[bool]]) -> asyncio.Server:
    """Start answering probes on ``port`` (all interfaces: the kubelet probes the pod's IP)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            method, path = _request_line(head)
            if method != "GET":
                status, body = "405 Method Not Allowed", "GET only"
            elif path == "/healthz":
                status, body = "200 OK", "alive"
            elif path == "/readyz":
                status, body = (
                    ("200 OK", "ready")
                    if await ready()
                    else ("503 Service Unavailable", "not ready")
                )
            else:
                status, body = "404 Not Found", "/healthz or /readyz"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}".encode()
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a probe that hung up or never finished its request gets no answer
        finally:
            writer.close()

    return await asyncio.start_server(answer, port=port, limit=MAX_REQUEST_BYTES)


def _request_line(head: bytes) -> tuple[str, str]:
    method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
    return method, rest.split(" ", 1)[0].split("?", 1)[0]
