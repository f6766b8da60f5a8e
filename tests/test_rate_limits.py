"""Limits per department: a token bucket per department API key (api/ratelimit.py) and a cap
on a department's webhook endpoints (api/webhooks.py).

The API runs in this process (tests/support/app.py) with a small limit, a burst of 3 at one
request a second, and the limiter's clock in the test's hand: time moves when the test says,
no test sleeps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api import ratelimit
from api.ratelimit import Rate, RateLimited, RateLimiter, TokenBucket
from epay.config import Settings, SettingsError
from store.keys import create_api_key
from tests.support.app import InProcessApi, in_process_api
from tests.support.settings import production_env

BURST = 3
CAP = 2


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def api() -> Iterator[InProcessApi]:
    with in_process_api(
        EPAY_API_RATE_PER_SECOND="1",
        EPAY_API_RATE_BURST=str(BURST),
        EPAY_API_RATE_OVERRIDES="RTA=1:5",
        EPAY_WEBHOOK_ENDPOINTS_PER_DEPARTMENT=str(CAP),
    ) as in_process:
        yield in_process


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The limiter's clock, far from the last test's: every bucket starts full."""
    clock = Clock()
    clock.now = ratelimit.monotonic() + 1_000_000.0
    monkeypatch.setattr(ratelimit, "monotonic", clock)
    return clock


def new_key(api: InProcessApi, department: str = "DM") -> dict[str, str]:
    key = api.run(create_api_key(api.pool, department, "rate limit tests"))
    return {"Authorization": f"Bearer {key}"}


def create(api: InProcessApi, headers: dict[str, str], reference: str) -> httpx.Response:
    with api.anonymous() as c:
        return c.post(
            "/v1/payments",
            json={"service_code": "HEALTH_CERT", "reference": reference},
            headers=headers,
        )


def payments_of(api: InProcessApi, reference: str) -> int:
    rows = api.fetch("SELECT count(*) AS n FROM payments WHERE reference LIKE $1", reference + "%")
    return int(rows[0]["n"])


