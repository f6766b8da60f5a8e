"""A bounded chaos run against the whole stack, as real processes.

``python -m tests.chaos --payments 300 --seed 7`` starts a stack of its own: a Temporal dev
server whose state is in a file (so that it can be restarted), a fresh database, the
sandbox with its state in a file, three workers and the API. It drives a mix of payments
concurrently (e-Dirham and card, good and bad, 3-D Secure, transient and lost answers,
flaky, slow and down departments, cancels by the department and by an operator) while, at
random moments, it SIGKILLs workers and starts new ones, restarts the sandbox and restarts
the Temporal server. Once every payment has ended (or the time is up), it checks each one
against the partners' records and the database:

- ``succeeded``: captured exactly once at the acquirer or issuer for the payment's amount,
  nothing else left open there, one receipt, one capture journal, the reservation consumed,
  the department's confirmation standing;
- any other end: nothing held, authorised or awaiting 3-D Secure at the partners, nothing
  captured, the reservation not held (nor consumed), no receipt or journal, no standing
  confirmation at the department;
- whatever the end, no card data left in the vault; a payment whose cancel the API
  accepted, or whose card or PIN is wrong, never succeeds;
- the ledger balances, as a whole and journal by journal.

It prints the counts and every violation, and exits 1 on any violation or on a payment that
never ended. ``tests/partitions.py`` runs the same payments and checks with the workers and the
API in network namespaces of their own, and cuts them off instead of killing them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.service import RPCError, RPCStatusCode

from domain.cards import with_check_digit
from epay.temporal import connect
from tests.conftest import TERMINAL, Stack, card, e_dirham, stack_env, token_of
from tests.support import Process, http_ok, run_sync, temporary_database, wait_until

DEPARTMENT = "DM"
GOOD_PIN = "1234"
WRONG_PIN = "9876"
OTP_OK = "123456"
OTP_WRONG = "000000"
BIG_BALANCE = 1_000_000_000  # fils: AED 10 million on each shared e-Dirham card
SHARED_EDIRHAM_CARDS = 8

# What the payer does. Weights are shares of the run.
METHODS: dict[str, int] = {
    "e_dirham": 22,
    "e_dirham_wrong_pin": 5,
    "card_ok": 24,
    "card_declined": 8,
    "3ds_ok": 10,
    "3ds_wrong_otp": 4,
    "3ds_unanswered": 2,
    "card_transient": 9,
    "card_lost_answer": 9,
    "abandoned": 3,
}
CARD_NUMBERS = {
    "card_ok": "4242424242424242",
    "card_declined": "4000000000000002",
    "3ds_ok": "4000000000003220",
    "3ds_wrong_otp": "4000000000003220",
    "3ds_unanswered": "4000000000003220",
    "card_transient": "4000000000000119",
    "card_lost_answer": "4000000000000259",
}
# How the department behaves, by reference prefix ("" confirms at once).
DEPARTMENT_BEHAVIOURS: dict[str, int] = {
    "": 55,
    "FLAKY-": 13,
    "SLOW-": 13,
    "DOWN-": 12,
    "REJECT-": 4,
}
CANCELS: dict[str, int] = {"": 80, "department": 10, "operator": 10}
# Payments that must not end succeeded whatever happens.
NEVER_PAID_METHODS = {
    "e_dirham_wrong_pin",
    "card_declined",
    "3ds_wrong_otp",
    "3ds_unanswered",
    "abandoned",
}
# Payers who pay properly: with a department that does not refuse and no cancel, these
# should succeed; when they do not, the run lists them (not a violation: chaos may explain it).
PAYING_METHODS = {"e_dirham", "card_ok", "3ds_ok", "card_transient", "card_lost_answer"}
OPEN_AT_PARTNER = {"held", "authorised", "pending_3ds"}
# What a payment that ended other than succeeded must not have left anywhere.
LEFT_BEHIND_WHEN_UNPAID = {
    *(f"{status}_at_{partner}" for status in OPEN_AT_PARTNER for partner in ("acquirer", "issuer")),
    "captured_at_acquirer",
    "captured_at_issuer",
    "reservation_held",
    "reservation_consumed",
    "receipt",
    "capture_journal",
    "department_confirmed",
}


# --- the plan -----------------------------------------------------------------------------


@dataclass
class Plan:
    index: int
    method: str
    behaviour: str
    cancel: str
    cancel_delay: float
    service_code: str
    amount: int | None
    reference: str
    idempotency_key: str

    @property
    def label(self) -> str:
        cancel = f"{self.cancel}-cancel" if self.cancel else ""
        return "+".join(p for p in (self.method, self.behaviour.rstrip("-"), cancel) if p)

    @property
    def dimensions(self) -> tuple[str, ...]:
        return (
            f"payer: {self.method}",
            f"department: {self.behaviour.rstrip('-') or 'confirms'}",
            f"cancel: {self.cancel or 'none'}",
        )


def make_plans(count: int, rng: random.Random, run_id: str) -> list[Plan]:
    def pick(weights: dict[str, int]) -> str:
        return rng.choices(list(weights), weights=list(weights.values()))[0]

    plans = []
    for i in range(count):
        service, amount = rng.choice(
            [("HEALTH_CERT", None)] * 6 + [("FOOD_CONTROL", None)] * 2 + [("PARKING_FINE", 0)] * 2
        )
        if amount is not None:
            amount = rng.randrange(5_000, 200_000)
        behaviour = pick(DEPARTMENT_BEHAVIOURS)
        plans.append(
            Plan(
                index=i,
                method=pick(METHODS),
                behaviour=behaviour,
                cancel=pick(CANCELS),
                # Mostly within the first second or two, when a cancel still finds work to undo.
                cancel_delay=min(rng.expovariate(1.5), 6.0),
                service_code=service,
                amount=amount,
                reference=f"{behaviour}CHAOS-{run_id}-{i:04d}",
                idempotency_key=f"chaos-{run_id}-{i}",
            )
        )
    return plans


def new_edirham_number(rng: random.Random) -> str:
    while True:
        number = with_check_digit("784" + "".join(rng.choices("0123456789", k=12)))
        if not number.endswith((GOOD_PIN, WRONG_PIN)):  # last4 must never look like a PIN
            return number


# --- the stack ----------------------------------------------------------------------------


@dataclass
class Options:
    payments: int
    seed: int
    concurrency: int
    rate: float
    workers: int
    worker_kills: int
    sandbox_restarts: int
    temporal_restarts: int
    payment_window: int
    confirm_deadline: int
    time_limit: float
    grace: float
    sweep_every: float
    progress_every: float
    log_dir: Path | None


class ChaosStack(Stack):
    """The test session's stack, with a Temporal server that keeps its state in a file (the
    sandbox does too), so that both can be stopped and started again in place."""

    def __init__(self, env: dict[str, str], dsn: str, log_dir: Path) -> None:
        super().__init__(env, dsn, log_dir)
        self.temporal_db = log_dir / "temporal.db"
        self.temporal_proc: Process | None = None
        self.worker_lock = threading.Lock()  # the chaos and the keeper run in threads

    def start_temporal_and_wait(self) -> None:
        self.temporal_proc = self.start_temporal(self.temporal_db)
        wait_until(
            lambda: bool(run_sync(self.temporal_client())),
            timeout=60,
            what="Temporal",
            proc=self.temporal_proc,
        )

    def restart_temporal(self, downtime: float) -> str:
        """SIGTERM the server (SIGKILL if it lingers); start it again on its port and file
        after ``downtime`` seconds."""
        assert self.temporal_proc is not None
        how = "SIGTERM"
        self.temporal_proc.proc.send_signal(signal.SIGTERM)
        try:
            self.temporal_proc.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.temporal_proc.kill()
            how = "SIGTERM, then SIGKILL"
        self.temporal_proc.stop()
        time.sleep(downtime)
        self.start_temporal_and_wait()
        return how

    def replace_worker(self, rng: random.Random) -> None:
        """SIGKILL a worker at random and start a new one."""
        with self.worker_lock:
            victim = rng.choice(self.workers)
            self.workers.remove(victim)
            victim.kill()
            victim.stop()
            self.start_worker()

    def restart_dead_workers(self) -> int:
        with self.worker_lock:
            dead = [w for w in self.workers if not w.alive()]
            for worker in dead:
                self.workers.remove(worker)
                worker.stop()
                self.start_worker()
        return len(dead)

    def stop_all(self) -> None:
        """SIGTERM everything at once, then wait for each (workers drain in parallel)."""
        for proc in self.processes:
            if proc.alive():
                proc.proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.processes):
            proc.stop()


StackType = Callable[[dict[str, str], str, Path], ChaosStack]


@contextlib.contextmanager
def chaos_stack(opts: Options, stack_type: StackType = ChaosStack) -> Iterator[ChaosStack]:
    log_dir = opts.log_dir or Path(tempfile.mkdtemp(prefix="epay-chaos-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    with temporary_database() as dsn:
        env = stack_env(
            dsn,
            log_dir,
            EPAY_TASK_QUEUE=f"epay-chaos-{uuid.uuid4().hex[:6]}",
            EPAY_HTTP_TIMEOUT_SECONDS="2",
            EPAY_DEPARTMENT_TIMEOUT_SECONDS="5",
            EPAY_PAYMENT_WINDOW_SECONDS=str(opts.payment_window),
            EPAY_DEPARTMENT_CONFIRM_DEADLINE_SECONDS=str(opts.confirm_deadline),
            SANDBOX_SLOW_SECONDS="1.5",
            SANDBOX_LOST_ANSWER_DELAY="3",  # above the activities' 2 s HTTP timeout
        )
        s = stack_type(env, dsn, log_dir)
        print(f"logs and state in {log_dir}", flush=True)
        try:
            s.start_temporal_and_wait()
            sandbox = s.start_sandbox()  # its state in <log_dir>/sandbox.db
            wait_until(
                http_ok(f"{s.sandbox_url}/healthz"), timeout=30, what="sandbox", proc=sandbox
            )
            s.epay("migrate")
            s.epay("seed")
            output = s.epay("departments", "create-key", DEPARTMENT)
            s.keys[DEPARTMENT] = next(w for w in output.split() if w.startswith("epk_"))
            for _ in range(opts.workers):
                s.start_worker()
            if opts.sweep_every > 0:  # as deployed: the sweeper ends what a workflow left open
                s.epay("sweeper", "schedule", "--every", str(opts.sweep_every / 60))
            api = s.start_api()
            wait_until(http_ok(f"{s.api_url}/readyz"), timeout=60, what="API", proc=api)
            yield s
        finally:
            s.stop_all()


# --- the run ------------------------------------------------------------------------------


class GaveUp(Exception):
    """The run's time was up before the call got an answer."""


