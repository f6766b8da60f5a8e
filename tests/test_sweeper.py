"""The sweeper ends payments whose workflow closed without them (an operator's Terminate,
a workflow lost), and deletes card data past its use. Each test strands a payment of its own
through the real stack, runs a sweep on the stack's worker, and looks at what the partners,
the records and the audit trail show afterwards."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
from temporalio.client import (
    ScheduleActionStartWorkflow,
    ScheduleOverlapPolicy,
    WorkflowExecutionStatus,
)
from temporalio.worker import Replayer

from commands.schedules import SWEEPER_SCHEDULE_ID, sweep_request
from domain.models import AuditEntry, Transition
from domain.refunds import refund_workflow_id
from domain.states import AuditNote, PaymentEvent
from domain.sweeper import SweepOutcome, SweepSummary
from epay.config import Settings
from epay.db import create_pool
from store import payments
from tests.conftest import Stack, card, e_dirham, new_reference
from tests.support import BIN, wait_until
from tests.support.partners import (
    acquirer_record,
    acquirer_records,
    confirmations,
    department,
    issuer_holds,
)
from tests.support.payer import PayerPage
from tests.support.payments import assert_paid_once, events, reservation_status
from tests.support.refunds import department_notices, refund, wait_for_refund
from tests.support.sweeps import quiet, sweep, swept, terminate
from workflows.sweeper import SweeperWorkflow


def settings(stack: Stack) -> Settings:
    return Settings.from_env_mapping(stack.env)


def workflow_status(stack: Stack, workflow_id: str) -> WorkflowExecutionStatus | None:
    async def run() -> WorkflowExecutionStatus | None:
        client = await stack.temporal_client()
        return (await client.get_workflow_handle(workflow_id).describe()).status

    return asyncio.run(run())


def vault_rows(stack: Stack, payment_id: str) -> list[dict[str, Any]]:
    return stack.fetch("SELECT token FROM card_vault WHERE payment_id = $1", payment_id)


def stranded_while_confirming(stack: Stack, method: dict[str, Any]) -> dict[str, Any]:
    """A payment whose department is down, its workflow terminated while it waits."""
    payment = stack.created(reference=new_reference("DOWN-"))
    stack.authorise(payment, method)
    stack.wait_for(payment["id"], {"confirming"})
    terminate(stack, payment)
    quiet(stack, payment["id"])
    return payment


def test_a_terminated_payment_waiting_for_its_department_is_undone(stack: Stack) -> None:
    payment = stranded_while_confirming(stack, e_dirham("7840000000000017"))
    pid = payment["id"]
    assert [h["status"] for h in issuer_holds(stack, pid)] == ["held"]
    assert reservation_status(stack, pid) == "held"
    other = stack.created()
    terminate(stack, other)
    quiet(stack, other["id"])

    # The department is down: it cannot take the revocation either. The payer's hold is
    # released at once; the payment stays open, for the next run, until it can. The sweep
    # goes on with the other payments.
    first = sweep(stack)

    result = swept(first, pid)
    assert result is not None, first
    assert result.outcome == SweepOutcome.ERROR, first
    other_result = swept(first, other["id"])
    assert other_result is not None, first
    assert other_result.outcome == SweepOutcome.CANCELLED, first
    assert "revoke_department_confirmation" in result.detail
    assert [h["status"] for h in issuer_holds(stack, pid)] == ["voided"]
    assert stack.get(pid)["state"] == "confirming"
    assert reservation_status(stack, pid) == "held"

    department(stack, "up")
    try:
        second = sweep(stack)
    finally:
        department(stack, "down")

    result = swept(second, pid)
    assert result is not None, second
    assert result.outcome == SweepOutcome.CANCELLED, second
    assert [h["status"] for h in issuer_holds(stack, pid)] == ["voided"]
    assert [c["status"] for c in confirmations(stack, pid)] == ["revoked"]
    assert reservation_status(stack, pid) == "released"
    assert vault_rows(stack, pid) == []
    final = stack.get(pid)
    assert final["state"] == "cancelled"
    assert final["failure"] is None
    last = events(stack, pid)[-1]
    assert last["event"] == "cancelled_by_operator", last
    assert last["actor"] == "sweeper", last
    assert last["from_state"] == "confirming"
    assert last["detail"] == (
        "workflow terminated; authorisation voided, department confirmation revoked"
    )

    trail = events(stack, pid)
    third = sweep(stack)
    assert swept(third, pid) is None
    assert events(stack, pid) == trail
    assert [h["status"] for h in issuer_holds(stack, pid)] == ["voided"]
    assert reservation_status(stack, pid) == "released"


def test_a_terminated_3ds_challenge_has_its_authorisation_voided(stack: Stack) -> None:
    payment = stack.created()
    stack.authorise(payment, card("4000000000003220"))
    stack.wait_for(payment["id"], {"requires_action"})
    terminate(stack, payment)
    quiet(stack, payment["id"])
    assert [a["status"] for a in acquirer_records(stack, payment["id"])] == ["pending_3ds"]

    summary = sweep(stack)

    result = swept(summary, payment["id"])
    assert result is not None, summary
    assert result.outcome == SweepOutcome.CANCELLED, summary
    assert [a["status"] for a in acquirer_records(stack, payment["id"])] == ["voided"]
    assert stack.get(payment["id"])["state"] == "cancelled"
    assert reservation_status(stack, payment["id"]) == "released"
    # The department was never asked, so it is not bothered with a revocation either.
    assert confirmations(stack, payment["id"]) == []


def test_a_terminated_reserved_payment_is_closed_by_epay_sweeper_run(stack: Stack) -> None:
    payment = stack.created()
    terminate(stack, payment)
    quiet(stack, payment["id"])

    output = stack.epay("sweeper", "run")

    summary, _ = json.JSONDecoder().raw_decode(output[output.index("{\n") :])
    [result] = [p for p in summary["payments"] if p["payment_id"] == payment["id"]]
    assert result["outcome"] == "cancelled"
    assert summary["stranded"] >= 1
    assert summary["cancelled"] >= 1
    assert stack.get(payment["id"])["state"] == "cancelled"
    assert reservation_status(stack, payment["id"]) == "released"
    assert acquirer_records(stack, payment["id"]) == []
    assert issuer_holds(stack, payment["id"]) == []
    last = events(stack, payment["id"])[-1]
    assert last["actor"] == "sweeper"
    assert last["detail"] == "workflow terminated; nothing was open at the partners"


def test_a_payment_whose_workflow_is_gone_fails_as_abandoned(stack: Stack) -> None:
    payment = stack.created()
    terminate(stack, payment)
    # As if Temporal had lost the workflow (a wiped namespace, a history past retention).
    stack.fetch("UPDATE payments SET workflow_id = 'lost-' || id WHERE id = $1", payment["id"])
    quiet(stack, payment["id"])

    summary = sweep(stack)

    result = swept(summary, payment["id"])
    assert result is not None, summary
    assert result.outcome == SweepOutcome.ABANDONED, summary
    final = stack.get(payment["id"])
    assert final["state"] == "failed"
    assert final["failure"]["code"] == "payment_abandoned"
    assert reservation_status(stack, payment["id"]) == "released"
    last = events(stack, payment["id"])[-1]
    assert last["event"] == "failed"
    assert last["actor"] == "sweeper"
    assert last["detail"].startswith("workflow not found")


def _confirmed_then_terminated(stack: Stack, *, authorisation_known: bool) -> dict[str, Any]:
    """A card payment stranded at ``capturing``.

    The workflow cannot be stopped through the API in the instant between the department's
    confirmation and the capture, so this is set up by hand: the payment waits on a department
    that is down (the card authorised at the acquirer), its workflow is terminated, and the
    test then records the ``department_confirmed`` step through the store, as the workflow
    would have, with the acquirer's authorisation id (or without one).
    """
    payment = stranded_while_confirming(stack, card("4242424242424242"))
    [auth] = acquirer_records(stack, payment["id"])
    assert auth["status"] == "authorised"

    async def record() -> None:
        pool = await create_pool(stack.dsn, max_size=1)
        try:
            await payments.record_transition(
                pool,
                Transition(
                    payment["id"],
                    PaymentEvent.DEPARTMENT_CONFIRMED,
                    department_confirmation="DM-C-BYHAND",
                    authorisation_id=auth["id"],
                ),
            )
        finally:
            await pool.close()

    asyncio.run(record())
    if not authorisation_known:
        stack.fetch("UPDATE payments SET authorisation_id = NULL WHERE id = $1", payment["id"])
    quiet(stack, payment["id"])
    assert stack.get(payment["id"])["state"] == "capturing"
    return payment


def test_a_payment_terminated_after_the_department_confirmed_is_finished(stack: Stack) -> None:
    payment = _confirmed_then_terminated(stack, authorisation_known=True)

    first = sweep(stack)

    result = swept(first, payment["id"])
    assert result is not None, first
    assert result.outcome == SweepOutcome.SUCCEEDED, first
    final = stack.get(payment["id"])
    assert final["state"] == "succeeded"
    assert_paid_once(stack, final, acquirer_records(stack, payment["id"]))
    receipts = stack.fetch("SELECT receipt_number FROM receipts WHERE payment_id = $1", final["id"])
    assert [r["receipt_number"] for r in receipts] == [final["receipt"]["number"]]
    notes = [e for e in events(stack, payment["id"]) if e["event"] == "finished_by_sweeper"]
    assert len(notes) == 1
    assert notes[0]["actor"] == "sweeper"
    assert notes[0]["detail"].startswith("workflow terminated after the department confirmed")

    second = sweep(stack)
    assert swept(second, payment["id"]) is None
    [auth] = acquirer_records(stack, payment["id"])
    assert auth["capture_count"] == 1
    assert len(stack.fetch("SELECT 1 FROM receipts WHERE payment_id = $1", final["id"])) == 1


def test_capture_without_a_known_authorisation_is_left_to_an_operator(stack: Stack) -> None:
    payment = _confirmed_then_terminated(stack, authorisation_known=False)

    first = sweep(stack)
    second = sweep(stack)

    for summary in (first, second):  # still stranded: reported by every run
        result = swept(summary, payment["id"])
        assert result is not None, summary
        assert result.outcome == SweepOutcome.NEEDS_OPERATOR, summary
        assert summary.needs_operator >= 1
    assert stack.get(payment["id"])["state"] == "capturing"
    [auth] = acquirer_records(stack, payment["id"])
    assert auth["status"] == "authorised"
    assert auth["capture_count"] == 0
    notes = [e for e in events(stack, payment["id"]) if e["event"] == "needs_operator"]
    assert len(notes) == 1
    assert notes[0]["actor"] == "sweeper"


def test_a_running_payment_is_never_touched(stack: Stack) -> None:
    payment = stack.created()
    quiet(stack, payment["id"])  # long quiet, but its workflow still waits for the payer

    summary = sweep(stack)

    assert swept(summary, payment["id"]) is None
    assert stack.get(payment["id"])["state"] == "reserved"
    assert reservation_status(stack, payment["id"]) == "held"
    assert workflow_status(stack, payment["workflow_id"]) == WorkflowExecutionStatus.RUNNING


def test_a_payment_changed_within_the_grace_period_is_left_alone(stack: Stack) -> None:
    payment = stack.created()
    terminate(stack, payment)

    assert swept(sweep(stack), payment["id"]) is None  # changed seconds ago
    assert stack.get(payment["id"])["state"] == "reserved"

    result = swept(sweep(stack, grace_seconds=0), payment["id"])
    assert result is not None
    assert result.outcome == SweepOutcome.CANCELLED


def test_card_data_past_the_payment_window_is_deleted(stack: Stack) -> None:
    payment = stack.created()  # a running payment: only the vault rows' age decides
    old, fresh = f"test-old-{secrets.token_hex(4)}", f"test-fresh-{secrets.token_hex(4)}"
    for token in (old, fresh):
        stack.fetch(
            "INSERT INTO card_vault (token, payment_id, nonce, ciphertext) VALUES ($1, $2, $3, $4)",
            token,
            payment["id"],
            secrets.token_bytes(12),
            secrets.token_bytes(32),
        )
    window = settings(stack).payment_window_seconds
    past_use = timedelta(seconds=window) + timedelta(minutes=16)  # the margin is 15 minutes
    stack.fetch(
        "UPDATE card_vault SET created_at = now() - $2::interval WHERE token = $1", old, past_use
    )

    summary = sweep(stack)

    assert summary.card_data_deleted >= 1
    assert [r["token"] for r in vault_rows(stack, payment["id"])] == [fresh]
    assert stack.get(payment["id"])["state"] == "reserved"


def test_a_sweep_history_replays_on_the_current_workflow_code(stack: Stack) -> None:
    """Determinism: the sweeper's code rebuilds a recorded sweep step by step."""
    payment = stack.created()
    stack.authorise(payment, card("4000000000003220"))
    stack.wait_for(payment["id"], {"requires_action"})
    terminate(stack, payment)
    quiet(stack, payment["id"])
    req = sweep_request(settings(stack))

    async def sweep_and_replay() -> SweepSummary:
        client = await stack.temporal_client()
        handle = await client.start_workflow(
            SweeperWorkflow.run,
            req,
            id=f"test-sweep-{uuid.uuid4().hex[:8]}",
            task_queue=stack.env["EPAY_TASK_QUEUE"],
        )
        summary = await handle.result()
        history = await handle.fetch_history()
        replayer = Replayer(workflows=[SweeperWorkflow], data_converter=client.data_converter)
        await replayer.replay_workflow(history)
        return summary

    summary = asyncio.run(sweep_and_replay())
    result = swept(summary, payment["id"])
    assert result is not None, summary
    assert result.outcome == SweepOutcome.CANCELLED, summary