def assert_rate_limited(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == "rate_limited"
    assert body["status"] == 429
    assert body["type"] == "/problems/rate_limited"
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit(), retry_after
    assert int(retry_after) >= 1
    return body


# --- the API -------------------------------------------------------------------------------


def test_the_call_past_the_burst_is_429_with_retry_after_and_creates_nothing(
    api: InProcessApi, clock: Clock
) -> None:
    headers = new_key(api)
    ref = "RL-BURST-"
    for n in range(BURST):
        assert create(api, headers, f"{ref}{n}").status_code == 201
    with api.nothing_changes():
        refused = create(api, headers, f"{ref}{BURST}")
    assert_rate_limited(refused)
    assert refused.headers["Retry-After"] == "1"
    assert payments_of(api, ref) == BURST


def test_the_bucket_refills_as_time_passes(api: InProcessApi, clock: Clock) -> None:
    headers = new_key(api)
    with api.anonymous() as c:
        for _ in range(BURST):
            assert c.get("/v1/services", headers=headers).status_code == 200
        assert_rate_limited(c.get("/v1/services", headers=headers))
        clock.now += 0.5  # half a token: still refused, and told to come back in a second
        assert_rate_limited(c.get("/v1/services", headers=headers))
        clock.now += 0.5
        assert c.get("/v1/services", headers=headers).status_code == 200
        assert_rate_limited(c.get("/v1/services", headers=headers))
        clock.now += 10  # refills to the burst, no further
        for _ in range(BURST):
            assert c.get("/v1/services", headers=headers).status_code == 200
        assert_rate_limited(c.get("/v1/services", headers=headers))


def test_another_key_is_not_affected(api: InProcessApi, clock: Clock) -> None:
    spent, other_of_the_same_department = new_key(api), new_key(api)
    with api.anonymous() as c:
        for _ in range(BURST):
            assert c.get("/v1/services", headers=spent).status_code == 200
        assert_rate_limited(c.get("/v1/services", headers=spent))
        assert c.get("/v1/services", headers=other_of_the_same_department).status_code == 200
        assert c.get("/v1/services", headers=new_key(api, "RTA")).status_code == 200


def test_a_department_override_sets_its_keys_own_burst(api: InProcessApi, clock: Clock) -> None:
    headers = new_key(api, "RTA")  # RTA=1:5
    with api.anonymous() as c:
        for _ in range(5):
            assert c.get("/v1/services", headers=headers).status_code == 200
        assert_rate_limited(c.get("/v1/services", headers=headers))


def test_a_call_without_a_valid_key_is_401_not_counted(api: InProcessApi, clock: Clock) -> None:
    with api.anonymous() as c:
        for _ in range(BURST + 2):
            response = c.get("/v1/services", headers={"Authorization": "Bearer epk_nothing"})
            assert response.status_code == 401


def test_the_endpoint_past_the_cap_is_409_and_nothing_is_registered(
    api: InProcessApi, clock: Clock
) -> None:
    url = "https://93.184.215.14/hook"  # a public address: no name to resolve
    with api.client("RTA") as c:
        clock.now += 100
        made = [c.post("/v1/webhooks", json={"url": f"{url}{n}"}) for n in range(CAP)]
        assert [r.status_code for r in made] == [201] * CAP, [r.text for r in made]
        clock.now += 100
        before = c.get("/v1/webhooks").json()["items"]
        refused = c.post("/v1/webhooks", json={"url": f"{url}-more"})
        assert refused.status_code == 409, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "endpoint_limit_reached"
        assert c.get("/v1/webhooks").json()["items"] == before
        clock.now += 100
        # a deleted endpoint no longer counts
        assert c.delete(f"/v1/webhooks/{made[0].json()['id']}").status_code == 204
        assert c.post("/v1/webhooks", json={"url": f"{url}-again"}).status_code == 201


# --- the bucket ----------------------------------------------------------------------------


def test_a_bucket_gives_its_burst_then_one_token_a_period() -> None:
    bucket = TokenBucket(Rate(per_second=2, burst=3), tokens=3, updated=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.take(0.25) == pytest.approx(0.25)  # the refused call took nothing
    assert bucket.take(0.5) == 0.0
    assert bucket.take(100.0) == 0.0
    assert bucket.tokens == pytest.approx(2)  # full at 3, less the one just taken


def test_a_clock_that_goes_back_refills_nothing() -> None:
    bucket = TokenBucket(Rate(per_second=1, burst=1), tokens=0, updated=10.0)
    assert bucket.take(5.0) > 0
    assert bucket.take(5.5) == pytest.approx(0.5)


def test_the_retry_after_is_whole_seconds_at_least_one() -> None:
    assert RateLimited(0.01).headers == {"Retry-After": "1"}
    assert RateLimited(1.2).headers == {"Retry-After": "2"}
    assert RateLimited(3.0).retry_after == 3


def test_the_limiter_keeps_a_bucket_per_key_and_forgets_refilled_ones() -> None:
    clock = Clock()
    limiter = RateLimiter(Rate(1, 2), {"RTA": Rate(0, 0)}, max_keys=100, clock=clock)
    assert limiter.wait("a", "DM") == 0.0
    assert limiter.wait("b", "DM") == 0.0
    assert len(limiter) == 2
    clock.now += 5  # both full again: forgotten at the next call
    assert limiter.wait("c", "DM") == 0.0
    assert len(limiter) == 1
    assert limiter.wait("r", "RTA") == 0.0  # an override of 0: no limit, no bucket
    assert len(limiter) == 1


def test_the_limiter_holds_at_most_max_keys() -> None:
    clock = Clock()
    limiter = RateLimiter(Rate(1, 5), max_keys=3, clock=clock)
    for n in range(10):
        limiter.check(f"key-{n}", "DM")
    assert len(limiter) == 3
    for _ in range(4):  # the most recent keys are kept, with the token they spent
        limiter.check("key-9", "DM")
    with pytest.raises(RateLimited):
        limiter.check("key-9", "DM")


# --- the settings --------------------------------------------------------------------------


def test_the_settings_default_to_twenty_a_second_with_bursts_of_forty() -> None:
    settings = Settings.from_env_mapping({})
    assert (settings.api_rate_per_second, settings.api_rate_burst) == (20, 40)
    assert settings.webhook_endpoints_per_department == 10
    limiter = RateLimiter.of(
        Settings.from_env_mapping({"EPAY_API_RATE_OVERRIDES": "RTA=100:200, DM=50:100"})
    )
    assert limiter.rate_for("RTA") == Rate(100, 200)
    assert limiter.rate_for("DM") == Rate(50, 100)
    assert limiter.rate_for("MOI") == Rate(20, 40)


@pytest.mark.parametrize("overrides", ["RTA", "RTA=100", "RTA=x:2", "=1:2", "RTA=-1:2", "A=nan:1"])
def test_a_malformed_override_is_refused(overrides: str) -> None:
    with pytest.raises(ValueError, match="DEPT=RATE:BURST"):
        Settings.from_env_mapping({"EPAY_API_RATE_OVERRIDES": overrides})


@pytest.mark.parametrize(
    "env",
    [
        {"EPAY_API_RATE_PER_SECOND": "0"},
        {"EPAY_API_RATE_BURST": "0"},
        {"EPAY_API_RATE_OVERRIDES": "RTA=0:10"},
    ],
)
def test_production_refuses_a_rate_limit_turned_off(tmp_path: Path, env: dict[str, str]) -> None:
    Settings.from_env_mapping(production_env(tmp_path))  # the configuration as it stands is taken
    with pytest.raises(SettingsError, match="0 \\(no limit\\) is refused in production"):
        Settings.from_env_mapping(production_env(tmp_path, **env))


def test_the_served_openapi_lists_the_429_with_its_retry_after(api: InProcessApi) -> None:
    document = api.anonymous().get("/openapi.json").json()
    for path, method in (("/v1/payments", "post"), ("/v1/services", "get")):
        refused = document["paths"][path][method]["responses"]["429"]
        assert "Retry-After" in refused["headers"], (path, refused)
