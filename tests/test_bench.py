"""``epay bench`` once, at a tiny size, against the session's stack: both pipelines run to
the end and every figure is there and sane. Nothing here asserts a speed: the bench prints
figures, people read them (docs/performance.md)."""

from __future__ import annotations

import json
import subprocess

from epay.bench import parse_pids, percentiles
from tests.conftest import Stack
from tests.support import BIN, ROOT

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
        assert events["sampled"] == PAYMENTS // 2 and events["min"] > 0
    assert floor["history_events"]["floor"]["sampled"] == PAYMENTS
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
    assert database["transactions_per_payment"] > 0 and database["rows_written_per_payment"] > 0
    assert epay["api_calls_per_payment"] >= 2  # a create and an authorise at least
    assert all(value is not None for value in report["ratios"].values())
    assert [t["met"] for t in report["targets"]][2:] == [None, None]  # not at concurrency 1
    cost = sum(epay["processes"][role]["cpu_ms_per_payment"] for role in ("api", "worker"))
    assert report["targets"][3]["value"] == round(cost, 1)


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