def test_epay_sweeper_schedule_creates_then_updates_the_schedule(stack: Stack) -> None:
    async def describe() -> Any:
        client = await stack.temporal_client()
        return await client.get_schedule_handle(SWEEPER_SCHEDULE_ID).describe()

    async def pause() -> None:
        client = await stack.temporal_client()
        await client.get_schedule_handle(SWEEPER_SCHEDULE_ID).pause(note="test")

    async def delete() -> None:
        client = await stack.temporal_client()
        await client.get_schedule_handle(SWEEPER_SCHEDULE_ID).delete()

    try:
        assert "created" in stack.epay("sweeper", "schedule")
        schedule = asyncio.run(describe()).schedule
        action = schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert action.workflow == "SweeperWorkflow"
        assert action.task_queue == stack.env["EPAY_TASK_QUEUE"]
        assert [i.every for i in schedule.spec.intervals] == [timedelta(minutes=5)]
        assert schedule.policy.overlap == ScheduleOverlapPolicy.SKIP

        asyncio.run(pause())  # an operator's pause survives an update
        assert "updated" in stack.epay("sweeper", "schedule", "--every", "10")
        schedule = asyncio.run(describe()).schedule
        assert [i.every for i in schedule.spec.intervals] == [timedelta(minutes=10)]
        assert schedule.state.paused
    finally:
        asyncio.run(delete())