@dataclass
class Tracked:
    plan: Plan
    payment: dict[str, Any] | None = None
    create_outcome: str = ""
    authorise_outcome: str = ""
    challenge_outcome: str = ""
    cancel_outcome: str = ""


@dataclass
class Run:
    stack: ChaosStack
    opts: Options
    rng: random.Random
    http: httpx.AsyncClient
    temporal: Client
    pool: asyncpg.Pool
    deadline: float
    started_at: float = field(default_factory=time.monotonic)
    edirham_cards: list[str] = field(default_factory=list)
    tracked: list[Tracked] = field(default_factory=list)
    create_attempts_done: int = 0
    creates: asyncio.Condition = field(default_factory=asyncio.Condition)
    chaos_planned: Counter[str] = field(default_factory=Counter)
    chaos_done: Counter[str] = field(default_factory=Counter)
    chaos_log: list[str] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)  # client-side answers and errors
    anomalies: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)  # more of the report, after the chaos log

    async def wait_for_creates(self, count: float) -> None:
        """Until ``count`` payments have been asked for, or the run's time is up."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(self.deadline - time.monotonic(), 0)), self.creates:
                await self.creates.wait_for(lambda: self.create_attempts_done >= count)

    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    def note(self, text: str) -> None:
        line = f"[{self.elapsed():6.1f}s] {text}"
        self.chaos_log.append(line)
        print(line, flush=True)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.stack.keys[DEPARTMENT]}"}

    async def call(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[httpx.Response, bool]:
        """The call's first answer that is not "not now" (5xx, connection trouble),
        retried until the run's deadline; with whether an earlier attempt was lost."""
        delay = 0.2
        retried = False
        while True:
            try:
                response = await self.http.request(method, url, json=json, headers=headers)
                if response.status_code < 500:
                    return response, retried
                self.answers[f"HTTP {response.status_code}"] += 1
                if response.status_code == 500:
                    self.anomalies.append(f"{method} {url} answered 500: {response.text[:200]}")
            except httpx.TransportError as err:
                self.answers[type(err).__name__] += 1
            retried = True
            if time.monotonic() + delay > self.deadline:
                raise GaveUp(f"{method} {url}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 3.0)

    async def api(self, method: str, path: str, **kwargs: Any) -> tuple[httpx.Response, bool]:
        return await self.call(method, f"{self.stack.api_url}{path}", **kwargs)

    async def sandbox(self, method: str, path: str, json: Any = None) -> Any:
        response, _ = await self.call(method, f"{self.stack.sandbox_url}{path}", json=json)
        response.raise_for_status()
        return response.json()


async def make_cards(run: Run, plans: list[Plan]) -> dict[int, str]:
    """Shared e-Dirham cards with a big balance, and a card of its own for each payment
    that gives a wrong PIN (so that no card is ever locked by three of them)."""
    for _ in range(SHARED_EDIRHAM_CARDS):
        number = new_edirham_number(run.rng)
        await run.sandbox(
            "POST",
            "/issuer/_admin/cards",
            {"card_number": number, "pin": GOOD_PIN, "balance": BIG_BALANCE},
        )
        run.edirham_cards.append(number)
    own = {}
    for plan in plans:
        if plan.method == "e_dirham_wrong_pin":
            number = new_edirham_number(run.rng)
            await run.sandbox(
                "POST",
                "/issuer/_admin/cards",
                {"card_number": number, "pin": GOOD_PIN, "balance": BIG_BALANCE},
            )
            own[plan.index] = number
    return own


def method_body(run: Run, plan: Plan, own_cards: dict[int, str]) -> dict[str, Any]:
    if plan.method == "e_dirham":
        return e_dirham(run.edirham_cards[plan.index % len(run.edirham_cards)], GOOD_PIN)
    if plan.method == "e_dirham_wrong_pin":
        return e_dirham(own_cards[plan.index], WRONG_PIN)
    return card(CARD_NUMBERS[plan.method])


async def create(run: Run, t: Tracked) -> None:
    plan = t.plan
    body: dict[str, Any] = {"service_code": plan.service_code, "reference": plan.reference}
    if plan.amount is not None:
        body["amount"] = plan.amount
    headers = run.headers | {"Idempotency-Key": plan.idempotency_key}
    response, _ = await run.api("POST", "/v1/payments", json=body, headers=headers)
    t.create_outcome = str(response.status_code)
    if response.status_code in (200, 201):
        t.payment = response.json()
        return
    code = response.json().get("code", "")
    t.create_outcome += f" {code}"
    if response.status_code == 409 and code == "reference_in_progress":
        # The first attempt's reservation went through after its caller had been told 503
        # (the key was released): the payment exists, under another id. Pay that one.
        found, _ = await run.api(
            "GET", f"/v1/payments?reference={plan.reference}", headers=run.headers
        )
        items = found.json().get("items", []) if found.status_code == 200 else []
        if items:
            t.payment = items[0]
            run.anomalies.append(
                f"{plan.reference}: a retried create answered 409 reference_in_progress; "
                f"the payment is {items[0]['id']}"
            )
            return
    run.anomalies.append(f"{plan.reference}: create answered {t.create_outcome}")


async def wait_for_state(run: Run, payment_id: str, states: set[str], within: float) -> str:
    deadline = min(time.monotonic() + within, run.deadline)
    state = ""
    while time.monotonic() < deadline:
        response, _ = await run.api("GET", f"/v1/payments/{payment_id}", headers=run.headers)
        state = response.json().get("state", "") if response.status_code == 200 else ""
        if state in states:
            break
        await asyncio.sleep(0.5)
    return state


def outcome_of(response: httpx.Response, retried: bool) -> str:
    text = str(response.status_code)
    if response.status_code >= 400:
        with contextlib.suppress(ValueError):
            text += " " + str(response.json().get("code", ""))
    return text + (" after a lost attempt" if retried else "")


async def pay(run: Run, t: Tracked, own_cards: dict[int, str]) -> None:
    assert t.payment is not None
    plan, payment = t.plan, t.payment
    response, retried = await run.api(
        "POST",
        f"/v1/payments/{payment['id']}/authorise",
        json=method_body(run, plan, own_cards),
        headers={"X-Payment-Token": token_of(payment)},
    )
    t.authorise_outcome = outcome_of(response, retried)
    if response.status_code == 422:
        run.anomalies.append(f"{payment['id']}: authorise answered {t.authorise_outcome}")
    if not plan.method.startswith("3ds") or response.status_code >= 400:
        return
    if plan.method == "3ds_unanswered":
        return  # the payer walks away: the payment expires when its window closes
    state = await wait_for_state(run, payment["id"], {"requires_action"} | TERMINAL, 60)
    if state != "requires_action":
        t.challenge_outcome = f"never asked ({state or 'unknown'})"
        return
    otp = OTP_OK if plan.method == "3ds_ok" else OTP_WRONG
    response, retried = await run.api(
        "POST",
        f"/v1/payments/{payment['id']}/3ds",
        json={"otp": otp},
        headers={"X-Payment-Token": token_of(payment)},
    )
    t.challenge_outcome = outcome_of(response, retried)


async def cancel_later(run: Run, t: Tracked) -> None:
    assert t.payment is not None
    await asyncio.sleep(t.plan.cancel_delay)
    if t.plan.cancel == "department":
        response, retried = await run.api(
            "POST",
            f"/v1/payments/{t.payment['id']}/cancel",
            json={"reason": "chaos: cancelled by the department"},
            headers=run.headers,
        )
        t.cancel_outcome = outcome_of(response, retried)
        return
    handle = run.temporal.get_workflow_handle(t.payment["workflow_id"])
    delay = 0.2
    while True:
        try:
            await handle.cancel()
            t.cancel_outcome = "requested in Temporal"
            return
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                t.cancel_outcome = "workflow already closed"
                return
            run.answers[f"Temporal {err.status.name if err.status else 'error'}"] += 1
        if time.monotonic() + delay > run.deadline:
            t.cancel_outcome = "gave up"
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, 3.0)


