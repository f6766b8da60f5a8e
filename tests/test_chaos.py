"""The chaos run, small: a few dozen payments through worker kills, a sandbox restart and
a Temporal restart, then every payment's end checked against the partners' records, the
receipts, the reservations, the card vault and the ledger (see ``tests/chaos.py``)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.e2e]  # a stack of its own, about a minute

SMALL_RUN = [
    "--payments", "36",
    "--seed", "2026",
    "--rate", "1.5",
    "--worker-kills", "2",
    "--sandbox-restarts", "1",
    "--temporal-restarts", "1",
    "--payment-window", "30",
    "--confirm-deadline", "60",
    "--time-limit", "100",
    "--grace", "20",
]  # fmt: skip


def test_a_small_chaos_run_ends_every_payment_with_nothing_left_behind() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "tests.chaos", *SMALL_RUN],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    output = run.stdout[-8000:] + run.stderr[-4000:]
    assert run.returncode == 0, output
    assert "violations: 0" in run.stdout, output
    assert "RESULT: OK" in run.stdout, output
    assert "restart_temporal 1" in run.stdout, output
    assert "kill_worker 2" in run.stdout, output
    assert "restart_sandbox 1" in run.stdout, output
