"""What the bench's parts share: the service paid, the test card, the timings, the names of
the processes measured."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from domain.queues import Role, roles_in
from tools.devstack import worker_process

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
