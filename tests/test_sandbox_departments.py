"""The sandbox departments' systems over real HTTP, against `python -m sandbox`."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests import sandbox_support
from tests.sandbox_support import SLOW_SECONDS, confirm, dept_records, error_code, uid

server, client = sandbox_support.server, sandbox_support.client


def test_department_confirms(client: httpx.Client) -> None:
    payment_id = f"pay_{uid()}"
    resp = confirm(client, "rta", f"REF-{uid()}", payment_id)
    assert resp.status_code == 201
    body = resp.json()
    assert body["status"] == "confirmed"
    assert body["payment_id"] == payment_id
    assert body["confirmation_reference"].startswith("RTA-C-")
    suffix = body["confirmation_reference"].removeprefix("RTA-C-")
    assert len(suffix) == 8
    assert suffix == suffix.upper()
    int(suffix, 16)
    again = confirm(client, "rta", body["reference"], payment_id)
    assert again.status_code == 200
    assert again.json()["confirmation_reference"] == body["confirmation_reference"]
    [record] = dept_records(client, "rta", payment_id)
    assert record["status"] == "confirmed"
    assert record["attempts"] == 2
    assert set(record) == {
        "payment_id",
        "reference",
        "status",
        "confirmation_reference",
        "attempts",
        "created_at",
    }


def test_department_reject(client: httpx.Client) -> None:
    payment_id = f"pay_{uid()}"
    resp = confirm(client, "DED", f"REJECT-{uid()}", payment_id)
    assert resp.status_code == 422
    assert error_code(resp) == "department_rejected"
    assert resp.json()["error"]["message"]
    [record] = dept_records(client, "DED", payment_id)
    assert record["status"] == "rejected"
    assert record["attempts"] == 1
    assert record["confirmation_reference"] is None


def test_department_flaky(client: httpx.Client) -> None:
    payment_id = f"pay_{uid()}"
    reference = f"FLAKY-{uid()}"
    for _ in range(3):
        resp = confirm(client, "DEWA", reference, payment_id)
        assert resp.status_code == 503
        assert error_code(resp) == "unavailable"
    resp = confirm(client, "DEWA", reference, payment_id)
    assert resp.status_code == 201
    assert resp.json()["confirmation_reference"].startswith("DEWA-C-")
    [record] = dept_records(client, "DEWA", payment_id)
    assert record["attempts"] == 4
    assert record["status"] == "confirmed"


def test_department_slow(client: httpx.Client) -> None:
    started = time.monotonic()
    resp = confirm(client, "DM", f"SLOW-{uid()}")
    elapsed = time.monotonic() - started
    assert resp.status_code == 201
    assert elapsed >= SLOW_SECONDS * 0.9


def test_department_down_and_up(client: httpx.Client) -> None:
    dept = f"D{uid()[:6].upper()}"
    assert client.get(f"/departments/{dept}/_admin/status").json() == {
        "department": dept,
        "down_mode": "down",
    }
    payment_id = f"pay_{uid()}"
    reference = f"DOWN-{uid()}"
    resp = confirm(client, dept, reference, payment_id)
    assert resp.status_code == 503
    assert error_code(resp) == "unavailable"
    # Ordinary references are unaffected by down-mode.
    assert confirm(client, dept, f"REF-{uid()}").status_code == 201

    assert client.post(f"/departments/{dept}/_admin/up").status_code == 200
    assert client.get(f"/departments/{dept}/_admin/status").json()["down_mode"] == "up"
    resp = confirm(client, dept, reference, payment_id)
    assert resp.status_code == 201
    # Another department is still down.
    assert confirm(client, "OTHER", f"DOWN-{uid()}").status_code == 503

    assert client.post(f"/departments/{dept}/_admin/down").status_code == 200
    assert client.get(f"/departments/{dept}/_admin/status").json()["down_mode"] == "down"
    assert confirm(client, dept, f"DOWN-{uid()}").status_code == 503
    # The confirmed one stays confirmed.
    assert confirm(client, dept, reference, payment_id).status_code == 200
    [record] = dept_records(client, dept, payment_id)
    assert record["attempts"] == 3


def test_department_revoke(client: httpx.Client) -> None:
    payment_id = f"pay_{uid()}"
    assert confirm(client, "RTA", f"REF-{uid()}", payment_id).status_code == 201
    first = client.delete(f"/departments/RTA/confirmations/{payment_id}")
    assert first.status_code == 200
    assert first.json()["status"] == "revoked"
    second = client.delete(f"/departments/RTA/confirmations/{payment_id}")
    assert second.status_code == 200
    assert second.json()["status"] == "revoked"
    assert dept_records(client, "RTA", payment_id)[0]["status"] == "revoked"


def test_revoke_before_the_confirmation_refuses_it(client: httpx.Client) -> None:
    payment_id = f"pay_{uid()}"
    early = client.delete(f"/departments/RTA/confirmations/{payment_id}")
    assert early.status_code == 200
    assert early.json()["status"] == "revoked"
    late = confirm(client, "RTA", f"REF-{uid()}", payment_id)
    assert late.status_code == 409
    assert error_code(late) == "revoked"


def test_revoke_overtakes_a_slow_confirmation_in_flight(client: httpx.Client) -> None:
    payment_id = f"pay_{uid()}"
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(confirm, client, "RTA", f"SLOW-{uid()}", payment_id)
        time.sleep(SLOW_SECONDS / 3)
        assert client.delete(f"/departments/RTA/confirmations/{payment_id}").status_code == 200
        assert in_flight.result().status_code == 409
    assert dept_records(client, "RTA", payment_id)[0]["status"] == "revoked"


def test_revoking_a_rejected_payment_keeps_it_refused(client: httpx.Client) -> None:
    payment_id = f"pay_{uid()}"
    assert confirm(client, "RTA", f"REJECT-{uid()}", payment_id).status_code == 422
    assert client.delete(f"/departments/RTA/confirmations/{payment_id}").status_code == 200
    assert dept_records(client, "RTA", payment_id)[0]["status"] == "revoked"


def test_department_listing_without_filter(client: httpx.Client) -> None:
    dept = f"L{uid()[:6].upper()}"
    confirm(client, dept, f"REF-{uid()}")
    confirm(client, dept, f"REF-{uid()}")
    resp = client.get(f"/departments/{dept}/_admin/confirmations")
    assert resp.status_code == 200
    assert len(resp.json()["items"]) == 2


def test_down_department_cannot_revoke_a_down_payment(client: httpx.Client) -> None:
    dept = f"D{uid()[:6].upper()}"
    confirmed, waiting, unknown = (f"pay_{uid()}" for _ in range(3))
    assert client.post(f"/departments/{dept}/_admin/up").status_code == 200
    assert confirm(client, dept, f"DOWN-{uid()}", confirmed).status_code == 201
    assert client.post(f"/departments/{dept}/_admin/down").status_code == 200
    assert confirm(client, dept, f"DOWN-{uid()}", waiting).status_code == 503
    # The stored reference decides for a payment the department knows, the query's otherwise.
    for payment_id, params in [(confirmed, {}), (waiting, {}), (unknown, {"reference": "DOWN-1"})]:
        resp = client.delete(f"/departments/{dept}/confirmations/{payment_id}", params=params)
        assert resp.status_code == 503
        assert error_code(resp) == "unavailable"
    assert dept_records(client, dept, confirmed)[0]["status"] == "confirmed"
    assert dept_records(client, dept, waiting)[0]["status"] == "pending"
    assert dept_records(client, dept, unknown) == []  # no tombstone

    assert client.post(f"/departments/{dept}/_admin/up").status_code == 200
    for payment_id, params in [(confirmed, {}), (waiting, {}), (unknown, {"reference": "DOWN-1"})]:
        resp = client.delete(f"/departments/{dept}/confirmations/{payment_id}", params=params)
        assert resp.status_code == 200
        assert resp.json()["status"] == "revoked"
    late = confirm(client, dept, "DOWN-1", unknown)
    assert late.status_code == 409
    assert error_code(late) == "revoked"


def test_down_mode_does_not_stop_revoking_other_payments(client: httpx.Client) -> None:
    dept = f"D{uid()[:6].upper()}"
    payment_id = f"pay_{uid()}"
    assert confirm(client, dept, f"REF-{uid()}", payment_id).status_code == 201
    resp = client.delete(f"/departments/{dept}/confirmations/{payment_id}")
    assert resp.status_code == 200
    assert resp.json()["status"] == "revoked"
    tombstone = client.delete(
        f"/departments/{dept}/confirmations/pay_{uid()}", params={"reference": "REF-1"}
    )
    assert tombstone.status_code == 200
    assert tombstone.json()["reference"] == "REF-1"


def _notice(client: httpx.Client, dept: str, refund_id: str, **body: object) -> httpx.Response:
    return client.post(
        f"/departments/{dept}/refunds",
        json={
            "payment_id": f"pay_{uid()}",
            "refund_id": refund_id,
            "reference": f"INV-{uid()}",
            "amount": 2_500,
        }
        | body,
    )


def test_a_refund_notice_is_recorded_once(client: httpx.Client) -> None:
    payment_id, refund_id = f"pay_{uid()}", f"rf_{uid()}"
    first = _notice(client, "DM", refund_id, payment_id=payment_id)
    assert first.status_code == 201, first.text
    again = _notice(client, "dm", refund_id, payment_id=payment_id)
    assert again.status_code == 200
    other = _notice(client, "DM", f"rf_{uid()}", payment_id=payment_id, amount=100)
    assert other.status_code == 201
    resp = client.get("/departments/DM/_admin/refunds", params={"payment_id": payment_id})
    items = resp.json()["items"]
    assert [(n["refund_id"], n["amount"], n["notices"]) for n in items] == [
        (refund_id, 2_500, 2),
        (other.json()["refund_id"], 100, 1),
    ]


def test_a_refund_notice_must_be_signed(server: sandbox_support.Sandbox) -> None:
    refund_id = f"rf_{uid()}"
    body = {"payment_id": f"pay_{uid()}", "refund_id": refund_id, "reference": "R", "amount": 1}
    unsigned = httpx.post(f"{server.url}/departments/DM/refunds", json=body, timeout=10)
    assert unsigned.status_code == 401
    forged = httpx.post(
        f"{server.url}/departments/DM/refunds",
        json=body,
        headers={"ePay-Signature": f"t={int(time.time())},v1={'0' * 64}"},
        timeout=10,
    )
    assert forged.status_code == 401
    with server.client() as signed:
        listed = signed.get("/departments/DM/_admin/refunds").json()["items"]
    assert refund_id not in {n["refund_id"] for n in listed}


def test_a_down_department_takes_no_refund_notice_until_up(client: httpx.Client) -> None:
    refund_id = f"rf_{uid()}"
    reference = f"DOWN-{uid()}"
    assert _notice(client, "PARKS", refund_id, reference=reference).status_code == 503
    client.post("/departments/PARKS/_admin/up")
    assert _notice(client, "PARKS", refund_id, reference=reference).status_code == 201
