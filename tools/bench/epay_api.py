"""ePay's pipeline: payments through the real API and the sandbox, their ends seen from
the department's list, and the tasks their histories record by role."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory

from domain.cards import luhn_ok
from domain.money import fee_lines, total
from domain.queues import Role, roles_in, task_queue
from domain.states import PaymentState
from epay.config import Settings
from tools.bench.common import (
    BENCH_PIN,
    CARD_4242,
    LOCAL_ACTIVITY_MARKER,
    PAYMENT_TIMEOUT,
    POLL_INTERVAL,
    SERVICE,
    T,
)
from tools.bench.figures import Outcome


class EndWatcher:
    """Learns when payments end from the department's list of payments: one call a tick for
    all the payments in flight (those created since the oldest of them), not one each."""

    def __init__(self, department: httpx.AsyncClient) -> None:
        self.department = department
        self.waiting: dict[str, tuple[datetime, asyncio.Future[dict[str, Any]]]] = {}
        self.calls = 0
        self._poller: asyncio.Task[None] | None = None

    async def ended(self, payment: dict[str, Any]) -> dict[str, Any]:
        future = asyncio.get_running_loop().create_future()
        self.waiting[payment["id"]] = (datetime.fromisoformat(payment["created_at"]), future)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll())
        try:
            return await asyncio.wait_for(future, PAYMENT_TIMEOUT)
        finally:
            self.waiting.pop(payment["id"], None)

    async def _poll(self) -> None:
        try:
            while self.waiting:
                await asyncio.sleep(POLL_INTERVAL)
                params: dict[str, Any] = {
                    "created_from": min(c for c, _ in self.waiting.values()).isoformat(),
                    "limit": 100,
                }
                while True:
                    response = await self.department.get("/v1/payments", params=params)
                    self.calls += 1
                    response.raise_for_status()
                    page = response.json()
                    for payment in page["items"]:
                        _, future = self.waiting.get(payment["id"], (None, None))
                        ended = PaymentState(payment["state"]).is_terminal
                        if future is not None and ended and not future.done():
                            future.set_result(payment)
                    if not page["has_more"]:
                        break
                    params["cursor"] = page["next_cursor"]
        except Exception as err:  # noqa: BLE001 - every payment waiting learns why
            for _, future in self.waiting.values():
                if not future.done():
                    future.set_exception(err)


@dataclass
class EPayPipeline:
    """Payments through the API as a department and its payers make them."""

    department: httpx.AsyncClient  # with the department's API key
    payer: httpx.AsyncClient  # without it: the payer has the payment's token only
    e_dirham_card: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    serial: int = 0
    calls: int = 0

    def __post_init__(self) -> None:
        self.watcher = EndWatcher(self.department)

    def method(self, i: int) -> str:
        return "e_dirham" if i % 2 == 0 else "card"

    async def pay(self, i: int) -> Outcome:
        self.serial += 1
        reference = f"BENCH-{self.run_id}-{self.serial}"
        method = self.method(i)
        started, clock = time.time(), time.perf_counter()
        created = await self.department.post(
            "/v1/payments",
            json={"service_code": SERVICE, "reference": reference},
            headers={"Idempotency-Key": reference},
        )
        create_to_reserved = time.perf_counter() - clock
        self.calls += 1
        if created.status_code != 201:
            return Outcome(f"create answered {created.status_code}", method, started, time.time())
        payment = created.json()
        body = (
            {"method": "e_dirham", "card_number": self.e_dirham_card, "pin": BENCH_PIN}
            if method == "e_dirham"
            else CARD_4242
        )
        authorising = time.time()
        answer = await self.payer.post(
            f"/v1/payments/{payment['id']}/authorise",
            json=body,
            headers={"X-Payment-Token": payment["next_url"].split("token=", 1)[1]},
        )
        self.calls += 1
        if answer.status_code not in (200, 202):
            return Outcome(f"authorise answered {answer.status_code}", method, started, time.time())
        end = answer.json()
        if not PaymentState(end["state"]).is_terminal:
            try:
                end = await self.watcher.ended(payment)
            except TimeoutError:
                return Outcome(f"still {end['state']}", method, started, time.time())
        failure = end.get("failure") or {}
        return Outcome(
            end["state"] + (f" ({failure['code']})" if failure.get("code") else ""),
            method,
            started,
            time.time(),
            create_to_reserved=create_to_reserved,
            authorise_to_succeeded=datetime.fromisoformat(end["updated_at"]).timestamp()
            - authorising,
            workflow_id=payment["workflow_id"],
        )

    def calls_per_payment(self, payments: int) -> float:
        return round((self.calls + self.watcher.calls) / payments, 2)


def bench_card_number() -> str:
    """A fresh 16-digit e-Dirham number that passes the Luhn check."""
    while True:
        body = "78499" + "".join(str(secrets.randbelow(10)) for _ in range(10))
        number = next(body + d for d in "0123456789" if luhn_ok(body + d))
        if not number.endswith(BENCH_PIN):
            return number


async def create_bench_card(
    settings: Settings, department: httpx.AsyncClient, payments: int
) -> str:
    """An e-Dirham card at the sandbox issuer with enough balance for the run's e-Dirham
    payments (the sandbox's own cards hold AED 5,000 at most)."""
    catalogue = (await department.get("/v1/services")).raise_for_status().json()["items"]
    service = next(s for s in catalogue if s["code"] == SERVICE)
    fee = total(fee_lines(service["fee"], exempt_from_added_fees=service["exempt_from_added_fees"]))
    number = bench_card_number()
    response = await department.post(
        f"{settings.issuer_url}/_admin/cards",
        json={"card_number": number, "pin": BENCH_PIN, "balance": fee * payments},
        headers={"Authorization": ""},
    )
    if response.status_code != 200:
        raise SystemExit(
            f"epay bench: the e-Dirham issuer at {settings.issuer_url} made no card for the "
            f"run ({response.status_code}); the bench needs the sandbox issuer"
        )
    return number


async def fetch_histories(client: Client, workflow_ids: Iterable[str]) -> list[WorkflowHistory]:
    return await gather_limited(
        (client.get_workflow_handle(wf).fetch_history() for wf in workflow_ids), limit=10
    )


def role_tasks(history: WorkflowHistory, workflow_queue: str) -> dict[str, dict[str, float]]:
    """What one payment's history asked of each worker role, by kind of task: the
    ``workflows`` role's workflow tasks, and the activities completed on each role's queue;
    for each, how many, and the milliseconds they waited for a worker (scheduled to started)
    and ran (started to completed). Local activities run inside the workflow tasks: their
    markers are counted (not those of patches), their time is the workflow tasks'."""
    role_of_queue = {task_queue(workflow_queue, role): role.value for role in roles_in(Role.ALL)}
    by_id = {event.event_id: event for event in history.events}
    tasks: dict[str, dict[str, float]] = {"workflow_tasks": {}, "local_activities": {}}

    def done(kind: str, scheduled_id: int, started_id: int, completed: HistoryEvent) -> None:
        scheduled, started = by_id[scheduled_id].event_time, by_id[started_id].event_time
        figures = tasks.setdefault(kind, {})
        figures["count"] = figures.get("count", 0) + 1
        figures["wait_ms"] = figures.get("wait_ms", 0) + _ms(started) - _ms(scheduled)
        figures["run_ms"] = figures.get("run_ms", 0) + _ms(completed.event_time) - _ms(started)

    for event in history.events:
        if event.HasField("workflow_task_completed_event_attributes"):
            task = event.workflow_task_completed_event_attributes
            done("workflow_tasks", task.scheduled_event_id, task.started_event_id, event)
        elif event.HasField("activity_task_completed_event_attributes"):
            activity = event.activity_task_completed_event_attributes
            scheduled = by_id[activity.scheduled_event_id].activity_task_scheduled_event_attributes
            role = role_of_queue.get(scheduled.task_queue.name, scheduled.task_queue.name)
            done(role, activity.scheduled_event_id, activity.started_event_id, event)
        elif event.marker_recorded_event_attributes.marker_name == LOCAL_ACTIVITY_MARKER:
            tasks["local_activities"]["count"] = tasks["local_activities"].get("count", 0) + 1
    return tasks


def _ms(time: Timestamp) -> float:
    return time.ToMicroseconds() / 1000


def tasks_summary(histories: Sequence[dict[str, dict[str, float]]]) -> dict[str, dict[str, Any]]:
    """Per kind of task over the sampled payments: tasks per payment, and the mean wait and
    run of one task in milliseconds."""
    summary: dict[str, dict[str, Any]] = {}
    for kind in dict.fromkeys(k for h in histories for k in h):
        count = sum(h.get(kind, {}).get("count", 0) for h in histories)
        figures: dict[str, Any] = {"per_payment": round(count / len(histories), 2)}
        if kind != "local_activities":
            for name in ("wait_ms", "run_ms"):
                total = sum(h.get(kind, {}).get(name, 0) for h in histories)
                figures[name] = round(total / count, 1) if count else None
        summary[kind] = figures
    return summary


async def gather_limited(aws: Iterable[Awaitable[T]], limit: int) -> list[T]:
    gate = asyncio.Semaphore(limit)

    async def one(aw: Awaitable[T]) -> T:
        async with gate:
            return await aw

    return await asyncio.gather(*(one(aw) for aw in aws))