async def drive(run: Run, t: Tracked, slots: asyncio.Semaphore, own: dict[int, str]) -> None:
    await asyncio.sleep(t.plan.index / run.opts.rate)  # payments arrive over time
    async with slots:
        try:
            try:
                await create(run, t)
            finally:
                async with run.creates:
                    run.create_attempts_done += 1
                    run.creates.notify_all()
            if t.payment is None:
                return
            if t.payment["next_url"] is None:
                # An idempotent retry of the create can answer with the payment its first
                # attempt made, ended meanwhile (a long partition): no payer has it to pay.
                run.anomalies.append(
                    f"{t.plan.reference}: the create answered {t.create_outcome} with "
                    f"{t.payment['id']}, already {t.payment['state']} "
                    f"({(t.payment.get('failure') or {}).get('code')})"
                )
                return
            canceller = asyncio.create_task(cancel_later(run, t)) if t.plan.cancel else None
            if t.plan.method != "abandoned":
                await pay(run, t, own)
            if canceller is not None:
                await canceller
        except GaveUp as err:
            run.anomalies.append(f"{t.plan.reference}: gave up on {err} at the time limit")


# --- chaos ----------------------------------------------------------------------------------


async def chaos(run: Run) -> None:
    """The chaos actions, each at a random point of the payments' creation, one at a time."""
    rng, opts, stack = run.rng, run.opts, run.stack
    actions: list[tuple[float, str]] = [(rng.uniform(0.4, 0.6), "department_up")]
    actions += [(rng.uniform(0.05, 0.9), "kill_worker") for _ in range(opts.worker_kills)]
    actions += [(rng.uniform(0.2, 0.8), "restart_sandbox") for _ in range(opts.sandbox_restarts)]
    actions += [
        (rng.uniform(0.25, 0.75), "restart_temporal") for _ in range(opts.temporal_restarts)
    ]
    run.chaos_planned.update(action for _, action in actions)
    for at, action in sorted(actions):
        await run.wait_for_creates(at * opts.payments)
        if time.monotonic() >= run.deadline:
            break
        await asyncio.sleep(rng.uniform(0.0, 2.0))
        progress = f"after {run.create_attempts_done} creates"
        if action == "department_up":
            await run.sandbox("POST", f"/departments/{DEPARTMENT}/_admin/up")
            run.note(f"chaos: department {DEPARTMENT} up ({progress})")
        elif action == "kill_worker":
            await asyncio.to_thread(lambda: stack.replace_worker(rng))
            run.note(f"chaos: SIGKILLed a worker and started a new one ({progress})")
        elif action == "restart_sandbox":
            began = time.monotonic()
            await asyncio.to_thread(stack.restart_sandbox)  # SIGKILL, same port and state
            run.note(
                f"chaos: SIGKILLed the sandbox, serving again "
                f"{time.monotonic() - began:.1f}s later ({progress})"
            )
        elif action == "restart_temporal":
            began = time.monotonic()
            how = await asyncio.to_thread(lambda: stack.restart_temporal(rng.uniform(2.0, 6.0)))
            run.note(
                f"chaos: stopped Temporal ({how}), serving again "
                f"{time.monotonic() - began:.1f}s later ({progress})"
            )
        run.chaos_done[action] += 1


