"""A bench run: the floor, then ePay, on one stack; their ratios and the targets."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from domain.states import PaymentState
from epay.config import Settings
from epay.temporal import connect
from tools.bench.common import HISTORY_SAMPLE, STATS_SETTLE, WARMUP, is_epay_process
from tools.bench.database import database_counters, database_figures
from tools.bench.driving import drive, note
from tools.bench.epay_api import (
    EPayPipeline,
    create_bench_card,
    fetch_histories,
    role_tasks,
    tasks_summary,
)
from tools.bench.figures import events_summary, phase_figures, ratio
from tools.bench.floor import run_floor
from tools.bench.processes import ProcessMeter


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