def test_a_revocation_left_pending_by_a_terminated_workflow_is_finished(stack: Stack) -> None:
    """The payment ended (the payer's hold released) while its department could not take
    the revocation; the workflow retrying it was terminated. The sweeper revokes."""
    payment = stack.created(reference=new_reference("DOWN-"))
    pid = payment["id"]
    stack.authorise(payment, e_dirham("7840000000000017"))
    stack.wait_for(pid, {"confirming"})
    with stack.client() as c:
        assert c.post(f"/v1/payments/{pid}/cancel").status_code == 202
    assert stack.wait_for(pid, timeout=30)["state"] == "cancelled"
    for _ in range(150):
        if "department_revoke_pending" in [e["event"] for e in events(stack, pid)]:
            break
        time.sleep(0.2)
    terminate(stack, payment)
    quiet(stack, pid)

    first = sweep(stack)  # the department is still down: tried again next run
    result = swept(first, pid)
    assert result is not None, first
    assert result.outcome == SweepOutcome.ERROR, first

    department(stack, "up")
    try:
        second = sweep(stack)
    finally:
        department(stack, "down")
    result = swept(second, pid)
    assert result is not None, second
    assert result.outcome == SweepOutcome.REVOKED, second
    assert [c["status"] for c in confirmations(stack, pid)] == ["revoked"]
    last = events(stack, pid)[-1]
    assert (last["event"], last["actor"]) == ("department_revoked", "sweeper"), last
    assert stack.get(pid)["state"] == "cancelled"
    assert swept(sweep(stack), pid) is None  # done: not found again
    [owed] = stack.fetch("SELECT department_revoke_owed FROM payments WHERE id = $1", pid)
    assert owed == {"department_revoke_owed": False}


