"""Worker roles: each kind of call runs on its own task queue, served by the workers of its
role only (docs/design.md, "Worker roles and task queues").

The module's stack shares the session's Temporal server, database and sandbox, with a task
queue of its own, its own API, and one ``epay worker --role R`` process per role, each with
a health port. Which process ran what is read from the workflow histories: a worker's
identity is ``<pid>@<host>``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import Client, WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.worker import Replayer, Worker

from domain.queues import Role, payment_method_role, roles_in, task_queue
from domain.sweeper import SweepOutcome, SweepRequest, SweepSummary
from epay.codec import PayloadKeys
from epay.temporal import data_converter
from tests.conftest import Stack, card, e_dirham, new_reference
from tests.support import BIN, Process, free_port, http_ok, run_sync, wait_until
from workflows.payment import PaymentWorkflow
from workflows.sweeper import SweeperWorkflow

HISTORIES = Path(__file__).parent / "histories"


class RoleStack:
    """An API and one worker process per role on a task queue of their own."""

    def __init__(self, session: Stack) -> None:
        env = session.env | {
            "EPAY_TASK_QUEUE": f"epay-roles-{uuid.uuid4().hex[:6]}",
            "EPAY_PUBLIC_URL": f"http://127.0.0.1:{free_port()}",
        }
        self.stack = Stack(env, session.dsn, session.log_dir)
        self.stack.keys = session.keys
        self.queue = env["EPAY_TASK_QUEUE"]
        self.workers: dict[Role, Process] = {}
        self.health: dict[Role, str] = {}  # role -> its running worker's health URL
        self.role_of_pid: dict[int, Role] = {}  # every worker process ever started

    def start(self, role: Role) -> Process:
        port = free_port()
        worker = self.stack.start_worker(role.value, EPAY_HEALTH_PORT=str(port))
        self.workers[role] = worker
        self.health[role] = f"http://127.0.0.1:{port}"
        self.role_of_pid[worker.proc.pid] = role
        return worker

    def ensure(self, *roles: Role) -> None:
        for role in roles:
            if role not in self.workers or not self.workers[role].alive():
                self.start(role)

    def stop(self, role: Role) -> None:
        if role in self.workers:
            self.workers.pop(role).stop()

    def role_of(self, identity: str) -> Role:
        return self.role_of_pid[int(identity.split("@", 1)[0])]

    def queue_of(self, role: Role) -> str:
        return task_queue(self.queue, role)


@pytest.fixture(scope="module")
def roles(stack: Stack) -> Iterator[RoleStack]:
    split = RoleStack(stack)
    try:
        split.ensure(*roles_in(Role.ALL))
        api = split.stack.start_api()
        wait_until(http_ok(f"{split.stack.api_url}/readyz"), timeout=60, what="API", proc=api)
        yield split
    finally:
        for proc in reversed(split.stack.processes):
            proc.stop()


# --- what the histories say ran where -----------------------------------------------------


async def _history(stack: Stack, workflow_id: str) -> WorkflowHistory:
    client = await stack.temporal_client()
    return await client.get_workflow_handle(workflow_id).fetch_history()


def remote_calls(roles: RoleStack, history: WorkflowHistory) -> set[tuple[str, str, Role]]:
    """(activity, task queue it was scheduled on, role of the process that ran it)."""
    scheduled: dict[int, tuple[str, str]] = {}
    calls = set()
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = (attrs.activity_type.name, attrs.task_queue.name)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            name, queue = scheduled[started.scheduled_event_id]
            calls.add((name, queue, roles.role_of(started.identity)))
    return calls


def workflow_task_roles(roles: RoleStack, history: WorkflowHistory) -> set[Role]:
    return {
        roles.role_of(event.workflow_task_started_event_attributes.identity)
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
    }


def expected(roles: RoleStack, *calls: tuple[str, Role]) -> set[tuple[str, str, Role]]:
    return {(name, roles.queue_of(role), role) for name, role in calls}


async def _replay(history: WorkflowHistory, converter: DataConverter) -> None:
    await Replayer(workflows=[PaymentWorkflow], data_converter=converter).replay_workflow(history)


def http_status(url: str) -> int:
    return httpx.get(url, timeout=2).status_code


# --- the queues -----------------------------------------------------------------------------


def test_activity_queues_derive_from_the_workflow_queue() -> None:
    assert [task_queue("epay-payments", role) for role in roles_in(Role.ALL)] == [
        "epay-payments",
        "epay-payments-acquirer",
        "epay-payments-issuer",
        "epay-payments-departments",
        "epay-payments-records",
    ]
    assert roles_in(Role.ISSUER) == (Role.ISSUER,)
    assert payment_method_role("e_dirham") is Role.ISSUER
    assert payment_method_role("card") is Role.ACQUIRER
    with pytest.raises(ValueError, match="polls every queue"):
        task_queue("epay-payments", Role.ALL)


# --- payments and sweeps on split workers ---------------------------------------------------


def test_each_call_runs_on_its_roles_queue_in_that_roles_process(roles: RoleStack) -> None:
    roles.ensure(*roles_in(Role.ALL))
    s = roles.stack
    paid = s.pay(e_dirham("7840000000000017"))
    challenged = s.created()
    assert s.authorise(challenged, card("4000000000003220")).status_code in (200, 202)
    s.wait_for(challenged["id"], {"requires_action"})
    assert s.three_d_secure(challenged, "123456").status_code in (200, 202)
    assert paid["state"] == "succeeded"
    assert s.wait_for(challenged["id"])["state"] == "succeeded"

    e_dirham_history = run_sync(_history(s, paid["workflow_id"]))
    card_history = run_sync(_history(s, challenged["workflow_id"]))
    assert remote_calls(roles, e_dirham_history) == expected(
        roles,
        ("authorise", Role.ISSUER),
        ("confirm_with_department", Role.DEPARTMENTS),
        ("capture", Role.ISSUER),
    )
    assert remote_calls(roles, card_history) == expected(
        roles,
        ("authorise", Role.ACQUIRER),
        ("complete_challenge", Role.ACQUIRER),
        ("confirm_with_department", Role.DEPARTMENTS),
        ("capture", Role.ACQUIRER),
    )
    # the workflow and its database steps (local activities) ran in the workflows process
    assert workflow_task_roles(roles, e_dirham_history) == {Role.WORKFLOWS}
    assert workflow_task_roles(roles, card_history) == {Role.WORKFLOWS}
    # a history with routed activities replays on the current code
    run_sync(_replay(card_history, data_converter(s.settings().payload_keys)))


def test_a_sweep_runs_its_calls_on_the_records_and_partner_queues(roles: RoleStack) -> None:
    roles.ensure(*roles_in(Role.ALL))
    s = roles.stack
    payment = s.created()
    s.authorise(payment, card("4000000000003220"))
    s.wait_for(payment["id"], {"requires_action"})

    async def terminate() -> None:
        client = await s.temporal_client()
        await client.get_workflow_handle(payment["workflow_id"]).terminate(reason="test")

    async def sweep() -> tuple[SweepSummary, WorkflowHistory]:
        client = await s.temporal_client()
        ten_years = 10 * 365 * 24 * 3600
        handle = await client.start_workflow(
            SweeperWorkflow.run,
            SweepRequest(card_data_max_age_seconds=ten_years, grace_seconds=ten_years),
            id=f"test-sweep-{uuid.uuid4().hex[:8]}",
            task_queue=roles.queue,
        )
        return await handle.result(), await handle.fetch_history()

    run_sync(terminate())
    # Older than anything else in the shared database: the sweep finds this payment only.
    s.fetch(
        "UPDATE payments SET updated_at = now() - interval '20 years' WHERE id = $1",
        payment["id"],
    )
    summary, history = run_sync(sweep())
    assert [(p.payment_id, p.outcome) for p in summary.payments] == [
        (payment["id"], SweepOutcome.CANCELLED)
    ]
    assert remote_calls(roles, history) == expected(
        roles,
        ("delete_expired_card_data", Role.RECORDS),
        ("find_stranded_payments", Role.RECORDS),
        ("void_authorisation", Role.ACQUIRER),
        ("close_unpaid", Role.RECORDS),
        ("restart_stranded_refunds", Role.RECORDS),
    )
    assert workflow_task_roles(roles, history) == {Role.WORKFLOWS}
    assert s.get(payment["id"])["state"] == "cancelled"


def test_an_e_dirham_payment_waits_in_authorising_for_an_issuer_worker(roles: RoleStack) -> None:
    roles.ensure(*roles_in(Role.ALL))
    roles.stop(Role.ISSUER)
    s = roles.stack
    payment = s.created()
    assert s.authorise(payment, e_dirham("7840000000000017")).status_code == 202

    async def pending_calls() -> list[Any]:
        client = await s.temporal_client()
        description = await client.get_workflow_handle(payment["workflow_id"]).describe()
        return list(description.raw_description.pending_activities)

    [pending] = run_sync(pending_calls())
    assert pending.activity_type.name == "authorise"
    assert pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED  # not taken
    assert pending.attempt == 1
    assert s.get(payment["id"])["state"] == "authorising"

    issuer = roles.start(Role.ISSUER)
    assert s.wait_for(payment["id"])["state"] == "succeeded"
    history = run_sync(_history(s, payment["workflow_id"]))
    [(_, queue, role)] = [c for c in remote_calls(roles, history) if c[0] == "authorise"]
    assert (queue, role) == (roles.queue_of(Role.ISSUER), Role.ISSUER)
    assert issuer.alive()


# --- health ---------------------------------------------------------------------------------


def test_every_role_answers_liveness_and_readiness(roles: RoleStack) -> None:
    roles.ensure(*roles_in(Role.ALL))
    for role, url in roles.health.items():
        assert http_status(f"{url}/healthz") == 200, role
        wait_until(http_ok(f"{url}/readyz"), timeout=30, what=f"{role} ready")
        assert http_status(f"{url}/nothing-here") == 404


def test_a_worker_without_its_database_is_alive_but_not_ready(stack: Stack) -> None:
    port = free_port()
    worker = stack.start_worker(
        Role.RECORDS.value,
        DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/epay",  # nothing listens
        EPAY_TASK_QUEUE=f"epay-no-db-{uuid.uuid4().hex[:6]}",
        EPAY_HEALTH_PORT=str(port),
    )
    try:
        wait_until(http_ok(f"http://127.0.0.1:{port}/healthz"), timeout=30, what="liveness")
        assert http_status(f"http://127.0.0.1:{port}/readyz") == 503
    finally:
        worker.stop()


def test_a_worker_started_before_temporal_waits_for_it(stack: Stack) -> None:
    """A worker pod may start before the Temporal frontend answers: it waits, not crashes."""
    port = free_port()
    worker = stack.spawn(
        "worker-before-temporal",
        str(BIN / "epay"),
        "worker",
        env=stack.env
        | {"TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}", "EPAY_HEALTH_PORT": str(port)},
    )
    try:
        wait_until(
            lambda: "not reachable yet (try 2)" in worker.log(),
            timeout=30,
            what="a second try",
            proc=worker,
        )
        assert worker.alive()
        assert "Traceback" not in worker.log()
        assert http_status(f"http://127.0.0.1:{port}/readyz") == 503
    finally:
        # SIGKILL: while it waits for Temporal the worker leaves SIGTERM until its tries run
        # out (30 s), and how it stops is not what this test is about.
        worker.kill()


def test_a_draining_worker_is_not_ready_and_finishes_its_call(roles: RoleStack) -> None:
    """SIGTERM while a (slow) department confirmation is in flight: the departments worker
    stops being ready at once, finishes the call, exits, and the payment succeeds."""
    roles.ensure(*roles_in(Role.ALL))
    s = roles.stack
    departments = roles.workers[Role.DEPARTMENTS]
    ready_url = f"{roles.health[Role.DEPARTMENTS]}/readyz"
    wait_until(http_ok(ready_url), timeout=30, what="departments ready")
    payment = s.created(reference=new_reference("SLOW-"))
    s.authorise(payment, e_dirham("7840000000000017"))

    async def confirming() -> bool:
        client = await s.temporal_client()
        description = await client.get_workflow_handle(payment["workflow_id"]).describe()
        return any(
            p.activity_type.name == "confirm_with_department"
            and p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            for p in description.raw_description.pending_activities
        )

    wait_until(lambda: run_sync(confirming()), timeout=30, what="the department call in flight")
    departments.proc.send_signal(signal.SIGTERM)
    wait_until(
        lambda: http_status(ready_url) == 503, timeout=10, what="not ready", proc=departments
    )
    assert departments.proc.wait(timeout=40) == 0
    assert "worker stopped" in departments.log()
    assert s.wait_for(payment["id"])["state"] == "succeeded"
    roles.workers.pop(Role.DEPARTMENTS)
    roles.start(Role.DEPARTMENTS)


# --- upgrading from the single-queue release --------------------------------------------------


@workflow.defn(sandboxed=False)
class SingleQueueCall:
    """What the release before worker roles did: an activity on the workflow queue itself."""

    @workflow.run
    async def run(self, workflow_queue: str) -> int:
        deleted: int = await workflow.execute_activity(
            "delete_expired_card_data",
            10 * 365 * 24 * 3600,  # older than any card data: deletes nothing
            task_queue=workflow_queue,
            start_to_close_timeout=timedelta(seconds=30),
            result_type=int,
        )
        return deleted


def test_an_all_worker_runs_activities_left_on_the_workflow_queue(stack: Stack) -> None:
    async def run() -> int:
        client: Client = await stack.temporal_client()
        queue = f"single-queue-{uuid.uuid4().hex[:6]}"
        async with Worker(client, task_queue=queue, workflows=[SingleQueueCall]):
            result: int = await client.execute_workflow(
                SingleQueueCall.run,
                stack.env["EPAY_TASK_QUEUE"],  # the session's worker runs every role
                id=f"single-queue-{uuid.uuid4().hex[:8]}",
                task_queue=queue,
            )
            return result

    assert asyncio.run(run()) == 0


def test_a_history_of_the_single_queue_release_replays() -> None:
    """Payments of the release before worker roles had every activity on the workflow's own
    queue. Temporal checks an activity's id and type on replay, not its task queue
    (sdk-core's activity state machine), so the routed code replays such a history without
    a patch: shown on a recorded history with its activities moved back to that queue."""
    recorded = json.loads((HISTORIES / "v5_succeeded_e_dirham.json").read_text())
    started = recorded["events"][0]["workflowExecutionStartedEventAttributes"]["taskQueue"]
    scheduled = [
        e["activityTaskScheduledEventAttributes"]
        for e in recorded["events"]
        if e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"
    ]
    assert {s["taskQueue"]["name"] for s in scheduled} != {started["name"]}
    for attributes in scheduled:
        attributes["taskQueue"] = dict(started)
    history = WorkflowHistory.from_json("payment-single-queue", json.dumps(recorded))
    # recorded decoded: plaintext payloads pass the codec whatever its keys
    asyncio.run(_replay(history, data_converter(PayloadKeys.single("k1", os.urandom(32)))))
