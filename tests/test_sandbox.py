"""The sandbox as a whole over real HTTP, against `python -m sandbox`: routes, secrets in
listings, logs and the state file, and state that survives a restart."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandbox.app import create_app
from tests import sandbox_support
from tests.sandbox_support import (
    CVV,
    Sandbox,
    admin_auths,
    admin_holds,
    assert_no_secrets,
    authorise,
    call,
    card_view,
    confirm,
    dept_records,
    error_code,
    hold,
    new_edirham_card,
    uid,
)

server, client = sandbox_support.server, sandbox_support.client


# --------------------------------------------------------------------------- general


def test_healthz(client: httpx.Client) -> None:
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


def test_unknown_route_is_json_error(client: httpx.Client) -> None:
    resp = client.get("/nowhere")
    assert resp.status_code == 404
    assert error_code(resp) == "not_found"


def test_app_is_importable_in_process() -> None:
    app = create_app(lost_answer_delay=0.1, slow_seconds=0.1)
    paths = set(app.openapi()["paths"])
    assert {
        "/healthz",
        "/acquirer/authorisations",
        "/acquirer/_admin/down",
        "/acquirer/_admin/behaviour",
        "/issuer/holds",
        "/issuer/_admin/up",
        "/issuer/_admin/status",
        "/departments/{dept}/confirmations",
    } <= paths


def test_state_file_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_STATE_FILE", str(tmp_path / "env.db"))
    create_app()
    assert (tmp_path / "env.db").exists()


# --------------------------------------------------------------------------- secrets


def test_no_secrets_in_admin_listings_logs_or_state(server: Sandbox, client: httpx.Client) -> None:
    pans = [
        "4242424242424242",
        "4000000000000002",
        "4000000000003220",
        "4000000000000119",
    ]
    for pan in pans:
        authorise(client, pan)
    card = new_edirham_card(client, pin="8642")
    hold(client, card, "8642", 100)
    hold(client, card, "9999", 100)
    card_view(client, card)

    auths = client.get("/acquirer/_admin/authorisations").json()
    holds = client.get("/issuer/_admin/holds").json()
    assert auths["items"]
    assert holds["items"]
    for payload in (auths, holds):
        assert_no_secrets(payload, *pans, card, CVV, "8642", "9999", "1234")

    time.sleep(0.2)  # let the access log lines reach the file
    log = server.process.log()
    assert "INFO" in log
    assert server.state_file is not None
    state = b"".join(p.read_bytes() for p in server.state_file.parent.glob("sandbox.db*"))
    assert b"authorised" in state
    for secret in (*pans, card, "7840000000000017"):
        assert secret not in log
        assert secret.encode() not in state


# --------------------------------------------------------------------------- restarts


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[Sandbox]:
    sandbox = Sandbox(tmp_path, tmp_path / "state.db")
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_state_survives_a_restart(restartable: Sandbox, sig: int) -> None:
    dept, key, transient_key = f"R{uid()[:6].upper()}", uid(), uid()
    confirmed, tombstone = f"pay_{uid()}", f"pay_{uid()}"
    card = "7840000000000017"
    with restartable.client() as c:
        balance = card_view(c, card)["balance"]
        auth = authorise(c, "4242424242424242", key=key).json()
        pending = authorise(c, "4000000000003220").json()
        assert authorise(c, "4000000000000119", key=transient_key).status_code == 503
        captured = hold(c, card, "1234", 1_000).json()
        assert call(c, f"/issuer/holds/{captured['id']}/capture").status_code == 200
        held = hold(c, card, "1234", 2_000).json()
        assert error_code(hold(c, "7840000000000025", "0000", 1)) == "invalid_pin"
        assert c.post(f"/departments/{dept}/_admin/up").status_code == 200
        receipt = confirm(c, dept, f"DOWN-{uid()}", confirmed).json()
        assert c.delete(f"/departments/{dept}/confirmations/{tombstone}").status_code == 200
        assert c.post("/acquirer/_admin/down").status_code == 200
        delay = {"capture_delay_seconds": 0.5}
        assert c.post("/issuer/_admin/behaviour", json=delay).status_code == 200

    restartable.restart(sig)

    with restartable.client() as c:
        # Modes and behaviour.
        assert c.get("/acquirer/_admin/status").json()["mode"] == "down"
        assert c.get("/issuer/_admin/behaviour").json() == delay
        assert c.get(f"/departments/{dept}/_admin/status").json()["down_mode"] == "up"
        assert c.post("/acquirer/_admin/up").status_code == 200
        # Authorisations, stored answers and the transient card's count.
        assert authorise(c, "4242424242424242", key=key).json() == auth
        assert [a["status"] for a in admin_auths(c, auth["reference"])] == ["authorised"]
        passed = call(c, f"/acquirer/authorisations/{pending['id']}/3ds", {"otp": "123456"})
        assert passed.status_code == 200
        assert passed.json()["status"] == "authorised"
        assert authorise(c, "4000000000000119", key=transient_key).status_code == 503
        assert authorise(c, "4000000000000119", key=transient_key).status_code == 201
        # Holds and balances: the seed cards are not reset.
        assert [h["status"] for h in admin_holds(c, held["reference"])] == ["held"]
        view = card_view(c, card)
        assert (view["balance"], view["available"]) == (balance - 1_000, balance - 3_000)
        assert card_view(c, "7840000000000025")["wrong_pin_count"] == 1
        # Confirmations and tombstones.
        again = confirm(c, dept, receipt["reference"], confirmed)
        assert again.status_code == 200
        assert again.json()["confirmation_reference"] == receipt["confirmation_reference"]
        assert dept_records(c, dept, confirmed)[0]["attempts"] == 2
        late = confirm(c, dept, f"REF-{uid()}", tombstone)
        assert late.status_code == 409
        assert error_code(late) == "revoked"


def test_a_held_capture_is_kept_when_the_sandbox_is_killed(restartable: Sandbox) -> None:
    """The capture is committed before its answer is held back; after a SIGKILL the request
    is no longer in flight and its repeat gets the stored answer."""
    key = uid()
    with restartable.client() as c:
        auth = authorise(c, "4242424242424242").json()
        url = f"/acquirer/authorisations/{auth['id']}/capture"
        delay = {"capture_delay_seconds": 60}
        assert c.post("/acquirer/_admin/behaviour", json=delay).status_code == 200
        with restartable.client(timeout=0.5) as impatient, pytest.raises(httpx.TimeoutException):
            call(impatient, url, {"amount": 10_000}, key=key)
        assert call(c, url, {"amount": 10_000}, key=key).status_code == 409

    restartable.restart(signal.SIGKILL)

    with restartable.client() as c:
        answer = call(c, url, {"amount": 10_000}, key=key)
        assert answer.status_code == 200
        assert answer.json()["status"] == "captured"
        assert admin_auths(c, auth["reference"])[0]["capture_count"] == 1


def test_without_a_state_file_a_restart_forgets(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path, None)
    try:
        with sandbox.client() as c:
            auth = authorise(c, "4242424242424242").json()
            assert c.post("/issuer/_admin/down").status_code == 200
        sandbox.restart()
        with sandbox.client() as c:
            assert admin_auths(c, auth["reference"]) == []
            assert c.get("/issuer/_admin/status").json()["mode"] == "up"
            assert card_view(c, "7840000000000017")["balance"] == 500_000
    finally:
        sandbox.stop()