async def keep_workers(run: Run) -> None:
    """A worker that dies by itself is noted and replaced: the run keeps its workers."""
    while True:
        await asyncio.sleep(2)
        dead = await asyncio.to_thread(run.stack.restart_dead_workers)
        if dead:
            run.answers["worker exited by itself"] += dead
            run.note(f"{dead} worker(s) exited by themselves; started new ones")


async def ended_count(run: Run) -> tuple[int, int]:
    row = await run.pool.fetchrow(
        "SELECT count(*) AS total, count(*) FILTER (WHERE state = ANY($1::text[])) AS ended "
        "FROM payments",
        sorted(TERMINAL),
    )
    assert row is not None
    return int(row["total"]), int(row["ended"])


async def progress(run: Run) -> None:
    while True:
        await asyncio.sleep(run.opts.progress_every)
        try:
            total, ended = await ended_count(run)
        except (OSError, asyncpg.PostgresError):
            total = ended = -1
        created = sum(1 for t in run.tracked if t.payment is not None)
        actions = ", ".join(f"{k} {v}" for k, v in sorted(run.chaos_done.items())) or "none"
        print(
            f"[{run.elapsed():6.1f}s] created {created}/{run.opts.payments}, "
            f"in database {total}, ended {ended}; chaos done: {actions}",
            flush=True,
        )


