"""Where ePay may send a department's webhook: to the public internet, never inside.

A webhook URL is the department's choice, and the departments worker POSTs to it from
inside ePay's network: a URL on a private, loopback or link-local address (the cloud's
metadata service at 169.254.169.254, a pod, PostgreSQL, Temporal) or a cluster name
(``*.svc.cluster.local``) would let a department reach what only ePay should (server-side
request forgery). So a destination is refused unless every address its name resolves to is
a public one and the name is not one of the cluster's own, or it is on the allowlist that
the settings give (``EPAY_WEBHOOK_ALLOWED_HOSTS``: the sandbox of the local stack).

The rule is pure: the API (at registration) and the delivery activity (before each POST,
after resolving the name again, so that a name rebound to an inside address is refused)
resolve the name and ask it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Names that only resolve inside a cluster, a cloud or a host: refused before any lookup.
INTERNAL_SUFFIXES = (
    ".svc",
    ".cluster.local",
    ".local",
    ".internal",
    ".localdomain",
    ".home.arpa",
    ".localhost",
)

# Not "global" by every RFC that Python's ipaddress knows, but spelled out where an address
# embeds another (each is checked as the address it leads to).
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_public_address(address: IPAddress | str) -> bool:
    """Whether ``address`` is a public destination: not private, loopback, link-local,
    multicast, reserved, unspecified or shared (CGNAT, 100.64.0.0/10), nor an IPv6 address
    that leads to one of those IPv4 addresses (IPv4-mapped, 6to4, NAT64, Teredo)."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_public_address(embedded)
    if (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT)
    ):
        return False
    return ip.is_global


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client's address, where the relay delivers
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def normal_host(host: str) -> str:
    """The host as compared: lower case, without a trailing dot or IPv6 brackets."""
    return host.strip().strip("[]").rstrip(".").lower()


def ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(normal_host(host))
    except ValueError:
        return None


def is_internal_name(host: str) -> bool:
    """A name that only the cluster's, the cloud's or the host's resolver answers:
    ``localhost``, a name under an internal suffix, or a single label (which the cluster's
    search domains complete to ``<name>.<namespace>.svc.cluster.local``)."""
    name = normal_host(host)
    if ip_literal(name) is not None:
        return False
    return name == "localhost" or "." not in name or name.endswith(INTERNAL_SUFFIXES)


@dataclass(frozen=True, slots=True)
class Allowlist:
    """Destinations allowed whatever their addresses: ``host`` (any port) or ``host:port``
    entries (``[v6]:port`` for an IPv6 address)."""

    entries: frozenset[tuple[str, int | None]] = frozenset()

    @classmethod
    def parse(cls, spec: str | None) -> Allowlist:
        """Comma-separated ``host`` or ``host:port``; ``ValueError`` names a bad entry."""
        entries: set[tuple[str, int | None]] = set()
        for raw in (part.strip() for part in (spec or "").split(",")):
            if raw:
                entries.add(_entry(raw))
        return cls(frozenset(entries))

    def allows(self, host: str, port: int) -> bool:
        name = normal_host(host)
        return (name, None) in self.entries or (name, port) in self.entries

    def __bool__(self) -> bool:
        return bool(self.entries)


def _entry(raw: str) -> tuple[str, int | None]:
    host, port = raw, None
    if raw.startswith("["):
        host, _, rest = raw[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{raw!r} is not host or host:port")
            port = _port(raw, rest[1:])
    elif raw.count(":") == 1:
        host, _, given = raw.partition(":")
        port = _port(raw, given)
    host = normal_host(host)
    if not host or any(c in host for c in "/@?# "):
        raise ValueError(f"{raw!r} is not host or host:port")
    return host, port


def _port(raw: str, given: str) -> int:
    if not given.isdigit() or not 0 < int(given) < 65536:
        raise ValueError(f"{raw!r}: the port is not a number from 1 to 65535")
    return int(given)


def refusal(
    host: str, port: int, addresses: list[IPAddress] | None, allowlist: Allowlist
) -> str | None:
    """Why a destination is refused (None: it may be sent to). ``addresses`` are what the
    host resolved to (an IP literal's own address; None: not resolved yet, only the name is
    judged). Every address must be public: a name with one inside address among public ones
    would reach it as often as the resolver's order puts it first."""
    if allowlist.allows(host, port):
        return None
    literal = ip_literal(host)
    if literal is not None:
        return None if is_public_address(literal) else "address_not_public"
    if is_internal_name(host):
        return "internal_name"
    if addresses is None:
        return None
    if not addresses:
        return "unresolved"
    if not all(is_public_address(a) for a in addresses):
        return "address_not_public"
    return None


#: What the delivery log keeps for an attempt not sent because its destination was refused.
DESTINATION_REFUSED = "destination_not_allowed"
