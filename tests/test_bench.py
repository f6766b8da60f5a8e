"""``epay bench`` once, at a tiny size, against the session's stack: both pipelines run to
the end and every figure is there and sane. Nothing here asserts a speed: the bench prints
figures, people read them (docs/performance.md)."""

from __future__ import annotations

import json
import subprocess
import uuid

from temporalio.client import WorkflowHistory

from epay.config import Settings
from tests.conftest import Stack
from tests.support import BIN, ROOT
from tools.bench.epay_api import role_tasks
from tools.bench.figures import percentiles
from tools.bench.output import not_succeeded
from tools.bench.processes import (
    ProcessMeter,
    find_stack_processes,
    parse_pids,
    worker_process_of,
)

HISTORIES = ROOT / "tests" / "histories"

PAYMENTS = 4


def test_bench_drives_epay_and_the_floor_and_reports_their_figures(stack: Stack) -> None:
    done = subprocess.run(
        [
            str(BIN / "epay"),
            "bench",
            "--payments",
            str(PAYMENTS),
            "--concurrency",
            "2",
            "--json",
            "--api",
            stack.api_url,
            "--key",
            stack.keys["DM"],
        ],
        env=stack.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    report = json.loads(done.stdout)
    epay, floor = report["epay"], report["floor"]

    for pipeline in (epay, floor):
        assert (pipeline["payments"], pipeline["succeeded"]) == (PAYMENTS, PAYMENTS)
        assert pipeline["ended_otherwise"] == {}
        assert pipeline["payments_per_second"] > 0
        for latency in ("create_to_reserved_ms", "authorise_to_succeeded_ms"):
            p50, p95, p99 = (pipeline[latency][p] for p in ("p50", "p95", "p99"))
            assert 0 < p50 <= p95 <= p99
    assert epay["by_method"] == {"e_dirham": PAYMENTS // 2, "card": PAYMENTS // 2}
    for method in ("e_dirham", "card"):
        events = epay["history_events"][method]
        assert events["sampled"] == PAYMENTS // 2
        assert events["min"] > 0
    assert floor["history_events"]["floor"]["sampled"] == PAYMENTS
    # Each method's partner calls went to its own role's queue: an authorise and a capture at
    # least, then one department confirmation; the database steps ran as local activities.
    tasks = epay["tasks_per_payment"]
    assert tasks["e_dirham"]["issuer"]["per_payment"] >= 2
    assert "acquirer" not in tasks["e_dirham"]
    assert tasks["card"]["acquirer"]["per_payment"] >= 2
    assert "issuer" not in tasks["card"]
    for method in ("e_dirham", "card"):
        assert tasks[method]["departments"]["per_payment"] >= 1
        assert tasks[method]["local_activities"]["per_payment"] > 0
        for kind, task in tasks[method].items():
            assert task["per_payment"] > 0
            if kind != "local_activities":  # they run inside the workflow tasks
                assert task["wait_ms"] >= 0
                assert task["run_ms"] > 0
    assert floor["history_events"]["floor"]["min"] > 0

    # The stack's own processes were found by their command lines, and measured; so was
    # the bench's own process, which may use less than a clock tick in so short a run.
    assert set(epay["processes"]) == {"api", "worker", "temporal", "sandbox", "bench"}
    assert set(floor["processes"]) == {"worker", "temporal", "bench"}
    for phase in (epay, floor):
        for role, process in phase["processes"].items():
            assert process["peak_rss_mb"] > 0
            assert process["cpu_ms_per_payment"] > 0 or role == "bench"
    assert epay["processes"]["temporal"]["pids"] == floor["processes"]["temporal"]["pids"]

    database = epay["database"]
    assert database["transactions_per_payment"] > 0
    assert database["rows_written_per_payment"] > 0
    assert epay["api_calls_per_payment"] >= 2  # a create and an authorise at least
    assert all(value is not None for value in report["ratios"].values())
    assert [t["met"] for t in report["targets"]][2:] == [None, None]  # not at concurrency 1
    cost = sum(epay["processes"][role]["cpu_ms_per_payment"] for role in ("api", "worker"))
    assert report["targets"][3]["value"] == round(cost, 1)


def test_the_table_says_how_payments_that_did_not_succeed_ended() -> None:
    assert not_succeeded("ePay", {}) is None
    assert (
        not_succeeded("ePay", {"still capturing": 1, "failed (department_unavailable)": 2})
        == "ePay did not succeed: 2 failed (department_unavailable), 1 still capturing"
    )


def test_percentiles_are_nearest_rank_in_milliseconds() -> None:
    assert percentiles([0.001 * n for n in range(100, 0, -1)]) == {
        "p50": 50.0,
        "p95": 95.0,
        "p99": 99.0,
    }
    assert percentiles([0.2]) == {"p50": 200.0, "p95": 200.0, "p99": 200.0}
    assert percentiles([]) == {"p50": None, "p95": None, "p99": None}


def test_pids_are_given_by_role() -> None:
    assert parse_pids("api=10,worker=11,worker=12,temporal=13") == {
        "api": [10],
        "worker": [11, 12],
        "temporal": [13],
        "sandbox": [],
    }


def test_pids_of_workers_are_given_by_their_role() -> None:
    pids = parse_pids("worker-issuer=20,worker-issuer=21,worker-workflows=22,api=23")
    assert (pids["worker-issuer"], pids["worker-workflows"], pids["api"]) == ([20, 21], [22], [23])


def test_a_worker_process_is_named_by_its_role() -> None:
    epay = "/srv/epay/.venv/bin/epay"
    assert worker_process_of([epay, "worker", "--role", "issuer"], {}) == "worker-issuer"
    assert worker_process_of([epay, "worker"], {"EPAY_WORKER_ROLE": "records"}) == "worker-records"
    assert worker_process_of([epay, "worker", "--role", "all"], {}) == "worker"
    assert worker_process_of([epay, "worker"], {}) == "worker"


def test_a_running_stacks_workers_are_found_and_measured_per_role(stack: Stack) -> None:
    """A worker of one role, on a task queue of its own next to the session's: the bench
    finds it by its command line as ``worker-records``, apart from the session's ``all``
    worker (on another queue), and measures it under that name."""
    queue = f"epay-bench-{uuid.uuid4().hex[:6]}"
    worker = stack.start_worker("records", EPAY_TASK_QUEUE=queue)
    try:
        settings = Settings.from_env_mapping(stack.env | {"EPAY_TASK_QUEUE": queue})
        found = find_stack_processes(settings, stack.api_url)
        assert found["worker-records"] == [worker.proc.pid]
        assert found["worker"] == []
        report = ProcessMeter(found).report(payments=1)
    finally:
        worker.stop()
    assert report["worker-records"]["pids"] == [worker.proc.pid]
    assert report["worker-records"]["peak_rss_mb"] > 0
    assert "worker" not in report


def test_a_payments_tasks_are_counted_by_role_from_its_history() -> None:
    """A recorded happy-path e-Dirham payment (workflow queue ``epay-test-a02dbd``): five
    workflow tasks, two issuer calls and a department's confirmation on their queues, and its
    local activities told apart from its patches' markers."""
    path = HISTORIES / "v4_succeeded_e_dirham.json"
    history = WorkflowHistory.from_json("payment", path.read_text())
    tasks = role_tasks(history, "epay-test-a02dbd")
    counts = {kind: task["count"] for kind, task in tasks.items()}
    assert counts == {"workflow_tasks": 5, "local_activities": 5, "issuer": 2, "departments": 1}
    for kind in ("workflow_tasks", "issuer", "departments"):
        assert tasks[kind]["wait_ms"] >= 0
        assert tasks[kind]["run_ms"] > 0