# --- the checks -----------------------------------------------------------------------------


@dataclass
class Findings:
    states: Counter[str]
    failures: Counter[str]
    by_plan: dict[str, Counter[str]]
    cancels: Counter[str]
    violations: dict[str, list[str]]
    not_ended: list[str]
    ledger_total: int
    journals: int
    workflows: Counter[str]
    failed_workflows: list[str]
    unpaid_payers: list[str]
    sweeps: int
    swept: list[str]


async def check(run: Run) -> Findings:
    pool = run.pool
    payments = [
        dict(r)
        for r in await pool.fetch(
            "SELECT id, state, failure_code, amount_total, reference FROM payments ORDER BY id"
        )
    ]

    async def counts(sql: str) -> Counter[str]:
        return Counter({r[0]: r[1] for r in await pool.fetch(sql)})

    receipts = await counts("SELECT payment_id, count(*) FROM receipts GROUP BY payment_id")
    capture_journals = await counts(
        "SELECT payment_id, count(*) FROM ledger_journals WHERE kind = 'capture' "
        "GROUP BY payment_id"
    )
    vault = await counts("SELECT payment_id, count(*) FROM card_vault GROUP BY payment_id")
    reservations: dict[str, list[str]] = defaultdict(list)
    for r in await pool.fetch("SELECT payment_id, status FROM fee_reservations"):
        reservations[r["payment_id"]].append(r["status"])
    ledger_total = int(
        await pool.fetchval("SELECT coalesce(sum(amount), 0) FROM ledger_entries") or 0
    )
    unbalanced = await pool.fetch(
        "SELECT j.id, j.payment_id, coalesce(sum(e.amount), 0) AS off FROM ledger_journals j "
        "LEFT JOIN ledger_entries e ON e.journal_id = j.id GROUP BY j.id "
        "HAVING coalesce(sum(e.amount), 0) <> 0 OR count(e.id) = 0"
    )
    journals = int(await pool.fetchval("SELECT count(*) FROM ledger_journals") or 0)

    partner: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in (await run.sandbox("GET", "/acquirer/_admin/authorisations"))["items"]:
        partner[item["reference"]].append(item | {"partner": "acquirer"})
    for item in (await run.sandbox("GET", "/issuer/_admin/holds"))["items"]:
        partner[item["reference"]].append(item | {"partner": "issuer"})
    confirmations = {
        c["payment_id"]: c
        for c in (await run.sandbox("GET", f"/departments/{DEPARTMENT}/_admin/confirmations"))[
            "items"
        ]
    }

    label = {t.payment["id"]: t.plan.label for t in run.tracked if t.payment is not None}

    def who(pid: str, extra: str = "") -> str:
        plan = label.get(pid, "not the run's own")
        return f"{pid} [{plan}]" + (f" {extra}" if extra else "")

    violations: dict[str, list[str]] = defaultdict(list)
    known = {p["id"] for p in payments}
    for reference in partner:
        if reference not in known:
            violations["partner_record_for_unknown_payment"].append(reference)
    not_ended = []
    for p in payments:
        pid, state = p["id"], p["state"]
        records = partner.get(pid, [])
        reservation = reservations.get(pid, [])
        confirmation = confirmations.get(pid, {}).get("status")
        if state not in TERMINAL:
            not_ended.append(who(pid, state))
            continue
        if vault[pid]:
            violations["card_data_left_in_vault"].append(who(pid, state))
        if state == "succeeded":
            captured = [r for r in records if r["status"] == "captured"]
            captures = sum(r["capture_count"] for r in records)
            if captures != 1 or len(captured) != 1:
                violations["succeeded_not_captured_exactly_once"].append(
                    who(pid, f"captures {captures}")
                )
            for r in captured:
                amount = r["captured_amount"] if r["partner"] == "acquirer" else r["amount"]
                if amount != p["amount_total"]:
                    violations["captured_amount_differs"].append(
                        who(pid, f"{amount} != {p['amount_total']}")
                    )
            if any(r["status"] in OPEN_AT_PARTNER for r in records):
                violations["succeeded_with_another_open_hold"].append(who(pid))
            if receipts[pid] != 1:
                violations["succeeded_without_exactly_one_receipt"].append(
                    who(pid, str(receipts[pid]))
                )
            if capture_journals[pid] != 1:
                violations["succeeded_without_exactly_one_capture_journal"].append(
                    who(pid, str(capture_journals[pid]))
                )
            if reservation != ["consumed"]:
                violations["succeeded_reservation_not_consumed"].append(who(pid, str(reservation)))
            if confirmation != "confirmed":
                violations["succeeded_department_not_confirmed"].append(who(pid, str(confirmation)))
        else:
            unpaid = [f"{r['status']}_at_{r['partner']}" for r in records]
            unpaid += [f"captured_at_{r['partner']}" for r in records if r["capture_count"]]
            unpaid += [f"reservation_{status}" for status in reservation]
            unpaid += ["receipt"] * receipts[pid] + ["capture_journal"] * capture_journals[pid]
            unpaid += [f"department_{confirmation}"] if confirmation else []
            for left in set(unpaid) & LEFT_BEHIND_WHEN_UNPAID:
                violations[f"{state}_with_{left}"].append(who(pid, p["failure_code"] or ""))
    if ledger_total != 0:
        violations["ledger_does_not_balance"].append(f"all entries sum to {ledger_total}")
    for r in unbalanced:
        violations["ledger_journal_does_not_balance"].append(
            f"journal {r['id']} of {r['payment_id']} (off by {r['off']})"
        )

    # What the payer and the department were told must hold too.
    by_plan: dict[str, Counter[str]] = defaultdict(Counter)
    cancels: Counter[str] = Counter()
    state_of = {p["id"]: p["state"] for p in payments}
    failure_of = {p["id"]: p["failure_code"] for p in payments}
    unpaid_payers = []
    for t in run.tracked:
        pid = t.payment["id"] if t.payment else ""
        state = state_of.get(pid, "missing") if pid else "not created"
        for dimension in t.plan.dimensions:
            by_plan[dimension][state] += 1
        if t.plan.cancel:
            cancels[f"{t.plan.cancel}: {t.cancel_outcome or 'not sent'} -> {state}"] += 1
        if state == "missing":
            violations["created_payment_missing_from_database"].append(who(pid))
        if state == "succeeded" and (
            t.plan.method in NEVER_PAID_METHODS or t.plan.behaviour == "REJECT-"
        ):
            violations["succeeded_but_should_not_have"].append(who(pid))
        if state == "succeeded" and t.cancel_outcome == "202":
            violations["succeeded_after_its_cancel_was_accepted"].append(who(pid))
        should_pay = t.plan.method in PAYING_METHODS and t.plan.behaviour != "REJECT-"
        if should_pay and not t.plan.cancel and state != "succeeded":
            answers = f"authorise {t.authorise_outcome or '-'}, 3ds {t.challenge_outcome or '-'}"
            unpaid_payers.append(who(pid, f"{state} {failure_of.get(pid)} ({answers})"))

    # Not violations by themselves, but each is a payment its workflow did not see through.
    workflows: Counter[str] = Counter()
    failed_workflows = []
    async for wf in run.temporal.list_workflows("WorkflowType = 'PaymentWorkflow'"):
        workflows[wf.status.name if wf.status else "UNKNOWN"] += 1
        if wf.status == WorkflowExecutionStatus.FAILED:
            try:
                await run.temporal.get_workflow_handle(wf.id, run_id=wf.run_id).result()
            except WorkflowFailureError as err:
                pid = wf.id.removeprefix("payment-")
                failed_workflows.append(who(pid, f"{state_of.get(pid)}: {err.cause}"))
    sweeps = await run.temporal.count_workflows("WorkflowType = 'SweeperWorkflow'")
    swept = [
        who(r["payment_id"], f"{r['event']} -> {r['to_state']}: {r['detail']}")
        for r in await pool.fetch(
            "SELECT payment_id, event, to_state, detail FROM payment_events "
            "WHERE actor = 'sweeper' ORDER BY id"
        )
    ]

    return Findings(
        states=Counter(p["state"] for p in payments),
        failures=Counter(p["failure_code"] for p in payments if p["failure_code"]),
        by_plan=dict(by_plan),
        cancels=cancels,
        violations=dict(violations),
        not_ended=not_ended,
        ledger_total=ledger_total,
        journals=journals,
        workflows=workflows,
        failed_workflows=failed_workflows,
        unpaid_payers=unpaid_payers,
        sweeps=sweeps.count,
        swept=swept,
    )


