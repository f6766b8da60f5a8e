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
import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from domain.queues import Role, roles_in
from epay.config import Settings
from tools.bench.common import WORKER_PROCESSES
from tools.bench.driving import note
from tools.bench.output import render
from tools.bench.processes import find_stack_processes, parse_pids
from tools.bench.run import bench


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
