"""No server-side request forgery through webhooks: a department's endpoint must lead to the
public internet, at registration and again before each delivery (after resolving its name
anew, so that a name rebound to an inside address is refused); the delivery log shows a
department the outcome and the HTTP status, never why a connection failed; another
department's event answers 404 as a missing one does.

The rule (domain/destinations.py) is tested alone; registration and the delivery log on the
in-process API (tests/support/app.py); the delivery activity on that API's database, with
the resolver replaced (no lookup leaves the machine) and the endpoint answered by an httpx
mock transport or a small proxy on loopback. tests/test_webhooks.py shows a refusal at
delivery on the real stack.
"""

from __future__ import annotations

import asyncio
import ipaddress
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from temporalio.testing import ActivityEnvironment

from activities.webhooks import WebhookDeliveries
from domain.destinations import (
    Allowlist,
    IPAddress,
    is_internal_name,
    is_public_address,
    refusal,
)
from domain.webhooks import DeliveryAttempt
from epay import egress
from store import department_secrets
from tests.support.app import InProcessApi, in_process_api

PUBLIC = "93.184.215.14"
NAME = "hooks.fines.example.gov.ae"

# --- the rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "127.0.0.1",
        "127.8.9.10",
        "169.254.169.254",  # the cloud's metadata service
        "100.64.0.1",  # shared address space (CGNAT)
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.2.1",  # documentation (TEST-NET-1)
        "::1",
        "::",
        "fe80::1",
        "fd00::1",
        "ff02::1",
        "::ffff:10.0.0.1",  # IPv4-mapped
        "::ffff:169.254.169.254",
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    ],
)
def test_an_inside_address_is_not_public(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize("address", [PUBLIC, "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_a_public_address_is(address: str) -> None:
    assert is_public_address(address)


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "LOCALHOST.",
        "api.localhost",
        "postgres",  # one label: the cluster's search domains complete it
        "epay-api.epay.svc",
        "epay-api.epay.svc.cluster.local",
        "metadata.google.internal",
        "printer.local",
        "box.localdomain",
        "router.home.arpa",
    ],
)
def test_a_cluster_or_host_name_is_internal(host: str) -> None:
    assert is_internal_name(host)


@pytest.mark.parametrize("host", [NAME, "example.com", "example.com.", PUBLIC, "::1"])
def test_a_dotted_public_name_or_an_address_is_not_an_internal_name(host: str) -> None:
    assert not is_internal_name(host)


def test_the_allowlist_takes_a_host_or_a_host_and_port() -> None:
    allowed = Allowlist.parse(" 127.0.0.1:8100, Sandbox.test ,[::1]:9 ")
    assert allowed.allows("127.0.0.1", 8100)
    assert not allowed.allows("127.0.0.1", 8101)
    assert allowed.allows("sandbox.test", 443)
    assert allowed.allows("SANDBOX.TEST.", 80)
    assert allowed.allows("[::1]", 9)
    assert not allowed.allows("::1", 80)
    assert not Allowlist.parse(None)
    for bad in ("http://x", "x:0", "x:http", "a b", "[::1]x"):
        with pytest.raises(ValueError, match=r"port|host"):
            Allowlist.parse(bad)


def addresses(*given: str) -> list[IPAddress]:
    return [ipaddress.ip_address(a) for a in given]


def test_every_address_of_a_name_must_be_public() -> None:
    none = Allowlist()
    assert refusal(NAME, 443, addresses(PUBLIC), none) is None
    assert refusal(NAME, 443, addresses(PUBLIC, "10.0.0.1"), none) == "address_not_public"
    assert refusal(NAME, 443, [], none) == "unresolved"
    assert refusal(NAME, 443, None, none) is None  # the name alone: nothing against it yet
    assert refusal("10.0.0.1", 443, None, none) == "address_not_public"
    assert refusal("kafka.svc.cluster.local", 443, addresses(PUBLIC), none) == "internal_name"
    assert refusal("127.0.0.1", 8100, None, Allowlist.parse("127.0.0.1:8100")) is None
    assert refusal("127.0.0.1", 8101, None, Allowlist.parse("127.0.0.1:8100")) is not None


# --- resolving ---------------------------------------------------------------------------


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """The resolver, replaced: name -> addresses (unknown names resolve to none)."""
    table: dict[str, list[str]] = {}

    async def resolve(host: str, port: int, within_seconds: float) -> list[IPAddress]:
        return addresses(*table.get(host, []))

    monkeypatch.setattr(egress, "resolve", resolve)
    return table


def test_a_name_is_judged_by_what_it_resolves_to_now(dns: dict[str, list[str]]) -> None:
    dns[NAME] = [PUBLIC]
    checked = asyncio.run(egress.check(f"https://{NAME}/epay", Allowlist(), 1.0))
    assert (checked.host, checked.port, str(checked.address)) == (NAME, 443, PUBLIC)
    dns[NAME] = ["10.0.0.7"]  # rebound since
    with pytest.raises(egress.DestinationRefused):
        asyncio.run(egress.check(f"https://{NAME}/epay", Allowlist(), 1.0))
    with pytest.raises(egress.DestinationRefused):
        asyncio.run(egress.check("https://nowhere.example/epay", Allowlist(), 1.0))


def test_the_real_resolver_answers_a_literal_and_gives_up_on_nothing() -> None:
    assert asyncio.run(egress.resolve("127.0.0.1", 80, 2.0)) == addresses("127.0.0.1")
    assert asyncio.run(egress.resolve("no-such-name.invalid", 80, 2.0)) == []


# --- registration (the in-process API) ----------------------------------------------------


@pytest.fixture(scope="module")
def api() -> Iterator[InProcessApi]:
    with in_process_api() as in_process:
        yield in_process


@pytest.mark.parametrize(
    "url",
    [
        "https://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:9/hook",
        "http://[::1]:8000/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "https://100.64.0.1/hook",
        "http://0.0.0.0:5432/",
        "https://epay-api.epay.svc.cluster.local/hook",
        "https://epay-api.epay.svc/hook",
        "https://metadata.google.internal/computeMetadata/v1/",
        "https://localhost/hook",
        "https://temporal:7233/",
        f"https://{NAME}/resolves-inside",
        "https://unresolved.example/hook",
    ],
)
def test_an_inside_destination_is_refused_at_registration(
    api: InProcessApi, dns: dict[str, list[str]], url: str
) -> None:
    dns[NAME] = [PUBLIC, "10.0.0.7"]
    with api.client() as c:
        before = c.get("/v1/webhooks").json()["items"]
        response = c.post("/v1/webhooks", json={"url": url})
        after = c.get("/v1/webhooks").json()["items"]
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == "validation_failed"
    assert body["errors"] == [
        {"field": "url", "code": "destination_not_allowed", "message": body["detail"]}
    ]
    assert after == before


@pytest.mark.parametrize("url", [f"https://{NAME}/epay-events", f"https://{PUBLIC}/hook"])
def test_a_public_destination_is_registered(
    api: InProcessApi, dns: dict[str, list[str]], url: str
) -> None:
    dns[NAME] = [PUBLIC]
    with api.client() as c:
        response = c.post("/v1/webhooks", json={"url": url})
        assert response.status_code == 201, response.text
        assert c.delete(f"/v1/webhooks/{response.json()['id']}").status_code == 204


# --- the delivery log --------------------------------------------------------------------


def new_event(api: InProcessApi, department: str = "DM") -> str:
    payment = api.created(department=department)
    event_id = f"evt_{uuid.uuid4().hex}"
    api.fetch(
        """INSERT INTO webhook_events (id, department, type, payment_id, payload)
           VALUES ($1, $2, 'payment.succeeded', $3, $4) RETURNING id""",
        event_id,
        department,
        payment["id"],
        {"id": event_id, "type": "payment.succeeded", "data": {}},
    )
    return event_id


def only_endpoint(api: InProcessApi, url: str, department: str = "DM") -> str:
    """An endpoint written as it stands in the table (one registered before this rule, or
    whose name has moved since), the department's only active one."""
    api.fetch(
        "UPDATE webhook_endpoints SET disabled_at = now() WHERE department = $1 RETURNING id",
        department,
    )
    endpoint_id = f"wh_{uuid.uuid4().hex[:24]}"
    api.fetch(
        """INSERT INTO webhook_endpoints (id, department, url, events)
           VALUES ($1, $2, $3, ARRAY['payment.succeeded']) RETURNING id""",
        endpoint_id,
        department,
        url,
    )
    return endpoint_id


def test_the_log_shows_the_outcome_and_status_never_why_a_connection_failed(
    api: InProcessApi,
) -> None:
    event_id = new_event(api)
    endpoint_id = only_endpoint(api, "https://10.0.0.7/hook")
    for attempt, status, outcome, error in [
        (1, None, "failed", "ConnectError"),
        (2, None, "failed", "ReadTimeout"),
        (3, None, "failed", "destination_not_allowed"),
        (4, 503, "failed", None),
        (5, 200, "delivered", None),
    ]:
        api.fetch(
            """INSERT INTO webhook_deliveries (event_id, endpoint_id, attempt, status_code,
                   outcome, error) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
            event_id,
            endpoint_id,
            attempt,
            status,
            outcome,
            error,
        )
    with api.client() as c:
        response = c.get("/v1/webhooks/deliveries", params={"event_id": event_id})
    assert response.status_code == 200, response.text
    shown = [
        (d["attempt"], d["status_code"], d["outcome"], d["error"]) for d in response.json()["items"]
    ]
    assert shown == [
        (5, 200, "delivered", None),
        (4, 503, "failed", None),
        (3, None, "failed", "destination_not_allowed"),
        (2, None, "failed", "no_answer"),
        (1, None, "failed", "no_answer"),
    ]
    assert "Error" not in response.text
    assert "Timeout" not in response.text


def test_another_departments_event_answers_as_none_does(api: InProcessApi) -> None:
    theirs = new_event(api, "DM")
    with api.client("RTA") as rta:
        other = rta.get("/v1/webhooks/deliveries", params={"event_id": theirs})
        missing = rta.get("/v1/webhooks/deliveries", params={"event_id": f"evt_{uuid.uuid4().hex}"})
    assert (other.status_code, missing.status_code) == (404, 404)
    assert other.json() == missing.json()
    with api.client("DM") as dm:
        assert dm.get("/v1/webhooks/deliveries", params={"event_id": theirs}).status_code == 200


# --- delivery ------------------------------------------------------------------------------


def deliveries(api: InProcessApi, event_id: str) -> list[dict[str, Any]]:
    return api.fetch(
        """SELECT endpoint_id, status_code, outcome, error FROM webhook_deliveries
           WHERE event_id = $1 ORDER BY id""",
        event_id,
    )


def deliver(
    api: InProcessApi,
    handler: Callable[[httpx.Request], httpx.Response],
    event_id: str,
    **options: Any,
) -> tuple[int, list[httpx.Request]]:
    """One attempt of the real activity, the endpoint answered by ``handler``."""
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return handler(request)

    async def attempt() -> int:
        if not await department_secrets.active(api.pool, api.settings.token_secret, "DM"):
            await department_secrets.create(api.pool, api.settings.token_secret, "DM")
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
            activities = WebhookDeliveries(
                api.pool, http, token_secret=api.settings.token_secret, timeout=5.0, **options
            )
            waiting: int = await ActivityEnvironment().run(
                activities.deliver, DeliveryAttempt(event_id, 1)
            )
            return waiting

    return api.run(attempt()), sent


def test_a_name_rebound_inside_since_registration_is_not_sent_to(
    api: InProcessApi, dns: dict[str, list[str]]
) -> None:
    dns[NAME] = ["10.0.0.7"]
    event_id = new_event(api)
    endpoint_id = only_endpoint(api, f"https://{NAME}/epay")
    waiting, sent = deliver(api, lambda _: httpx.Response(200), event_id)
    assert sent == []
    assert waiting == 1
    assert deliveries(api, event_id) == [
        {
            "endpoint_id": endpoint_id,
            "status_code": None,
            "outcome": "failed",
            "error": "destination_not_allowed",
        }
    ]


def test_the_post_goes_to_the_address_checked_with_the_name_as_host_and_server_name(
    api: InProcessApi, dns: dict[str, list[str]]
) -> None:
    dns[NAME] = [PUBLIC]
    event_id = new_event(api)
    only_endpoint(api, f"https://{NAME}:8443/epay?dept=DM")
    waiting, sent = deliver(api, lambda _: httpx.Response(204), event_id)
    assert waiting == 0
    [request] = sent
    assert str(request.url) == f"https://{PUBLIC}:8443/epay?dept=DM"
    assert request.headers["Host"] == f"{NAME}:8443"
    assert request.extensions["sni_hostname"] == NAME
    assert deliveries(api, event_id)[0]["status_code"] == 204


def test_an_allowlisted_destination_is_sent_to_as_written(api: InProcessApi) -> None:
    event_id = new_event(api)
    only_endpoint(api, "http://127.0.0.1:8100/departments/DM/webhooks")
    allowlist = Allowlist.parse("127.0.0.1:8100")
    waiting, sent = deliver(api, lambda _: httpx.Response(200), event_id, allowlist=allowlist)
    assert waiting == 0
    assert [str(r.url) for r in sent] == ["http://127.0.0.1:8100/departments/DM/webhooks"]


@asynccontextmanager
async def forward_proxy() -> AsyncIterator[tuple[str, list[str]]]:
    """An HTTP forward proxy on loopback that answers every request itself with 200 and
    keeps each request line (for a plain http URL a client sends the absolute URL)."""
    lines: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines.append(head.split(b"\r\n", 1)[0].decode())
        length = next(
            (
                int(h.split(b":", 1)[1])
                for h in head.split(b"\r\n")
                if h.lower().startswith(b"content-length:")
            ),
            0,
        )
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", lines
    finally:
        server.close()


def test_deliveries_go_through_the_egress_proxy_when_one_is_set(
    api: InProcessApi, dns: dict[str, list[str]]
) -> None:
    dns[NAME] = [PUBLIC]
    event_id = new_event(api)
    only_endpoint(api, f"http://{NAME}/epay")

    async def attempt() -> tuple[int, list[str]]:
        async with forward_proxy() as (proxy, lines):
            activities = WebhookDeliveries(
                api.pool,
                httpx.AsyncClient(),  # unused: the proxy's client is the activity's own
                token_secret=api.settings.token_secret,
                timeout=5.0,
                proxy=proxy,
            )
            waiting: int = await ActivityEnvironment().run(
                activities.deliver, DeliveryAttempt(event_id, 1)
            )
            await activities.http.aclose()
            return waiting, lines

    waiting, lines = api.run(attempt())
    assert waiting == 0
    assert lines == [f"POST http://{NAME}/epay HTTP/1.1"]
    dns[NAME] = ["10.0.0.7"]  # the proxy is no reason to skip the check
    event_id = new_event(api)
    waiting, _ = api.run(attempt())
    assert waiting == 1
    assert deliveries(api, event_id)[0]["error"] == "destination_not_allowed"