def report(run: Run, f: Findings) -> int:
    opts = run.opts
    print("\n=== chaos run ===")
    print(
        f"seed {opts.seed}, {opts.payments} payments, {opts.workers} workers, "
        f"concurrency {opts.concurrency}, {run.elapsed():.0f}s"
    )
    print("chaos actions: " + ", ".join(f"{k} {v}" for k, v in sorted(run.chaos_done.items())))
    for line in run.chaos_log:
        print("  " + line)
    for line in run.summary:
        print(line)
    retries = ", ".join(f"{k} x{v}" for k, v in run.answers.most_common()) or "none"
    print(f"client retries and incidents: {retries}")
    for step in ("authorise", "challenge"):
        answers = Counter(getattr(t, f"{step}_outcome") for t in run.tracked)
        answers.pop("", None)
        print(f"payer's {step} answers: {dict(sorted(answers.items()))}")
    print(f"payments by state ({sum(f.states.values())}): {dict(sorted(f.states.items()))}")
    print(f"failure codes: {dict(sorted(f.failures.items()))}")
    print(f"payment workflows by status: {dict(sorted(f.workflows.items()))}")
    print(f"payment workflows that failed ({len(f.failed_workflows)}):")
    for line in f.failed_workflows:
        print("  " + line)
    print(f"paying payers, not cancelled, whose payment did not succeed ({len(f.unpaid_payers)}):")
    for line in f.unpaid_payers:
        print("  " + line)
    print(f"payment events recorded by the sweeper ({len(f.swept)}, in {f.sweeps} sweeps):")
    for line in f.swept:
        print("  " + line)
    print(f"ledger: {f.journals} journals, entries sum to {f.ledger_total}")
    print("end states by what the run did:")
    for dimension, states in sorted(f.by_plan.items()):
        print(f"  {dimension:32} {dict(sorted(states.items()))}")
    print("cancels (what was asked: its answer -> end state):")
    for line, n in sorted(f.cancels.items()):
        print(f"  {line} x{n}")
    if run.anomalies:
        print(f"client-side anomalies ({len(run.anomalies)}):")
        # Answers 500 by call, then the others one by one: a burst of 500s hides nothing.
        calls = Counter(
            line.split()[0]
            + " /v1"
            + re.sub(r"pay_[0-9a-f]+", "{id}", line.split()[1].split("/v1")[-1])
            for line in run.anomalies
            if " answered 500: " in line
        )
        for call, n in calls.most_common():
            print(f"  {call} answered 500 x{n}")
        others = [line for line in run.anomalies if " answered 500: " not in line]
        for line in others[:30]:
            print("  " + line)
        if len(others) > 30:
            print(f"  ... and {len(others) - 30} more")
    if f.not_ended:
        print(f"NOT ENDED ({len(f.not_ended)}):")
        for line in f.not_ended:
            print("  " + line)
    total = sum(len(v) for v in f.violations.values())
    print(f"violations: {total}")
    for kind, items in sorted(f.violations.items()):
        print(f"  {kind}: {len(items)}")
        for item in items[:10]:
            print(f"    {item}")
        if len(items) > 10:
            print(f"    ... and {len(items) - 10} more")
    complete = run.chaos_done == run.chaos_planned
    if not complete:
        print(f"CHAOS INCOMPLETE: planned {dict(run.chaos_planned)}, done {dict(run.chaos_done)}")
    if not f.states["succeeded"]:
        print("NO PAYMENT SUCCEEDED: a run in which nothing can be paid checks nothing")
    ok = total == 0 and not f.not_ended and complete and f.states["succeeded"] > 0
    print("RESULT: " + ("OK" if ok else "FAILED"), flush=True)
    return 0 if ok else 1


