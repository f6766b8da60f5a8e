"""The bench's report for people (``--json`` prints the report itself)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from commands.text import figure
from tools.bench.common import PROCESS_NAMES, TASK_NAMES

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