def test_a_revocation_owed_at_the_end_is_found_without_any_later_step(stack: Stack) -> None:
    """The end state and the revocation it leaves owed are one transaction: a workflow that
    stops right after it (no note written after the end) still leaves the sweeper a
    revocation to make."""
    payment = stranded_while_confirming(stack, e_dirham("7840000000000017"))
    pid = payment["id"]

    async def end_owing() -> None:  # the workflow's close_unpaid, and nothing after it
        pool = await create_pool(stack.dsn, max_size=1)
        try:
            await payments.close_unpaid(
                pool,
                Transition(
                    pid,
                    PaymentEvent.CANCELLED_BY_DEPARTMENT,
                    detail="duplicate invoice",
                    revoke_owed=True,
                ),
            )
        finally:
            await pool.close()

    asyncio.run(end_owing())
    assert stack.get(pid)["state"] == "cancelled"
    assert "department_revoke_pending" not in [e["event"] for e in events(stack, pid)]
    quiet(stack, pid)

    department(stack, "up")
    try:
        result = swept(sweep(stack), pid)
    finally:
        department(stack, "down")

    assert result is not None, result
    assert result.outcome == SweepOutcome.REVOKED, result
    assert [c["status"] for c in confirmations(stack, pid)] == ["revoked"]
    [owed] = stack.fetch("SELECT department_revoke_owed FROM payments WHERE id = $1", pid)
    assert owed == {"department_revoke_owed": False}
    assert swept(sweep(stack), pid) is None


