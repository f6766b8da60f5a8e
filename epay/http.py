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
    """Raise for answers that say "not now": a retry may well get the final answer.

    A 409 ``request_in_progress`` means the partner is still working on an earlier request
    with the same idempotency key (its answer to us was lost or is late).
    """
    if response.status_code in TRANSIENT_STATUSES or (
        response.status_code == 409 and error_code(response) == "request_in_progress"
    ):
        raise TransientError(f"{response.request.url.path} answered {response.status_code}")
