"""``epay bench``: ePay end to end against the Temporal floor.

Drives N payments through the real API and the sandbox at a given concurrency (create,
authorise, wait for the end; even ones with an e-Dirham card made for the run, odd ones with
card 4242), then as many floor workflows (``workflows/floor.py``: five remote no-op
activities) on the same Temporal server, polled by a worker with ePay's worker settings and
data converter, and prints both and their ratios. How each figure is measured:

- create→reserved: ePay, the latency of ``POST /v1/payments`` (it answers once the fee is
  reserved); the floor, from its start call to its reserve activity's completion in history.
- authorise→succeeded: ePay, from just before ``POST .../authorise`` to the time the read
  model records ``succeeded`` (the payment's ``updated_at``), so the bench's polling adds
  nothing (run it on the stack's machine: one clock); the floor, from its reserve
  activity's completion to its settle activity's, in history.
- payments/s: those that succeeded over the time from the first start to the last end.
- CPU and memory of the API, worker, Temporal server and sandbox processes, and of the bench
  itself (all share the machine): utime + stime (``/proc/<pid>/stat``) over the phase, per
  payment; peak RSS (``VmHWM``) at its end, and how much it grew during the phase, per
  payment. Several processes of one name are summed. A worker of the role ``all`` is
  ``worker``, one of another role ``worker-<role>`` (``--split-roles`` starts one of each).
  PostgreSQL's are not measured.
- history events: ePay, a sample of each method's workflow histories; the floor, all. From
  the same sample, ePay's tasks per payment by role: workflow tasks and local activities
  (the ``workflows`` role's), activities by the role whose queue they were scheduled on, and
  how long one waited for a worker and ran (the times history records).
- database: ``pg_stat_database`` counters of the stack's database over the ePay phase:
  transactions and rows, labelled proxies of SQL statements (PostgreSQL counts statements
  only with ``pg_stat_statements``, which neither the embedded nor the developers' server
  loads).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import logging
import math
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
import httpx
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client, WorkflowFailureError, WorkflowHistory
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker

from activities.floor import STEPS
from commands.text import figure
from domain.cards import luhn_ok
from domain.money import fee_lines, total
from domain.queues import Role, roles_in, task_queue
from domain.states import PaymentState
from epay.config import Settings
from epay.temporal import connect
from tools.devstack import worker_process
from workflows.floor import FloorWorkflow

T = TypeVar("T")

SERVICE = "HEALTH_CERT"
CARD_4242 = {
    "method": "card",
    "card_number": "4242424242424242",
    "expiry_month": 12,
    "expiry_year": datetime.now().year + 5,
    "cvv": "737",
    "cardholder_name": "Bench Payer",
}
BENCH_PIN = "1234"
WARMUP = 4  # payments of each pipeline before measuring: first calls import and connect
POLL_INTERVAL = 0.05  # seconds between looks at the department's list of payments
PAYMENT_TIMEOUT = 120.0  # seconds a payment may take before the bench gives up on it
HISTORY_SAMPLE = 20  # ePay histories fetched per payment method
STATS_SETTLE = 11.0  # seconds: PostgreSQL publishes an idle backend's counters within 10 s
STACK_ROLES = ("api", "worker", "temporal", "sandbox")  # the processes of a stack measured
PROCESS_NAMES = {
    "api": "API",
    "worker": "worker",
    "temporal": "Temporal server",
    "sandbox": "sandbox (the partners)",
    "bench": "bench driver",
}


LOCAL_ACTIVITY_MARKER = "core_local_activity"  # the SDK's; a patch's marker is "core_patch"
TASK_NAMES = {
    "workflow_tasks": "workflow tasks (workflows role)",
    "local_activities": "local activities (inside those tasks)",
}


WORKER_PROCESSES = tuple(worker_process(role) for role in (Role.ALL, *roles_in(Role.ALL)))


def is_epay_process(name: str) -> bool:
    """The API and the workers: ePay's own processes, what the cost target is about."""
    return name == "api" or name in WORKER_PROCESSES


# --- figures -----------------------------------------------------------------------------


