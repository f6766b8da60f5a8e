"""The department API's promises: idempotency, one payment per reference under concurrency,
isolation between departments, cancellation, the audit trail, listing and receipts."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable

import httpx

from tests.conftest import Stack, card, new_reference


def test_same_idempotency_key_and_body_returns_the_same_payment(stack: Stack) -> None:
    key = uuid.uuid4().hex
    reference = new_reference()
    first = stack.create(reference=reference, headers={"Idempotency-Key": key})
    second = stack.create(reference=reference, headers={"Idempotency-Key": key})
    assert first.status_code == 201, second.text
    assert second.status_code == 200, second.text
    assert first.json()["id"] == second.json()["id"]
    assert len(stack.fetch("SELECT 1 FROM payments WHERE reference = $1", reference)) == 1


def test_same_idempotency_key_with_another_body_is_refused(stack: Stack) -> None:
    key = uuid.uuid4().hex
    assert stack.create(headers={"Idempotency-Key": key}).status_code == 201
    other = stack.create(headers={"Idempotency-Key": key})
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_key_reused"


def test_idempotency_keys_belong_to_their_department(stack: Stack) -> None:
    key = uuid.uuid4().hex
    reference = new_reference()
    dm = stack.create(reference=reference, headers={"Idempotency-Key": key})
    rta = stack.create(
        service_code="VEHICLE_RENEWAL",
        reference=reference,
        department="RTA",
        headers={"Idempotency-Key": key},
    )
    assert dm.status_code == 201
    assert rta.status_code == 201
    assert dm.json()["id"] != rta.json()["id"]


def test_a_refused_request_replays_its_refusal(stack: Stack) -> None:
    paid = stack.pay(card("4242424242424242"))
    key = uuid.uuid4().hex
    first = stack.create(reference=paid["reference"], headers={"Idempotency-Key": key})
    again = stack.create(reference=paid["reference"], headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 409
    assert first.json()["code"] == again.json()["code"] == "reference_already_paid"


def _twice_at_once(call: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """Make the same request from two threads released together."""
    answers: list[httpx.Response] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        answers.append(call())

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_two_concurrent_payments_for_one_reference_make_one_payment(stack: Stack) -> None:
    reference = new_reference()
    answers = _twice_at_once(lambda: stack.create(reference=reference))
    assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 409)
    assert refused.json()["code"] == "reference_in_progress"
    assert len(stack.fetch("SELECT 1 FROM payments WHERE reference = $1", reference)) == 1
    live = stack.fetch(
        "SELECT 1 FROM fee_reservations WHERE reference = $1 AND status = 'held'", reference
    )
    assert len(live) == 1


def test_two_concurrent_requests_with_one_idempotency_key_make_one_payment(stack: Stack) -> None:
    reference, key = new_reference(), uuid.uuid4().hex
    answers = _twice_at_once(
        lambda: stack.create(reference=reference, headers={"Idempotency-Key": key})
    )
    assert sorted(a.status_code for a in answers) == [200, 201], [a.text for a in answers]
    assert answers[0].json()["id"] == answers[1].json()["id"]


def test_a_department_cannot_see_or_touch_another_departments_payment(stack: Stack) -> None:
    payment = stack.created()
    with stack.client("RTA") as rta:
        assert rta.get(f"/v1/payments/{payment['id']}").status_code == 404
        assert rta.get(f"/v1/payments/{payment['id']}/events").status_code == 404
        assert rta.post(f"/v1/payments/{payment['id']}/cancel").status_code == 404
        listed = rta.get("/v1/payments", params={"reference": payment["reference"]}).json()
        assert listed["items"] == []
        services = {s["code"] for s in rta.get("/v1/services").json()["items"]}
    assert "HEALTH_CERT" not in services
    assert "VEHICLE_RENEWAL" in services
    assert stack.get(payment["id"])["state"] == "reserved"


def test_catalogue_lists_the_municipality_services(stack: Stack) -> None:
    with stack.client() as c:
        items = {s["code"]: s for s in c.get("/v1/services").json()["items"]}
    assert len(items) >= 11
    assert items["PARKING_FINE"]["fee"] is None
    assert items["HEALTH_CERT"]["fee"] == 22000
    assert items["HEALTH_CERT"]["name"]["ar"]


def test_cancel_a_reserved_payment_releases_its_reference(stack: Stack) -> None:
    payment = stack.created()
    with stack.client() as c:
        response = c.post(f"/v1/payments/{payment['id']}/cancel")
    assert response.status_code == 202, response.text
    final = stack.wait_for(payment["id"])
    assert final["state"] == "cancelled"
    assert final["next_url"] is None
    rows = stack.fetch("SELECT status FROM fee_reservations WHERE payment_id = $1", payment["id"])
    assert rows == [{"status": "released"}]
    assert stack.created(reference=payment["reference"])["state"] == "reserved"
    # the payer can no longer pay it
    assert stack.authorise(payment, card("4242424242424242")).status_code == 409


def test_a_captured_payment_cannot_be_cancelled(stack: Stack) -> None:
    payment = stack.pay(card("4242424242424242"))
    with stack.client() as c:
        response = c.post(f"/v1/payments/{payment['id']}/cancel")
    assert response.status_code == 409
    assert response.json()["code"] == "not_cancellable"


def test_a_payment_method_is_taken_once(stack: Stack) -> None:
    payment = stack.created()
    assert stack.authorise(payment, card("4242424242424242")).status_code in (200, 202)
    again = stack.authorise(payment, card("4242424242424242"))
    assert again.status_code == 409
    assert again.json()["code"] == "not_awaiting_method"


def test_audit_trail_records_every_state_change(stack: Stack) -> None:
    payment = stack.pay(card("4242424242424242"))
    with stack.client() as c:
        events = c.get(f"/v1/payments/{payment['id']}/events").json()["items"]
    assert [e["to_state"] for e in events] == [
        "reserved",
        "authorising",
        "confirming",
        "capturing",
        "succeeded",
    ]
    assert next(e["event"] for e in events) == "fee_reserved"
    assert all(e["actor"] and e["occurred_at"] for e in events)


def test_listing_is_newest_first_and_cursor_paged(stack: Stack) -> None:
    reference = new_reference("LIST-")
    made = [stack.created(reference=f"{reference}-{i}")["id"] for i in range(5)]
    with stack.client() as c:
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, str | int] = {"limit": 2, "state": "reserved"}
            if cursor:
                params["cursor"] = cursor
            page = c.get("/v1/payments", params=params).json()
            seen += [p["id"] for p in page["items"] if p["reference"].startswith(reference)]
            if not page["has_more"] or len(seen) >= 5:
                break
            cursor = page["next_cursor"]
        by_reference = c.get("/v1/payments", params={"reference": f"{reference}-3"}).json()
    assert seen[:5] == list(reversed(made))
    assert [p["id"] for p in by_reference["items"]] == [made[3]]


def test_receipt_numbers_have_no_gaps_per_department(stack: Stack) -> None:
    for _ in range(2):
        stack.pay(card("4242424242424242"))
    stack.pay(card("4242424242424242"), service_code="VEHICLE_RENEWAL", department="RTA")
    for dept in ("DM", "RTA"):
        numbers = [
            r["number"]
            for r in stack.fetch(
                "SELECT number FROM receipts WHERE department = $1 ORDER BY number", dept
            )
        ]
        assert numbers == list(range(1, len(numbers) + 1))


def test_a_variable_fee_with_added_fees_cannot_pass_the_ceiling(stack: Stack) -> None:
    too_much = stack.create(service_code="BUILDING_PERMIT", amount=1_000_000_000)
    assert too_much.status_code == 422
    assert too_much.json()["errors"][0]["field"] == "amount"
    at_ceiling = stack.created(service_code="BUILDING_PERMIT", amount=1_000_000_000 - 2000)
    assert at_ceiling["amount"]["total"] == 1_000_000_000


def test_cancelling_the_workflow_in_temporal_still_compensates(stack: Stack) -> None:
    payment = stack.created()
    stack.authorise(payment, card("4000000000003220"))
    stack.wait_for(payment["id"], {"requires_action"})

    async def cancel() -> None:
        client = await stack.temporal_client()
        await client.get_workflow_handle(payment["workflow_id"]).cancel()

    asyncio.run(cancel())
    final = stack.wait_for(payment["id"])
    assert final["state"] == "cancelled"
    records = stack.sandbox(f"/acquirer/_admin/authorisations?reference={payment['id']}")["items"]
    assert [r["status"] for r in records] == ["voided"]
    rows = stack.fetch("SELECT status FROM fee_reservations WHERE payment_id = $1", payment["id"])
    assert rows == [{"status": "released"}]
    with stack.client() as c:
        events = c.get(f"/v1/payments/{payment['id']}/events").json()["items"]
    assert events[-1]["actor"] == "operator"


# A reservation its caller stopped waiting for (workers away past the reservation's start
# limit) is not made: the workflow's side in tests/test_workflow_saga.py::
# test_a_late_first_task_does_not_reserve_and_releases (time-skipping, no 17 s sleep), the
# API's 503 and the retry with the key in tests/test_api_validation.py::
# test_a_reservation_its_workflow_could_not_make_is_a_503_and_a_retry_starts_afresh and,
# with a real late workflow, tests/test_late_reservations.py.