def test_a_revocation_owed_in_the_notes_alone_is_still_found(stack: Stack) -> None:
    """Workers from before the column said a revocation was owed with the pending note
    alone (and a payment replaying that code still does): the sweeper finds those too."""
    payment = stranded_while_confirming(stack, e_dirham("7840000000000017"))
    pid = payment["id"]

    async def end_the_old_way() -> None:
        pool = await create_pool(stack.dsn, max_size=1)
        try:
            await payments.close_unpaid(pool, Transition(pid, PaymentEvent.CANCELLED_BY_DEPARTMENT))
        finally:
            await pool.close()

    asyncio.run(end_the_old_way())
    stack.fetch(  # the note as a worker without the column wrote it
        """INSERT INTO payment_events (payment_id, event, from_state, to_state, actor, detail,
               dedupe_key) VALUES ($1, 'department_revoke_pending', 'cancelled', 'cancelled',
               'workflow', 'still retried', $1 || ':department_revoke_pending:1')""",
        pid,
    )
    quiet(stack, pid)
    department(stack, "up")
    try:
        result = swept(sweep(stack), pid)
    finally:
        department(stack, "down")
    assert result is not None, result
    assert result.outcome == SweepOutcome.REVOKED, result
    assert swept(sweep(stack), pid) is None


def test_a_refund_whose_workflow_was_terminated_is_restarted_and_refunds_once(
    stack: Stack,
) -> None:
    """An operator terminates a refund's workflow while the acquirer is down: the refund
    stays pending with its amount held, until the sweeper starts its workflow again, which
    refunds it once."""
    paid = stack.pay(card("4242424242424242"))
    httpx.post(f"{stack.sandbox_url}/acquirer/_admin/down", timeout=10).raise_for_status()
    try:
        made = refund(stack, paid["id"], 5000)
        assert made.status_code == 201, made.text
        refund_id = made.json()["id"]

        async def terminate_refund() -> None:
            client = await stack.temporal_client()
            await client.get_workflow_handle(refund_workflow_id(refund_id)).terminate("test")

        asyncio.run(terminate_refund())
    finally:
        httpx.post(f"{stack.sandbox_url}/acquirer/_admin/up", timeout=10).raise_for_status()
    stack.fetch(
        "UPDATE refunds SET updated_at = now() - interval '10 minutes' WHERE id = $1", refund_id
    )
    assert sweep(stack, grace_seconds=60).refunds_restarted == [refund_id]
    assert wait_for_refund(stack, paid["id"], refund_id)["state"] == "succeeded"
    record = acquirer_record(stack, paid["id"])
    assert (record["refund_count"], record["refunded_amount"]) == (1, 5000)
    assert refund_id not in sweep(stack, grace_seconds=0).refunds_restarted


def test_a_refund_terminated_before_its_department_was_told_is_restarted_and_tells_it_once(
    stack: Stack,
) -> None:
    """The money went back and the refund succeeded, but its workflow was terminated while
    the department was down: the sweeper starts it again once the refund has been quiet, and
    the department gets the notice, once; a finished refund is left alone."""
    department(stack, "up")
    try:
        paid = stack.pay(card("4242424242424242"), reference=new_reference("DOWN-"))
    finally:
        department(stack, "down")
    made = refund(stack, paid["id"], 5000)
    assert made.status_code == 201, made.text
    refund_id = made.json()["id"]
    assert wait_for_refund(stack, paid["id"], refund_id)["state"] == "succeeded"

    async def terminate_refund() -> None:
        client = await stack.temporal_client()
        await client.get_workflow_handle(refund_workflow_id(refund_id)).terminate("test")

    asyncio.run(terminate_refund())
    stack.fetch(
        "UPDATE refunds SET updated_at = now() - interval '10 minutes' WHERE id = $1", refund_id
    )
    department(stack, "up")
    try:
        assert refund_id in sweep(stack, grace_seconds=60).refunds_restarted
        deadline = time.monotonic() + 60
        while not stack.fetch(
            "SELECT 1 FROM refunds WHERE id = $1 AND department_notified_at IS NOT NULL",
            refund_id,
        ):
            assert time.monotonic() < deadline, "the department was never told"
            time.sleep(0.5)
    finally:
        department(stack, "down")
    [notice] = department_notices(stack, paid["id"])
    assert (notice["refund_id"], notice["notices"]) == (refund_id, 1)
    record = acquirer_record(stack, paid["id"])
    assert (record["refund_count"], record["refunded_amount"]) == (1, 5000)
    stack.fetch(
        "UPDATE refunds SET updated_at = now() - interval '10 minutes' WHERE id = $1", refund_id
    )
    assert refund_id not in sweep(stack, grace_seconds=60).refunds_restarted


