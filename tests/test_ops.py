"""``epay ops``, run as an operator runs it (a process with the stack's environment): it
finds each kind of stuck payment with its step and reason, shows one payment with its audit
trail, and its retry, cancel and confirm end payments as promised, with the operator named
in the audit trail. Every query is narrowed to this module's own references: other tests
share the Temporal server."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from tests.conftest import Stack, card, e_dirham, new_reference
from tests.support import BIN
from tests.support.partners import department, issuer_holds
from tests.support.payments import assert_paid_once, reservation_status

T = TypeVar("T")
E_DIRHAM = e_dirham("7840000000000017")
THREE_D_SECURE = card("4000000000003220")
NOT_FOUND, REFUSED, UNREACHABLE = 3, 4, 5


def ops(
    stack: Stack, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "epay"), "ops", *args],
        env=env or stack.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ops_json(stack: Stack, *args: str, code: int = 0) -> Any:
    done = ops(stack, *args, "--json")
    assert done.returncode == code, f"exit {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout)


def poll(get: Callable[[], T], ok: Callable[[T], bool], what: str, timeout: float = 60) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if ok(value):
            return value
        assert time.monotonic() < deadline, f"{what}: still {value}"
        time.sleep(0.5)


def stuck(stack: Stack, payments: list[dict[str, Any]], *filters: str) -> list[dict[str, Any]]:
    """``epay ops stuck --json`` for these payments' references only."""
    refs = [arg for p in payments for arg in ("--reference", p["reference"])]
    found: list[dict[str, Any]] = ops_json(stack, "stuck", "--older-than", "0", *refs, *filters)
    return found


def ids(views: list[dict[str, Any]]) -> set[str]:
    return {v["payment_id"] for v in views}


