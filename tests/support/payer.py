"""The payer's side of the hosted page over HTTP: the link exchanged for the session cookie,
and the page's calls made with it and the page's CSRF value."""

from __future__ import annotations

import re
from typing import Any

import httpx

from api import payer_session
from tests.conftest import Stack


def link_path(payment: dict[str, Any]) -> str:
    """``next_url`` without its origin: the stack's API serves it."""
    return "/pay/" + payment["next_url"].split("/pay/", 1)[1]


def api(stack: Stack) -> httpx.Client:
    return httpx.Client(base_url=stack.api_url, timeout=60, follow_redirects=False)


class PayerPage:
    """A payer's browser, as far as HTTP goes: the session cookie from the link, and the
    page's CSRF value."""

    def __init__(self, stack: Stack, payment: dict[str, Any]) -> None:
        self.stack = stack
        self.payment_id = payment["id"]
        self.client = api(stack)
        exchange = self.client.get(link_path(payment))
        assert exchange.status_code == 200, exchange.text
        assert f'http-equiv="refresh" content="0;url=/pay/{self.payment_id}"' in exchange.text
        cookie = self.client.cookies.get(payer_session.COOKIE)
        assert cookie
        self.cookie: str = cookie
        page = self.client.get(f"/pay/{self.payment_id}")
        assert page.status_code == 200, page.text
        found = re.search(r'<meta name="epay-csrf" content="([^"]+)">', page.text)
        assert found, page.text
        self.csrf = found.group(1)
        self.html = page.text

    def headers(self, **extra: str) -> dict[str, str]:
        return {"X-ePay-CSRF": self.csrf, **extra}

    def status(self) -> httpx.Response:
        return self.client.get(f"/pay/{self.payment_id}/status", headers=self.headers())

    def authorise(self, method: dict[str, Any]) -> httpx.Response:
        return self.client.post(
            f"/pay/{self.payment_id}/authorise", json=method, headers=self.headers()
        )