async def settle(run: Run, until: float) -> None:
    """Wait for every payment in the database to reach an end state, or for ``until``."""
    while time.monotonic() < until:
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            total, ended = await ended_count(run)
            if total == ended:
                return
        await asyncio.sleep(1)


ChaosAction = Callable[[Run], Coroutine[Any, Any, None]]


async def run_chaos(stack: ChaosStack, opts: Options, also: Sequence[ChaosAction] = ()) -> int:
    """Drive the payments through ``chaos`` and the actions ``also`` (each given the run, all
    at once), then check every payment's end and report."""
    rng = random.Random(opts.seed)
    run_id = f"{opts.seed}-{uuid.uuid4().hex[:4]}"
    plans = make_plans(opts.payments, rng, run_id)
    started = time.monotonic()
    pool = await asyncpg.create_pool(stack.dsn, min_size=1, max_size=4)
    background: list[asyncio.Future[Any]] = []  # ended before the pool closes, however it ends
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            run = Run(
                stack=stack,
                opts=opts,
                rng=rng,
                http=http,
                temporal=await connect(stack.settings(), runtime=quiet_runtime()),
                pool=pool,
                deadline=started + opts.time_limit,
                started_at=started,
            )
            own_cards = await make_cards(run, plans)
            run.tracked = [Tracked(p) for p in plans]
            slots = asyncio.Semaphore(opts.concurrency)
            background += [
                asyncio.create_task(progress(run)),
                asyncio.create_task(keep_workers(run)),
            ]
            chaos_task = asyncio.gather(chaos(run), *(action(run) for action in also))
            background.append(chaos_task)
            await asyncio.gather(*(drive(run, t, slots, own_cards) for t in run.tracked))
            run.note("all payments driven; waiting for the rest of the chaos and for the ends")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(chaos_task, max(run.deadline - time.monotonic(), 1))
            await settle(run, run.deadline)
            run.deadline = time.monotonic() + opts.grace + 60  # for the checks' own calls
            findings = await check(run)
            grace_end = time.monotonic() + opts.grace
            while (findings.violations or findings.not_ended) and time.monotonic() < grace_end:
                # Compensations still retrying settle within moments: look again before
                # calling anything a violation.
                await asyncio.sleep(5)
                findings = await check(run)
            return report(run, findings)
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await pool.close()