def percentiles(seconds: Sequence[float]) -> dict[str, float | None]:
    """p50, p95 and p99 in milliseconds, by nearest rank."""
    ordered = sorted(seconds)

    def rank(p: int) -> float | None:
        if not ordered:
            return None
        return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000, 1)

    return {"p50": rank(50), "p95": rank(95), "p99": rank(99)}


def events_summary(counts: Sequence[int]) -> dict[str, float | int | None]:
    if not counts:
        return {"sampled": 0, "mean": None, "min": None, "max": None}
    return {
        "sampled": len(counts),
        "mean": round(sum(counts) / len(counts), 1),
        "min": min(counts),
        "max": max(counts),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


@dataclass
class Outcome:
    """One payment of a pipeline: how it ended, when, and its two latencies in seconds."""

    state: str
    method: str
    started: float  # the wall clock (time.time())
    ended: float
    create_to_reserved: float | None = None
    authorise_to_succeeded: float | None = None
    workflow_id: str | None = None


def phase_figures(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """What both pipelines report: counts, throughput and latencies."""
    ok = [o for o in outcomes if o.state == PaymentState.SUCCEEDED]
    seconds = max(o.ended for o in outcomes) - min(o.started for o in outcomes)
    ended_otherwise: dict[str, int] = {}
    for o in outcomes:
        if o.state != PaymentState.SUCCEEDED:
            ended_otherwise[o.state] = ended_otherwise.get(o.state, 0) + 1
    return {
        "payments": len(outcomes),
        "succeeded": len(ok),
        "ended_otherwise": ended_otherwise,
        "seconds": round(seconds, 2),
        "payments_per_second": round(len(ok) / seconds, 2) if seconds > 0 else None,
        "create_to_reserved_ms": percentiles(
            [o.create_to_reserved for o in ok if o.create_to_reserved is not None]
        ),
        "authorise_to_succeeded_ms": percentiles(
            [o.authorise_to_succeeded for o in ok if o.authorise_to_succeeded is not None]
        ),
    }


# --- processes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessSample:
    cpu_seconds: float
    peak_rss_kb: int


def sample_process(pid: int) -> ProcessSample | None:
    """utime + stime and VmHWM of a live process; None once it has gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the name in brackets may hold spaces
    ticks = int(fields[11]) + int(fields[12])
    hwm = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return ProcessSample(ticks / os.sysconf("SC_CLK_TCK"), int(hwm.split()[1]))


class ProcessMeter:
    """What the processes of each role spent over a phase."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = {role: found for role, found in pids.items() if found}
        self.before = {pid: sample_process(pid) for found in pids.values() for pid in found}

    def report(self, payments: int) -> dict[str, dict[str, Any]]:
        figures: dict[str, dict[str, Any]] = {}
        for role, pids in self.pids.items():
            spans = [(self.before[pid], sample_process(pid)) for pid in pids]
            both = [(b, a) for b, a in spans if b is not None and a is not None]
            if len(both) < len(spans):
                figures[role] = {"pids": pids, "error": "a process exited during the run"}
                continue
            cpu = sum(a.cpu_seconds - b.cpu_seconds for b, a in both)
            grown = sum(a.peak_rss_kb - b.peak_rss_kb for b, a in both)
            figures[role] = {
                "pids": pids,
                "cpu_ms_per_payment": round(cpu * 1000 / payments, 2),
                "peak_rss_mb": round(sum(a.peak_rss_kb for _, a in both) / 1024, 1),
                "peak_rss_growth_kb_per_payment": round(grown / payments, 2),
            }
        return figures


def _option(argv: Sequence[str], name: str, default: str) -> str:
    return argv[argv.index(name) + 1] if name in argv[:-1] else default


def _stack_role(argv: Sequence[str]) -> str | None:
    """What a process of an ePay stack is, by its command line: ``api``, ``worker``,
    ``temporal`` or ``sandbox`` (a worker's role is in its ``--role`` or environment)."""
    if argv and Path(argv[0]).name == "temporal" and "start-dev" in argv:
        return "temporal"
    for i, arg in enumerate(argv[:-1]):
        if arg == "-m" and argv[i + 1] == "sandbox":
            return "sandbox"
        if Path(arg).name == "epay" and argv[i + 1] in ("api", "worker", "sandbox"):
            return argv[i + 1]
    return None


def worker_process_of(argv: Sequence[str], environ: dict[str, str]) -> str:
    """The name of an ``epay worker`` process, by the role it runs: its ``--role``, else its
    ``EPAY_WORKER_ROLE``, else ``all`` (what ``epay worker`` does)."""
    return worker_process(_option(argv, "--role", environ.get("EPAY_WORKER_ROLE") or Role.ALL))


def find_stack_processes(settings: Settings, api_url: str) -> dict[str, list[int]]:
    """The API, worker, Temporal server and sandbox processes of the stack the settings
    point at, by their command lines; workers by their role (:func:`worker_process_of`).
    Several stacks may run on one machine: a server must listen on the stack's port, and a
    worker must have the stack's Temporal address and task queue in its environment."""
    found: dict[str, list[int]] = {role: [] for role in STACK_ROLES}
    ports = {  # role: (the stack's port, the process's default)
        "temporal": (settings.temporal_address.rsplit(":", 1)[1], "7233"),
        "api": (str(urlsplit(api_url).port or 80), "8000"),
        "sandbox": (str(urlsplit(settings.issuer_url).port or 80), "8100"),
    }
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = [a.decode() for a in (proc / "cmdline").read_bytes().split(b"\0")[:-1]]
            role = _stack_role(argv)
            if role is None:
                continue
            if role in ports:
                port, default = ports[role]
                if _option(argv, "--port", default) == port:
                    found[role].append(int(proc.name))
                continue
            environ = dict(
                entry.decode().partition("=")[::2]
                for entry in (proc / "environ").read_bytes().split(b"\0")
                if entry
            )
        except OSError:  # gone, or not ours to read
            continue
        if (environ.get("TEMPORAL_ADDRESS") or "127.0.0.1:7233") == settings.temporal_address and (
            environ.get("EPAY_TASK_QUEUE") or "epay-payments"
        ) == settings.task_queue:
            found.setdefault(worker_process_of(argv, environ), []).append(int(proc.name))
    return found


def parse_pids(text: str) -> dict[str, list[int]]:
    """``api=12,worker=34,worker=35,temporal=56``, or a worker by its role:
    ``worker-issuer=78``."""
    names = (*STACK_ROLES, *WORKER_PROCESSES[1:])
    pids: dict[str, list[int]] = {role: [] for role in STACK_ROLES}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        role, _, pid = entry.partition("=")
        if role not in names or not pid.isdigit():
            raise argparse.ArgumentTypeError(
                f"{entry!r} is not NAME=PID (names: {', '.join(names)})"
            )
        pids.setdefault(role, []).append(int(pid))
    return pids


# --- the database ------------------------------------------------------------------------


async def database_counters(dsn: str) -> dict[str, Any]:
    """The database's transactions and rows so far, and the rows each table has had read by
    sequential scans (those grow with the table, where an index scan would not)."""
    conn = await asyncpg.connect(dsn)
    try:
        totals = await conn.fetchrow(
            """SELECT xact_commit + xact_rollback AS transactions, tup_returned AS rows_scanned,
                      tup_inserted + tup_updated + tup_deleted AS rows_written
               FROM pg_stat_database WHERE datname = current_database()"""
        )
        tables = await conn.fetch("SELECT relname, seq_tup_read FROM pg_stat_user_tables")
    finally:
        await conn.close()
    assert totals is not None
    return {**totals, "by_table": {t["relname"]: t["seq_tup_read"] for t in tables}}


def database_figures(
    before: dict[str, Any], after: dict[str, Any], payments: int
) -> dict[str, Any]:
    def per_payment(a: int, b: int) -> float:
        return round((a - b) / payments, 1)

    scanned = {
        table: per_payment(rows, before["by_table"].get(table, 0))
        for table, rows in after["by_table"].items()
    }
    return {
        "measured": "pg_stat_database of the stack's database over the ePay phase: proxies, "
        "not a count of SQL statements",
        **{
            f"{name}_per_payment": per_payment(after[name], before[name])
            for name in ("transactions", "rows_scanned", "rows_written")
        },
        "rows_read_by_sequential_scans_per_payment": dict(
            sorted(((t, n) for t, n in scanned.items() if n), key=lambda tn: -tn[1])[:3]
        ),
    }


# --- driving -----------------------------------------------------------------------------


class Progress:
    """A progress bar on stderr, when stderr is a terminal."""

    WIDTH = 30

    def __init__(self, label: str, count: int) -> None:
        self.label, self.count, self.done = label, count, 0
        self.shown = sys.stderr.isatty()

    def advance(self) -> None:
        self.done += 1
        if self.shown:
            filled = self.WIDTH * self.done // self.count
            bar = "#" * filled + "." * (self.WIDTH - filled)
            print(f"\r{self.label:<6} [{bar}] {self.done}/{self.count}", end="", file=sys.stderr)
            if self.done == self.count:
                print(file=sys.stderr)


async def drive(
    count: int, concurrency: int, pay: Callable[[int], Awaitable[T]], label: str = ""
) -> list[T]:
    """``pay(0) .. pay(count - 1)``, ``concurrency`` at a time, each lane starting the next
    payment as soon as its last one ended."""
    progress = Progress(label, count) if label else None
    results: dict[int, T] = {}
    indices = iter(range(count))

    async def lane() -> None:
        for i in indices:
            results[i] = await pay(i)
            if progress:
                progress.advance()

    await asyncio.gather(*(lane() for _ in range(min(concurrency, count))))
    return [results[i] for i in range(count)]


def note(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- ePay through the API ----------------------------------------------------------------


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


# --- the floor ---------------------------------------------------------------------------


def worker_settings(settings: Settings) -> dict[str, Any]:
    """The slots, pollers and cache ePay's workers run with (``EPAY_WORKER_*``)."""
    return {
        "max_concurrent_workflow_tasks": settings.workflow_task_slots,
        "max_concurrent_activities": settings.activity_slots,
        "max_concurrent_local_activities": settings.local_activity_slots,
        "max_cached_workflows": settings.sticky_cache_size,
        "workflow_task_poller_behavior": PollerBehaviorSimpleMaximum(settings.workflow_pollers),
        "activity_task_poller_behavior": PollerBehaviorSimpleMaximum(settings.activity_pollers),
    }


def floor_queue(settings: Settings) -> str:
    return f"{settings.task_queue}-floor"


async def serve_floor() -> None:
    """The floor's worker process (``python -m tools.bench``): polls until SIGTERM."""
    import signal

    settings = Settings.from_env()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    client = await connect(settings)
    async with Worker(
        client,
        task_queue=floor_queue(settings),
        workflows=[FloorWorkflow],
        activities=list(STEPS),
        **worker_settings(settings),
    ):
        print("floor worker polling", flush=True)
        await stop.wait()


@dataclass
class FloorPipeline:
    client: Client
    task_queue: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    serial: int = 0

    async def pay(self, i: int) -> Outcome:
        """Run one floor workflow; its latencies come from its history afterwards."""
        self.serial += 1
        workflow_id = f"floor-{self.run_id}-{self.serial}"
        started = time.time()
        handle = await self.client.start_workflow(
            FloorWorkflow.run, workflow_id, id=workflow_id, task_queue=self.task_queue
        )
        try:
            await handle.result()
        except WorkflowFailureError:
            return Outcome("failed", "floor", started, time.time(), workflow_id=workflow_id)
        return Outcome("succeeded", "floor", started, time.time(), workflow_id=workflow_id)

    async def time_from_histories(self, outcomes: Sequence[Outcome]) -> list[int]:
        """Fill in each floor workflow's latencies from the times its history recorded;
        returns the number of events of each."""
        histories = await gather_limited(
            (
                self.client.get_workflow_handle(o.workflow_id or "").fetch_history()
                for o in outcomes
            ),
            limit=10,
        )
        for outcome, history in zip(outcomes, histories, strict=True):
            done = [
                e.event_time.seconds + e.event_time.nanos / 1e9
                for e in history.events
                if e.HasField("activity_task_completed_event_attributes")
            ]
            if len(done) == len(STEPS):
                outcome.create_to_reserved = done[0] - outcome.started
                outcome.authorise_to_succeeded = done[-1] - done[0]
        return [len(h.events) for h in histories]


async def start_floor_worker(env: dict[str, str]) -> asyncio.subprocess.Process:
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tools.bench", env=env, stdout=asyncio.subprocess.PIPE
    )
    assert worker.stdout is not None
    line = await asyncio.wait_for(worker.stdout.readline(), timeout=60)
    if b"polling" not in line:
        raise SystemExit("epay bench: the floor worker did not start")
    return worker


async def run_floor(
    client: Client, payments: int, concurrency: int, temporal_pids: list[int]
) -> dict[str, Any]:
    """The floor phase: its own worker process, a warm-up, then the measured workflows."""
    settings = Settings.from_env()
    note(f"starting the floor's worker on task queue {floor_queue(settings)} ...")
    worker = await start_floor_worker(dict(os.environ))
    floor = FloorPipeline(client, floor_queue(settings))
    try:
        await drive(WARMUP, concurrency, floor.pay)
        meter = ProcessMeter(
            {"worker": [worker.pid], "temporal": temporal_pids, "bench": [os.getpid()]}
        )
        outcomes = await drive(payments, concurrency, floor.pay, "floor")
        processes = meter.report(payments)
    finally:
        worker.terminate()
        await worker.wait()
    events = await floor.time_from_histories([o for o in outcomes if o.state == "succeeded"])
    return phase_figures(outcomes) | {
        "history_events": {"floor": events_summary(events)},
        "processes": processes,
    }


async def run_epay(
    client: Client,
    settings: Settings,
    pipeline: EPayPipeline,
    payments: int,
    concurrency: int,
    pids: dict[str, list[int]],
) -> dict[str, Any]:
    """The ePay phase, with the database's counters around it when the bench can read them."""
    dsn = settings.database_url
    before = await database_counters(dsn) if dsn else None
    meter = ProcessMeter(pids | {"bench": [os.getpid()]})
    outcomes = await drive(payments, concurrency, pipeline.pay, "ePay")
    processes = meter.report(payments)
    database = None
    if dsn and before:
        await asyncio.sleep(STATS_SETTLE)
        database = database_figures(before, await database_counters(dsn), payments)
    sampled: dict[str, list[str]] = {"e_dirham": [], "card": []}
    for o in outcomes:
        if o.state == PaymentState.SUCCEEDED and o.workflow_id:
            sampled[o.method].append(o.workflow_id)
    histories = {
        method: await fetch_histories(client, ids[:HISTORY_SAMPLE])
        for method, ids in sampled.items()
    }
    events = {
        method: events_summary([len(h.events) for h in sample])
        for method, sample in histories.items()
    }
    tasks = {
        method: tasks_summary([role_tasks(h, settings.task_queue) for h in sample])
        for method, sample in histories.items()
        if sample
    }
    return phase_figures(outcomes) | {
        "by_method": {
            method: sum(o.method == method for o in outcomes) for method in ("e_dirham", "card")
        },
        "history_events": events,
        "tasks_per_payment": tasks,
        "processes": processes,
        "database": database,
        "api_calls_per_payment": pipeline.calls_per_payment(payments),
    }


def memory_gb() -> float:
    meminfo = Path("/proc/meminfo").read_text().split()
    return round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 1024**2, 1)


async def machine(client: Client) -> dict[str, Any]:
    server = await client.workflow_service.get_system_info(GetSystemInfoRequest())
    return {
        "cpus": os.cpu_count(),
        "memory_gb": memory_gb(),
        "python": platform.python_version(),
        "temporalio": importlib.metadata.version("temporalio"),
        "temporal_server": server.server_version,
        "load_average_before": [round(v, 2) for v in os.getloadavg()],
    }


async def bench(
    settings: Settings,
    api_url: str,
    api_key: str,
    pids: dict[str, list[int]],
    payments: int,
    concurrency: int,
) -> dict[str, Any]:
    """Both pipelines on one stack: the floor first, then ePay, never at the same time."""
    client = await connect(settings)
    report: dict[str, Any] = {
        "run": {"payments": payments, "concurrency": concurrency, "api": api_url},
        "machine": await machine(client),
    }
    limits = httpx.Limits(max_connections=concurrency + 10)
    async with (
        httpx.AsyncClient(
            base_url=api_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=60,
            limits=limits,
        ) as department,
        httpx.AsyncClient(base_url=api_url, timeout=60, limits=limits) as payer,
    ):
        card = await create_bench_card(settings, department, (payments + WARMUP) // 2 + 1)
        note(f"warming up with {WARMUP} payments ...")
        await drive(WARMUP, concurrency, EPayPipeline(department, payer, card).pay)
        warmed = time.monotonic()
        report["floor"] = await run_floor(client, payments, concurrency, pids["temporal"])
        if settings.database_url:  # the warm-up's counters must be published first
            await asyncio.sleep(max(0.0, STATS_SETTLE - (time.monotonic() - warmed)))
        pipeline = EPayPipeline(department, payer, card)
        report["epay"] = await run_epay(client, settings, pipeline, payments, concurrency, pids)
    report["machine"]["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    report["ratios"] = ratios(report["epay"], report["floor"])
    report["targets"] = targets(report)
    return report


def ratios(epay: dict[str, Any], floor: dict[str, Any]) -> dict[str, float | None]:
    """ePay over the floor, figure by figure."""
    figures = {
        "payments_per_second": ratio(epay["payments_per_second"], floor["payments_per_second"])
    }
    for latency in ("create_to_reserved_ms", "authorise_to_succeeded_ms"):
        for p in ("p50", "p95", "p99"):
            name = f"{latency.removesuffix('_ms')}_{p}"
            figures[name] = ratio(epay[latency][p], floor[latency][p])
    for method in ("e_dirham", "card"):
        figures[f"history_events_{method}"] = ratio(
            epay["history_events"][method]["mean"], floor["history_events"]["floor"]["mean"]
        )
    return figures


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Where this run stands against the pipeline's targets (docs/performance.md)."""
    epay, figures = report["epay"], report["ratios"]
    concurrency = report["run"]["concurrency"]
    e_dirham = epay["history_events"]["e_dirham"]["mean"]
    throughput = figures["payments_per_second"]
    latency = figures["authorise_to_succeeded_p50"]
    cpu = [p.get("cpu_ms_per_payment") for n, p in epay["processes"].items() if is_epay_process(n)]
    cost = round(sum(c for c in cpu if c is not None), 1) if cpu else None

    def met(value: float | None, ok: Callable[[float], bool]) -> bool | None:
        return None if value is None else ok(value)

    return [
        {
            "target": "history events of a happy-path e-Dirham payment <= 30",
            "value": e_dirham,
            "met": met(e_dirham, lambda v: v <= 30),
        },
        {
            "target": "payments/s >= 0.8x the floor",
            "value": throughput,
            "met": met(throughput, lambda v: v >= 0.8),
        },
        {
            "target": "authorise->succeeded p50 <= 1.25x the floor at concurrency 1",
            "value": latency,
            "met": met(latency, lambda v: v <= 1.25) if concurrency == 1 else None,
            **({} if concurrency == 1 else {"note": f"this run is at concurrency {concurrency}"}),
        },
        {
            "target": "cost per payment flat within 15 % from 100 to 5,000 payments",
            "value": cost,
            "met": None,
            "note": "CPU ms per payment of the API and workers: compare runs of both sizes",
        },
    ]


# --- output ------------------------------------------------------------------------------


CELL = 9
LATENCY_HEADER = "".join(f"{p:>{CELL}}" for p in ("p50", "p95", "p99"))


def _row(name: str, succeeded: str, per_second: float | None, figures: Sequence[Any]) -> str:
    """One line of the pipelines' table: the six latencies, then the history events."""
    cells = [f"{figure(v):>{CELL}}" for v in figures]
    return (
        f"{name:14}{succeeded:>11}{figure(per_second):>9} {''.join(cells[:3])} "
        f"{''.join(cells[3:6])} {''.join(cells[6:])}"
    )


def _latencies(figures: dict[str, Any]) -> list[float | None]:
    return [
        figures[k][p]
        for k in ("create_to_reserved_ms", "authorise_to_succeeded_ms")
        for p in ("p50", "p95", "p99")
    ]


def not_succeeded(pipeline: str, ended_otherwise: dict[str, int]) -> str | None:
    """The table's line for the payments of a pipeline that did not succeed, by how they
    ended (a state with its failure code, or the call that was refused), if any."""
    if not ended_otherwise:
        return None
    found = ", ".join(f"{n} {how}" for how, n in sorted(ended_otherwise.items()))
    return f"{pipeline} did not succeed: {found}"


def render(report: dict[str, Any]) -> str:
    """The report for people: both pipelines and their ratio, costs, database, targets."""
    run, m, epay, floor, r = (report[k] for k in ("run", "machine", "epay", "floor", "ratios"))
    by, events = epay["by_method"], epay["history_events"]
    floor_events = floor["history_events"]["floor"]["mean"]
    lines = [
        f"ePay bench: {run['payments']:,} payments ({by['e_dirham']} e-Dirham, {by['card']} card "
        f"4242) at concurrency {run['concurrency']}, API {run['api']}",
        f"machine: {m['cpus']} CPUs, {m['memory_gb']} GB, Python {m['python']}, temporalio "
        f"{m['temporalio']}, Temporal server {m['temporal_server']}; load average "
        f"{m['load_average_before'][0]} before, {m['load_average_after'][0]} after",
        "",
        f"{'':34} {'create->reserved ms':>{3 * CELL}} {'authorise->succeeded ms':>{3 * CELL}} "
        f"{'history events':>{2 * CELL}}",
        f"{'':14}{'succeeded':>11}{'pay/s':>9} {LATENCY_HEADER} {LATENCY_HEADER} "
        f"{'e-Dirham':>{CELL}}{'card':>{CELL}}",
        _row(
            "ePay",
            f"{epay['succeeded']}/{epay['payments']}",
            epay["payments_per_second"],
            [*_latencies(epay), events["e_dirham"]["mean"], events["card"]["mean"]],
        ),
        _row(
            "floor",
            f"{floor['succeeded']}/{floor['payments']}",
            floor["payments_per_second"],
            [*_latencies(floor), floor_events, floor_events],
        ),
        _row(
            "ePay / floor",
            "",
            r["payments_per_second"],
            [
                *(
                    r[f"{k}_{p}"]
                    for k in ("create_to_reserved", "authorise_to_succeeded")
                    for p in ("p50", "p95", "p99")
                ),
                r["history_events_e_dirham"],
                r["history_events_card"],
            ],
        ),
    ]
    lines += [
        line
        for name, figures in (("ePay", epay), ("floor", floor))
        if (line := not_succeeded(name, figures["ended_otherwise"]))
    ]
    lines += ["", f"{'cost per payment':40}{'CPU ms':>8}{'peak RSS MB':>13}{'RSS growth KB':>15}"]
    for phase, figures in (("ePay", epay), ("floor", floor)):
        for role, p in figures["processes"].items():
            name = f"{phase} {PROCESS_NAMES.get(role, role)} (pid {', '.join(map(str, p['pids']))})"
            if "error" in p:
                lines.append(f"{name:40}{p['error']}")
                continue
            lines.append(
                f"{name:40}{figure(p['cpu_ms_per_payment']):>8}{figure(p['peak_rss_mb']):>13}"
                f"{figure(p['peak_rss_growth_kb_per_payment']):>15}"
            )
    if not epay["processes"]:
        lines.append("  (no API, worker or Temporal process found: give them with --pids)")
    lines += [
        "",
        f"{'tasks of an ePay payment, by role (sampled histories)':54}{'per payment':>12}"
        f"{'wait ms':>9}{'run ms':>9}",
    ]
    for method, tasks in epay["tasks_per_payment"].items():
        for kind, t in tasks.items():
            name = TASK_NAMES.get(kind, f"activities on the {kind} role's queue")
            lines.append(
                f"  {method.replace('_', '-') + ' ' + name:52}{figure(t['per_payment']):>12}"
                f"{figure(t.get('wait_ms')):>9}{figure(t.get('run_ms')):>9}"
            )
    db = epay["database"]
    lines += [
        "",
        (
            f"database per ePay payment ({db['measured']}):\n  "
            f"{figure(db['transactions_per_payment'])} transactions, "
            f"{figure(db['rows_scanned_per_payment'])} rows scanned, "
            f"{figure(db['rows_written_per_payment'])} rows written; most read by sequential "
            "scans: "
            + (
                ", ".join(
                    f"{table} {figure(rows)}"
                    for table, rows in db["rows_read_by_sequential_scans_per_payment"].items()
                )
                or "none"
            )
            if db
            else "database: not measured (no DATABASE_URL)"
        ),
        f"API calls per ePay payment: {figure(epay['api_calls_per_payment'])} (create, authorise, "
        "and a share of the bench's list polls)",
        "",
        "targets",
    ]
    for t in report["targets"]:
        verdict = {True: "met", False: "not met", None: t.get("note", "")}[t["met"]]
        lines.append(f"  {t['target']:64}{figure(t['value']):>8}  {verdict}")
    return "\n".join(lines)


# --- the command -------------------------------------------------------------------------


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """``epay bench``'s options (the ``epay`` command hands them over unparsed)."""
    bench = argparse.ArgumentParser(
        prog="epay bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("--payments", type=int, default=100, help="per pipeline (default 100)")
    bench.add_argument("--concurrency", type=int, default=20, help="in flight (default 20)")
    bench.add_argument("--api", default="http://127.0.0.1:8000", help="a running stack's API")
    bench.add_argument(
        "--key", help="a DM department API key (default: make run's, <state dir>/dm_api_key)"
    )
    bench.add_argument(
        "--start-stack",
        action="store_true",
        help="start a stack of its own on free ports and embedded defaults, stop it after",
    )
    bench.add_argument(
        "--split-roles",
        action="store_true",
        help="with --start-stack: a worker process per role (workflows, acquirer, issuer, "
        "departments, records) instead of one of the role all, each measured on its own",
    )
    bench.add_argument(
        "--pids",
        type=parse_pids,
        help="api=PID,worker=PID,...,temporal=PID,sandbox=PID, a worker by its role as "
        "worker-issuer=PID (default: found by their command lines)",
    )
    bench.add_argument("--json", action="store_true", help="print JSON for machines")
    return bench.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    """Run the bench; 0 when every payment of both pipelines succeeded, else 1."""
    if args.payments < 1 or args.concurrency < 1:
        raise SystemExit("epay bench: --payments and --concurrency must be at least 1")
    if args.split_roles and not args.start_stack:
        raise SystemExit("epay bench: --split-roles starts the workers: it needs --start-stack")
    logging.getLogger().setLevel(logging.WARNING)  # not a line per request
    report = _on_started_stack(args) if args.start_stack else _on_running_stack(args)
    print(json.dumps(report, indent=2) if args.json else render(report), flush=True)
    every = all(report[p]["succeeded"] == report[p]["payments"] for p in ("epay", "floor"))
    return 0 if every else 1


def _on_running_stack(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings.from_env()
    key_file = settings.state_dir / "dm_api_key"
    if not args.key and not key_file.is_file():
        raise SystemExit(f"epay bench: no --key and no {key_file} (is make run going?)")
    key = args.key or key_file.read_text().strip()
    pids = args.pids or find_stack_processes(settings, args.api)
    return asyncio.run(bench(settings, args.api, key, pids, args.payments, args.concurrency))


def _on_started_stack(args: argparse.Namespace) -> dict[str, Any]:
    from tools.devstack import DevStack, Ports

    state_dir = Path(tempfile.mkdtemp(prefix="epay-bench-"))
    roles = roles_in(Role.ALL) if args.split_roles else (Role.ALL,)
    try:
        with DevStack(Ports.free(), state_dir, say=note, worker_roles=roles) as stack:
            started = stack.pids()
            measured = ("api", *WORKER_PROCESSES, "temporal", "sandbox")
            pids = args.pids or {name: started[name] for name in measured if name in started}
            report = asyncio.run(
                bench(
                    stack.settings(),
                    stack.api_url,
                    stack.api_key,
                    pids,
                    args.payments,
                    args.concurrency,
                )
            )
    except BaseException:
        note(f"the bench's stack left its logs in {state_dir / 'logs'}")
        raise
    shutil.rmtree(state_dir, ignore_errors=True)
    report["run"]["api"] = "a stack of its own (--start-stack" + (
        ", --split-roles)" if args.split_roles else ")"
    )
    return report


if __name__ == "__main__":  # the floor's worker, started by run_floor()
    asyncio.run(serve_floor())
    os._exit(0)  # at once: the SDK's threads may abort a normal teardown (sdk-python#300)