# --- the recovery layer: every method reversed, refusals that end ------------------------


def partner(stack: Stack, system: str, switch: str) -> None:
    """The sandbox card acquirer or e-Dirham issuer: ``down`` answers every call 503."""
    subprocess.run([str(BIN / "epay"), "sandbox", system, switch], env=stack.env, check=True)


def acquirer_call(stack: Stack, path: str, key: str) -> httpx.Response:
    """A call to the sandbox acquirer made outside ePay (the authorisation lapsing, or being
    captured, by the acquirer's doing)."""
    return httpx.post(
        f"{stack.sandbox_url}/acquirer{path}",
        json={"amount": 1},
        headers={"Idempotency-Key": key},
        timeout=10,
    )


def test_a_second_method_whose_answer_was_lost_is_reversed_by_its_own_keys(
    stack: Stack,
) -> None:
    """On the payment page a declined card, then the lost-answer card: the acquirer has
    authorised the second one (under ``<payment>:authorise#2``) but its answer is held when
    the workflow is terminated. The sweep reverses that request, not the first card's."""
    payment = stack.created()
    pid = payment["id"]
    page = PayerPage(stack, payment)
    # The page's answers are waited for in the background: after a decline, and for a
    # method whose workflow has gone, the page waits out its 10 s for progress.
    with ThreadPoolExecutor(2) as answers:
        first = answers.submit(page.authorise, card("4000000000000002"))
        wait_until(lambda: _declined_once(stack, pid), timeout=30, what="the first card declined")
        second = answers.submit(page.authorise, card("4000000000000259"))
        try:
            wait_until(
                lambda: any(
                    a["idempotency_key"] == f"{pid}:authorise#2"
                    for a in acquirer_records(stack, pid)
                ),
                timeout=30,
                what="the second card authorised at the acquirer",
            )
            # The answer is held for seconds; the acquirer, switched off at once, answers the
            # retry 503, so the workflow cannot record the authorisation however slow the
            # terminate below is on a loaded machine.
            httpx.post(f"{stack.sandbox_url}/acquirer/_admin/down", timeout=10).raise_for_status()
            terminate(stack, payment)  # while the acquirer's answer is still on its way
        finally:
            httpx.post(f"{stack.sandbox_url}/acquirer/_admin/up", timeout=10).raise_for_status()
        [row] = stack.fetch(
            "SELECT state, method_type, authorisation_id FROM payments WHERE id = $1", pid
        )
        assert row == {"state": "authorising", "method_type": "card", "authorisation_id": None}, row
        [held] = [a for a in acquirer_records(stack, pid) if a["status"] == "authorised"]
        quiet(stack, pid)

        result = swept(sweep(stack), pid)

        assert result is not None, result
        assert result.outcome == SweepOutcome.CANCELLED, result
        assert all(a["status"] != "authorised" for a in acquirer_records(stack, pid)), (
            acquirer_records(stack, pid)
        )
        [voided] = [a for a in acquirer_records(stack, pid) if a["id"] == held["id"]]
        assert voided["status"] == "voided"
        assert voided["capture_count"] == 0
        assert reservation_status(stack, pid) == "released"
        assert stack.get(pid)["state"] == "cancelled"
        assert first.result(timeout=90).status_code in (200, 202), first.result().text
        second.result(timeout=90)


def _declined_once(stack: Stack, payment_id: str) -> bool:
    """The payment's first method declined, and the payment open for another (the page)."""
    [row] = stack.fetch("SELECT state, declines FROM payments WHERE id = $1", payment_id)
    return row == {"state": "reserved", "declines": 1}