def shown(stack: Stack, payment: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = ops_json(stack, "show", payment["id"])
    return result


def confirming_with_a_department_that_is_down(stack: Stack) -> dict[str, Any]:
    payment = stack.created(reference=new_reference("DOWN-"))
    assert stack.authorise(payment, E_DIRHAM).status_code in (200, 202)
    stack.wait_for(payment["id"], {"confirming"})
    # Its first attempt has failed and been recorded.
    poll(
        lambda: shown(stack, payment)["status"],
        lambda s: s["last_error"] is not None,
        "a failed confirmation attempt",
    )
    return payment


def nothing_stuck(stack: Stack, payments: list[dict[str, Any]]) -> None:
    poll(lambda: stuck(stack, payments), lambda found: found == [], "nothing left stuck")


def cancel_by_department(stack: Stack, payments: list[dict[str, Any]]) -> None:
    """Leave nothing stuck: cancel through the department's API, and let the department
    take the revocation of what it was asked to confirm, so that every workflow closes."""
    with stack.client() as c:
        for p in payments:
            assert c.post(f"/v1/payments/{p['id']}/cancel").status_code == 202
    department(stack, "up")
    try:
        for p in payments:
            assert stack.wait_for(p["id"], timeout=30)["state"] == "cancelled"
        nothing_stuck(stack, payments)
    finally:
        department(stack, "down")


def audit(stack: Stack, payment: dict[str, Any], event: str) -> dict[str, Any]:
    entries = [e for e in shown(stack, payment)["events"] if e["event"] == event]
    assert len(entries) == 1, shown(stack, payment)["events"]
    return entries[0]


def test_stuck_lists_each_kind_with_its_step_and_reason(stack: Stack) -> None:
    dept_down = confirming_with_a_department_that_is_down(stack)
    payer = stack.created(reference=new_reference("WAIT-"))
    challenge = stack.created(reference=new_reference("3DS-"))
    assert stack.authorise(challenge, THREE_D_SECURE).status_code in (200, 202)
    stack.wait_for(challenge["id"], {"requires_action"})
    mine = [dept_down, payer, challenge]

    views = {
        v["payment_id"]: v
        for v in poll(lambda: stuck(stack, mine), lambda v: len(v) == 3, "three stuck")
    }
    down = views[dept_down["id"]]
    assert (down["state"], down["waiting_for"]) == ("confirming", "department")
    assert down["step"].startswith("confirming with DM: attempt ")
    assert down["confirmation_attempt"] >= 1
    assert down["last_error"]
    assert "waiting for department; confirmation attempt" in down["why"]
    assert down["last_error"] in down["why"]
    assert (down["department"], down["amount_fils"], down["amount"]) == ("DM", 24000, "AED 240.00")
    assert datetime.fromisoformat(down["gives_up_at"]) > datetime.fromisoformat(down["since"])
    ui = dict(stack.env, EPAY_TEMPORAL_UI_URL="https://temporal.example/ui/")
    payer_only = ["stuck", "--older-than", "0", "--json", "--reference", payer["reference"]]
    linked = json.loads(ops(stack, *payer_only, env=ui).stdout)
    assert [v["ui_url"] for v in linked] == [
        f"https://temporal.example/ui/namespaces/default/workflows/payment-{payer['id']}"
    ]
    waiting = views[payer["id"]]
    assert (waiting["state"], waiting["waiting_for"]) == ("reserved", "payer")
    assert waiting["step"] == "waiting for the payer to pay"
    assert waiting["gives_up_at"][:16] == payer["expires_at"][:16]
    assert waiting["pending_activities"] == []
    assert waiting["confirmation_attempt"] is None
    code = views[challenge["id"]]
    assert (code["state"], code["waiting_for"]) == ("requires_action", "payer")
    assert code["step"] == "waiting for the payer's 3-D Secure code"

    # Filters, each narrowing the same three.
    assert ids(stuck(stack, mine, "--state", "confirming")) == {dept_down["id"]}
    assert ids(stuck(stack, mine, "--waiting-for", "payer")) == {payer["id"], challenge["id"]}
    assert ids(stuck(stack, mine, "--department", "DM", "--waiting-for", "department")) == {
        dept_down["id"]
    }
    assert stuck(stack, mine, "--department", "RTA") == []
    assert ops_json(stack, "stuck", "--older-than", "60", "--reference", payer["reference"]) == []
    assert len(stuck(stack, mine, "--limit", "2")) == 2
    lowered = payer["reference"].lower()  # references are matched as the API matches them
    assert ids(ops_json(stack, "stuck", "--older-than", "0", "--reference", lowered)) == {
        payer["id"]
    }

    # For people: a table with the step, the reason and the link under each payment.
    refs = [arg for p in mine for arg in ("--reference", p["reference"])]
    table = ops(stack, "stuck", "--older-than", "0", *refs)
    assert table.returncode == 0, table.stderr
    assert "3 on their step for 0 min or longer" in table.stdout
    row = next(line for line in table.stdout.splitlines() if line.startswith(dept_down["id"]))
    assert row.split()[1:3] == ["confirming", "department"]
    assert row.endswith("AED 240.00")
    assert f"workflows/payment-{payer['id']}" in table.stdout
    assert "step: waiting for the payer's 3-D Secure code" in table.stdout

    # One payment: its status, the calls it waits on, its audit trail.
    one = shown(stack, dept_down)
    assert one["workflow_status"] == "running"
    assert one["status"]["state"] == "confirming"
    assert one["status"]["method"]["last4"] == "0017"
    assert [(e["event"], e["to_state"]) for e in one["events"]] == [
        ("fee_reserved", "reserved"),
        ("method_submitted", "authorising"),
        ("authorised", "confirming"),
    ]
    text = ops(stack, "show", dept_down["id"])
    assert text.returncode == 0, text.stderr
    assert "state:       confirming, waiting for department" in text.stdout
    assert "audit trail:" in text.stdout
    assert "method_submitted" in text.stdout
    assert one["ui_url"] in text.stdout

    cancel_by_department(stack, mine)


def test_retry_after_the_department_comes_back_succeeds_with_one_capture(stack: Stack) -> None:
    payment = confirming_with_a_department_that_is_down(stack)
    # Wait until the next attempt is well away, so that only the operator's retry can
    # explain a confirmation before it.
    status = poll(
        lambda: shown(stack, payment)["status"],
        lambda s: _next_attempt(s["doing"]) - datetime.now(UTC) > timedelta(seconds=10),
        "a long pause between attempts",
        timeout=90,
    )
    next_attempt = _next_attempt(status["doing"])

    department(stack, "up")
    try:
        done = ops_json(
            stack, "retry", payment["id"], "--operator", "alice@ops", "--reason", "DM is back"
        )
        assert done["action"] == "retry"
        assert done["payment_id"] == payment["id"]
        paid = stack.wait_for(payment["id"], timeout=30)
    finally:
        department(stack, "down")

    assert paid["state"] == "succeeded"
    assert_paid_once(stack, paid, issuer_holds(stack, payment["id"]))
    confirmed = audit(stack, payment, "department_confirmed")
    assert datetime.fromisoformat(confirmed["occurred_at"]) < next_attempt
    retry = audit(stack, payment, "operator_retry_requested")
    assert retry["actor"] == "operator"
    assert retry["detail"] == "alice@ops: DM is back"

    # A payment that has ended refuses every action, with the code scripts look for.
    refused = ops_json(
        stack, "retry", payment["id"], "--operator", "alice@ops", "--reason", "again", code=REFUSED
    )
    assert refused["error"]["code"] == "payment_ended"
    assert "succeeded" in refused["error"]["message"]


def test_cancel_ends_a_payment_waiting_for_its_payer(stack: Stack) -> None:
    payment = stack.created(reference=new_reference("WAIT-"))
    who = ["--operator", "bob@ops", "--reason", "duplicate of another payment"]

    # Refused while the payment is not waiting for its department, and without a name.
    wrong = ops_json(stack, "retry", payment["id"], *who, code=REFUSED)
    assert wrong["error"]["code"] == "not_awaiting_department"
    assert "reserved" in wrong["error"]["message"]
    nameless = ops_json(
        stack, "cancel", payment["id"], "--operator", " ", "--reason", "x", code=REFUSED
    )
    assert nameless["error"]["code"] == "operator_identity_required"
    assert stack.get(payment["id"])["state"] == "reserved"

    done = ops_json(stack, "cancel", payment["id"], *who)
    assert done["action"] == "cancel"
    assert stack.wait_for(payment["id"], timeout=30)["state"] == "cancelled"
    assert reservation_status(stack, payment["id"]) == "released"
    asked = audit(stack, payment, "operator_cancel_requested")
    assert asked["actor"] == "operator"
    assert asked["detail"] == "bob@ops: duplicate of another payment"
    ended = audit(stack, payment, "cancelled_by_operator")
    assert ended["actor"] == "operator"
    assert "bob@ops" in ended["detail"]
    assert (ended["from_state"], ended["to_state"]) == ("reserved", "cancelled")
    nothing_stuck(stack, [payment])

    again = ops(stack, "cancel", payment["id"], *who)
    assert again.returncode == REFUSED, again.stderr


def test_confirm_records_an_out_of_band_confirmation(stack: Stack) -> None:
    payment = confirming_with_a_department_that_is_down(stack)
    who = ["--operator", "carol@ops", "--reason", "DM confirmed by phone"]
    bad = ops_json(stack, "confirm", payment["id"], "--reference", " ", *who, code=REFUSED)
    assert bad["error"]["code"] == "invalid_confirmation_reference"

    done = ops(stack, "confirm", payment["id"], "--reference", "DM-PHONE-0042", *who)
    assert done.returncode == 0, done.stderr
    assert f"carol@ops recorded the department's confirmation of {payment['id']}" in done.stdout

    paid = stack.wait_for(payment["id"], timeout=30)
    assert paid["state"] == "succeeded"
    assert paid["department_confirmation"] == "DM-PHONE-0042"
    assert_paid_once(stack, paid, issuer_holds(stack, payment["id"]))
    note = audit(stack, payment, "department_confirmation_recorded")
    assert note["actor"] == "operator"
    assert "carol@ops: DM confirmed by phone" in note["detail"]
    assert "DM-PHONE-0042" in note["detail"]
    nothing_stuck(stack, [payment])


def test_a_capture_that_keeps_failing_shows_its_attempts_and_last_failure(stack: Stack) -> None:
    payment = confirming_with_a_department_that_is_down(stack)
    who = ["--operator", "erin@ops", "--reason", "DM confirmed by e-mail"]
    issuer(stack, "down")
    try:
        done = ops(stack, "confirm", payment["id"], "--reference", "DM-MAIL-7", *who)
        assert done.returncode == 0, done.stderr
        [view] = poll(
            lambda: stuck(stack, [payment], "--state", "capturing"),
            lambda found: len(found) == 1 and found[0]["pending_activities"][0]["attempt"] >= 3,
            "a capture retried three times",
        )
        assert view["waiting_for"] == "payment_method"
        assert view["step"].startswith("capturing with the e-Dirham issuer")
        [capture] = view["pending_activities"]
        assert capture["activity"] == "capture"
        assert capture["next_attempt_at"]
        # The failure message, encrypted in history, is decoded through the codec.
        assert "answered 503" in capture["last_failure"], capture
        assert f"capture attempt {capture['attempt']}" in view["why"]
        # Past the point of no return: cancelling is refused, the capture goes on.
        refused = ops_json(stack, "cancel", payment["id"], *who, code=REFUSED)
        assert refused["error"]["code"] == "not_cancellable"
    finally:
        issuer(stack, "up")
    paid = stack.wait_for(payment["id"], timeout=60)
    assert paid["state"] == "succeeded"
    assert paid["department_confirmation"] == "DM-MAIL-7"
    assert_paid_once(stack, paid, issuer_holds(stack, payment["id"]))
    nothing_stuck(stack, [payment])


def issuer(stack: Stack, switch: str) -> None:
    """The sandbox e-Dirham issuer: ``down`` answers every call 503."""
    subprocess.run([str(BIN / "epay"), "sandbox", "issuer", switch], env=stack.env, check=True)


def test_exit_codes_for_scripts(stack: Stack) -> None:
    missing = ops_json(stack, "show", "pay_doesnotexist", code=NOT_FOUND)
    assert missing["error"]["code"] == "payment_not_found"
    who = ["--operator", "dan@ops", "--reason", "test"]
    assert ops(stack, "cancel", "pay_doesnotexist", *who).returncode == NOT_FOUND
    assert ops(stack, "cancel", "pay_x", "--reason", "no operator").returncode == 2
    assert ops(stack, "stuck", "--department", "DM' OR Department != '").returncode == 2
    assert ops(stack, "stuck", "--older-than", "soon").returncode == 2
    away = dict(stack.env, TEMPORAL_ADDRESS="127.0.0.1:1")
    unreachable = ops(stack, "stuck", env=away)
    assert unreachable.returncode == UNREACHABLE, unreachable.stderr
    assert "Failed client connect" in unreachable.stderr


def _next_attempt(doing: str) -> datetime:
    """The time of day in ``... next attempt at HH:MM:SS`` (UTC) as a datetime."""
    found = re.search(r"next attempt at (\d\d):(\d\d):(\d\d)", doing)
    if not found:
        return datetime.now(UTC)
    now = datetime.now(UTC)
    hour, minute, second = (int(g) for g in found.groups())
    at = now.replace(hour=hour, minute=minute, second=second, microsecond=0)
    return at + timedelta(days=1) if at < now - timedelta(hours=12) else at


def test_clear_pin_limit_refusals_and_exit_codes(stack: Stack) -> None:
    """``clear-pin-limit`` needs the database alone (Temporal away changes nothing here): no
    such payment is 3; a payment on which no e-Dirham card was tried is 4
    (``no_e_dirham_attempt``), as is an operator without a name; no reason is a usage error.
    A refused clearance writes nothing. Clearing itself is tested with the limit it clears,
    in tests/test_payer_limits.py."""
    away = dict(stack.env, TEMPORAL_ADDRESS="127.0.0.1:1")
    who = ["--operator", "gina@ops", "--reason", "resident called"]

    def clear(payment_id: str, *args: str) -> subprocess.CompletedProcess[str]:
        return ops(stack, "clear-pin-limit", payment_id, *args, "--json", env=away)

    missing = clear("pay_doesnotexist", *who)
    assert missing.returncode == NOT_FOUND, missing.stderr
    assert json.loads(missing.stdout)["error"]["code"] == "payment_not_found"

    by_card = stack.pay(card("4242424242424242"))
    untried = stack.created()
    for payment in (by_card, untried):
        refused = clear(payment["id"], *who)
        assert refused.returncode == REFUSED, refused.stderr
        assert json.loads(refused.stdout)["error"]["code"] == "no_e_dirham_attempt"

    paid = stack.pay(E_DIRHAM)
    nameless = clear(paid["id"], "--operator", " ", "--reason", "resident called")
    assert nameless.returncode == REFUSED, nameless.stderr
    assert json.loads(nameless.stdout)["error"]["code"] == "operator_identity_required"
    assert clear(paid["id"], "--operator", "gina@ops").returncode == 2

    ids = [by_card["id"], untried["id"], paid["id"]]
    assert not stack.fetch(
        "SELECT 1 FROM pin_limit_clearances WHERE payment_id = ANY($1::text[])", ids
    )
    events = stack.fetch(
        "SELECT 1 FROM payment_events WHERE payment_id = ANY($1::text[]) "
        "AND event = 'pin_limit_cleared'",
        ids,
    )
    assert not events

    # A payment that has ended is no obstacle: the e-Dirham card paid on it is cleared, and
    # the clearance is in its audit trail, though its workflow has closed.
    done = clear(paid["id"], *who)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "succeeded"
    note = audit(stack, paid, "pin_limit_cleared")
    assert note["actor"] == "operator"
    assert note["detail"] == "gina@ops: resident called"
