"""The processes of a stack, found by their command lines, and their CPU and memory."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from domain.queues import Role
from epay.config import Settings
from tools.bench.common import STACK_ROLES, WORKER_PROCESSES
from tools.devstack import worker_process


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