def _captured_by_hand_while_capturing(stack: Stack) -> tuple[dict[str, Any], dict[str, Any]]:
    """A card payment the department confirmed, its workflow terminated while the acquirer
    was down for the capture; the acquirer is back. Returns the payment and its
    authorisation."""
    payment = stack.created(reference=new_reference("SLOW-"))
    pid = payment["id"]
    stack.authorise(payment, card("4242424242424242"))
    stack.wait_for(pid, {"confirming"})
    partner(stack, "acquirer", "down")
    try:
        stack.wait_for(pid, {"capturing"})
        terminate(stack, payment)
    finally:
        partner(stack, "acquirer", "up")
    [auth] = acquirer_records(stack, pid)
    assert auth["status"] == "authorised", auth
    assert [c["status"] for c in confirmations(stack, pid)] == ["confirmed"]
    quiet(stack, pid)
    return payment, auth


def test_a_capture_refused_after_the_workflow_stopped_ends_the_payment_undone(
    stack: Stack,
) -> None:
    payment, auth = _captured_by_hand_while_capturing(stack)
    pid = payment["id"]
    lapsed = acquirer_call(stack, f"/authorisations/{auth['id']}/void", f"lapse-{pid}")
    assert lapsed.status_code == 200, lapsed.text  # the authorisation lapsed at the acquirer

    first = sweep(stack)

    result = swept(first, pid)
    assert result is not None, first
    assert result.outcome == SweepOutcome.CAPTURE_FAILED, first
    assert "capture refused" in result.detail
    final = stack.get(pid)
    assert final["state"] == "failed", final
    assert final["failure"]["code"] == "capture_failed", final
    assert_left_nothing_behind_at_the_acquirer(stack, pid)
    assert reservation_status(stack, pid) == "released"
    assert [c["status"] for c in confirmations(stack, pid)] == ["revoked"]
    again = stack.created(reference=payment["reference"])  # the reference can be paid again
    assert again["state"] == "reserved"
    assert swept(sweep(stack), pid) is None  # ended: no later sweep touches it


def test_a_void_refused_for_good_ends_the_payment_for_an_operator(stack: Stack) -> None:
    """The acquirer captured the authorisation by its own doing: the sweep's void is refused
    for good, recorded, and the payment ends instead of erroring on every run."""
    payment = stranded_while_confirming(stack, card("4242424242424242"))
    pid = payment["id"]
    [auth] = acquirer_records(stack, pid)
    taken = acquirer_call(stack, f"/authorisations/{auth['id']}/capture", f"taken-{pid}")
    assert taken.status_code == 200, taken.text
    department(stack, "up")
    try:
        result = swept(sweep(stack), pid)
    finally:
        department(stack, "down")

    assert result is not None, result
    assert result.outcome == SweepOutcome.NEEDS_OPERATOR, result
    assert stack.get(pid)["state"] == "cancelled"
    assert reservation_status(stack, pid) == "released"
    [refused] = [e for e in events(stack, pid) if e["event"] == "void_refused"]
    assert refused["actor"] == "sweeper"
    assert "not_voidable" in refused["detail"]
    assert swept(sweep(stack), pid) is None

    # The operator finds the capture at the acquirer (and has it refunded there): resolved.
    done = resolve(stack, pid, "found captured by the acquirer; refund asked of it")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["resolved"] == ["void_refused"], shown
    assert shown["state"] == "cancelled", shown
    assert "refused for good" in shown["done"][0], shown
    [note] = [e for e in events(stack, pid) if e["event"] == "operator_resolved"]
    assert note["actor"] == "operator"
    assert note["detail"].startswith("ops@dm: found captured by the acquirer"), note
    again = resolve(stack, pid, "twice")
    assert again.returncode == 4, again
    assert "nothing_to_resolve" in again.stdout, again


def resolve(stack: Stack, payment_id: str, reason: str) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "epay"), "ops", "resolve", payment_id, "--json"]
    command += ["--operator", "ops@dm", "--reason", reason]
    return subprocess.run(command, env=stack.env, capture_output=True, text=True, timeout=60)


