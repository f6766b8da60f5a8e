"""Resolving a department's webhook URL and judging it (domain/destinations.py).

The API asks at registration, the delivery activity before each POST: the name is resolved
each time through the event loop's resolver (``getaddrinfo`` in a thread, with a timeout),
and every address it gives must be public unless the host is on the allowlist.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from domain.destinations import Allowlist, IPAddress, ip_literal, normal_host, refusal

DEFAULT_PORTS = {"http": 80, "https": 443}


class DestinationRefused(Exception):
    """The URL leads inside ePay's network (or nowhere); ``reason`` says which rule."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Destination:
    """A URL judged fit: its host and port, and the address checked (``None`` when the host
    is allowlisted, so that nothing was checked and nothing is pinned)."""

    host: str
    port: int
    address: IPAddress | None


async def resolve(host: str, port: int, within_seconds: float) -> list[IPAddress]:
    """Every address ``host`` resolves to (TCP); an empty list if it resolves to none."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), within_seconds
        )
    except (OSError, TimeoutError, UnicodeError):
        return []
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


async def check(url: str, allowlist: Allowlist, resolve_seconds: float) -> Destination:
    """The destination of ``url`` if ePay may send to it, else ``DestinationRefused``."""
    parts = urlsplit(url)
    host = normal_host(parts.hostname or "")
    port = parts.port or DEFAULT_PORTS.get(parts.scheme, 443)
    if not host:
        raise DestinationRefused("no_host")
    if allowlist.allows(host, port):
        return Destination(host, port, None)
    literal = ip_literal(host)
    addresses = [literal] if literal is not None else None
    reason = refusal(host, port, addresses, allowlist)
    if reason is None and addresses is None:
        addresses = await resolve(host, port, resolve_seconds)
        reason = refusal(host, port, addresses, allowlist)
    if reason is not None or not addresses:
        raise DestinationRefused(reason or "unresolved")
    return Destination(host, port, addresses[0])