def quiet_runtime() -> Runtime:
    """The client retries by itself while Temporal is down: its warnings would drown the
    progress lines."""
    errors_only = TelemetryFilter(core_level="ERROR", other_level="ERROR")
    return Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=errors_only)))


def parser(
    prog: str = "python -m tests.chaos", description: str | None = __doc__
) -> argparse.ArgumentParser:
    """The chaos run's options, for ``tests.chaos`` and the runs built on it."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--payments", type=int, default=300)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one, printed")
    parser.add_argument("--concurrency", type=int, default=20, help="payments driven at once")
    parser.add_argument("--rate", type=float, default=3.0, help="payments started per second")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--worker-kills", type=int, default=4)
    parser.add_argument("--sandbox-restarts", type=int, default=1)
    parser.add_argument("--temporal-restarts", type=int, default=1)
    parser.add_argument(
        "--payment-window", type=int, default=60, help="seconds a payer has (abandoned expire)"
    )
    parser.add_argument(
        "--confirm-deadline", type=int, default=120, help="seconds a DOWN- department is retried"
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=420,
        help="seconds for driving the payments and waiting for their ends",
    )
    parser.add_argument(
        "--grace", type=float, default=30, help="seconds to look again before reporting"
    )
    parser.add_argument(
        "--sweep-every",
        type=float,
        default=15,
        help="seconds between the sweeper's scheduled runs (0: no sweeper schedule)",
    )
    parser.add_argument("--progress-every", type=float, default=10)
    parser.add_argument("--log-dir", type=Path, default=None)
    return parser


def options(args: argparse.Namespace) -> Options:
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    return Options(
        payments=args.payments,
        seed=seed,
        concurrency=args.concurrency,
        rate=args.rate,
        workers=args.workers,
        worker_kills=args.worker_kills,
        sandbox_restarts=args.sandbox_restarts,
        temporal_restarts=args.temporal_restarts,
        payment_window=args.payment_window,
        confirm_deadline=args.confirm_deadline,
        time_limit=args.time_limit,
        grace=args.grace,
        sweep_every=args.sweep_every,
        progress_every=args.progress_every,
        log_dir=args.log_dir,
    )


def main(argv: Sequence[str] | None = None) -> int:
    opts = options(parser().parse_args(argv))
    print(f"chaos run: seed {opts.seed}, {opts.payments} payments", flush=True)
    with chaos_stack(opts) as stack:
        return asyncio.run(run_chaos(stack, opts))


if __name__ == "__main__":
    sys.exit(main())