def test_an_operator_resolves_a_capture_whose_authorisation_is_not_known(stack: Stack) -> None:
    """The sweeper leaves it to an operator; ``epay ops resolve`` reverses what the card's
    authorising call made, revokes the department's confirmation and ends the payment, with
    no workflow, and the reference can be paid again."""
    payment = _confirmed_then_terminated(stack, authorisation_known=False)
    pid = payment["id"]
    result = swept(sweep(stack), pid)
    assert result is not None
    assert result.outcome == SweepOutcome.NEEDS_OPERATOR
    department(stack, "up")
    try:
        done = resolve(stack, pid, "no authorisation id at the acquirer's portal either")
    finally:
        department(stack, "down")

    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["resolved"] == ["needs_operator"], shown
    assert shown["state"] == "failed", shown
    final = stack.get(pid)
    assert final["state"] == "failed"
    assert final["failure"]["code"] == "capture_failed"
    assert_left_nothing_behind_at_the_acquirer(stack, pid)
    assert reservation_status(stack, pid) == "released"
    trail = events(stack, pid)
    [ended] = [e for e in trail if e["event"] == "failed"]
    assert ended["actor"] == "operator"
    assert ended["detail"].startswith("ops@dm: no author")
    assert [e["event"] for e in trail][-1] == "operator_resolved"
    assert swept(sweep(stack), pid) is None
    assert stack.created(reference=payment["reference"])["state"] == "reserved"


def test_resolve_leaves_a_paid_method_alone_and_stops_on_a_captured_open_payment(
    stack: Stack,
) -> None:
    """A payment paid with its second method on the page keeps that method; an open
    payment whose method the partner says it captured is not ended as failed."""
    paid = stack.created()
    page = PayerPage(stack, paid)
    # After a decline the page waits out its 10 s for progress: its answer is waited for in
    # the background, and checked at the end.
    with ThreadPoolExecutor(1) as answers:
        declined = answers.submit(page.authorise, card("4000000000000002"))
        wait_until(
            lambda: _declined_once(stack, paid["id"]), timeout=30, what="the first card declined"
        )
        assert page.authorise(card("4242424242424242")).status_code in (200, 202)
        assert stack.wait_for(paid["id"])["state"] == "succeeded"
        note(stack, paid["id"], AuditNote.VOID_REFUSED, "void refused: not_voidable (method 1)")

        done = resolve(stack, paid["id"], "method 1 was a decline: nothing held")

        assert done.returncode == 0, done.stderr
        shown = json.loads(done.stdout)
        assert shown["state"] == "succeeded", shown
        assert len(shown["done"]) == 1, shown
        assert shown["done"][0].startswith("method 1 (card)"), shown
        [captured] = [a for a in acquirer_records(stack, paid["id"]) if a["status"] == "captured"]
        assert captured["capture_count"] == 1

        payment, auth = _captured_by_hand_while_capturing(stack)
        pid = payment["id"]
        taken = acquirer_call(stack, f"/authorisations/{auth['id']}/capture", f"taken-{pid}")
        assert taken.status_code == 200, taken.text
        stack.fetch("UPDATE payments SET authorisation_id = NULL WHERE id = $1", pid)
        note(stack, pid, AuditNote.NEEDS_OPERATOR, "authorisation not known")

        refused = resolve(stack, pid, "let us see")

        assert refused.returncode == 4, refused
        assert "partner_refused" in refused.stdout, refused
        assert stack.get(pid)["state"] == "capturing"
        assert [c["status"] for c in confirmations(stack, pid)] == ["confirmed"]
        assert "operator_resolved" not in [e["event"] for e in events(stack, pid)]
        assert declined.result(timeout=90).status_code in (200, 202)


def note(stack: Stack, payment_id: str, kind: AuditNote, detail: str) -> None:
    async def record() -> None:
        pool = await create_pool(stack.dsn, max_size=1)
        try:
            await payments.record_note(pool, AuditEntry(payment_id, kind, "sweeper", detail))
        finally:
            await pool.close()

    asyncio.run(record())


def test_resolve_refuses_what_was_not_left_to_an_operator(stack: Stack) -> None:
    payment = stack.created()  # running, waiting for its payer
    refused = resolve(stack, payment["id"], "just looking")
    assert refused.returncode == 4, refused
    assert "nothing_to_resolve" in refused.stdout, refused
    missing = resolve(stack, "pay_doesnotexist", "typo")
    assert missing.returncode == 3, missing
    assert "payment_not_found" in missing.stdout, missing
    assert stack.get(payment["id"])["state"] == "reserved"


def assert_left_nothing_behind_at_the_acquirer(stack: Stack, payment_id: str) -> None:
    for auth in acquirer_records(stack, payment_id):
        assert auth["status"] not in ("authorised", "pending_3ds", "captured"), auth
        assert auth["capture_count"] == 0, auth
