"""How the activities read answers from the outside world's HTTP services."""

from __future__ import annotations

import httpx

TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class TransientError(Exception):
    """The service could not answer now; the call is worth retrying."""


def error_code(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return f"http_{response.status_code}"


def raise_for_transient(response: httpx.Response) -> None:
    if response.status_code in TRANSIENT_STATUSES:
        raise TransientError(f"{response.request.url.path} answered {response.status_code}")
