"""What ``epay settlement run|show`` prints of a day's stored result: a table of the totals
per fee line and every mismatch (``render``), or the row as JSON (``as_json``)."""

from __future__ import annotations

import json
from typing import Any

from domain.settlement import DayResult
from store.settlement import SettlementRun


def as_json(run: SettlementRun) -> dict[str, Any]:
    """The day's row as ``--json`` prints it: its columns in the table's order, times in ISO
    8601, and the day again under ``day``."""
    return {
        "business_day": run.business_day.isoformat(),
        "balanced": run.balanced,
        "totals": run.totals,
        "mismatches": run.mismatches,
        "runs": run.runs,
        "first_run_at": run.first_run_at.isoformat(),
        "last_run_at": run.last_run_at.isoformat(),
        "day": run.business_day.isoformat(),
    }


def render(run: SettlementRun) -> str:
    """What ``epay settlement`` prints for a day's result."""
    totals = run.totals
    out = [
        f"settlement of {run.business_day.isoformat()} (Asia/Dubai): "
        + ("balanced" if run.balanced else f"{len(run.mismatches)} mismatches"),
        f"  {'line':40} {'captured':>14} {'refunded':>14} {'net':>14}",
    ]
    for line, f in totals["lines"].items():
        out.append(f"  {line:40} {f['captured']:>14,} {f['refunded']:>14,} {f['net']:>14,}")
    ledger = totals["ledger"]
    out.append(f"  ledger:   captured {ledger['captured']:,}, refunded {ledger['refunded']:,} fils")
    for partner, f in totals["partners"].items():
        out.append(
            f"  {partner + ':':9} captured {f['captured']:,}, refunded {f['refunded']:,} fils"
        )
    for m in run.mismatches:
        out.append(
            f"  MISMATCH {m['kind']}: {m['partner']} {m['movement']} of payment "
            f"{m['payment_id']}: ledger {m['ledger']}, {m['partner']} {m['partner_amount']} fils"
        )
    return "\n".join(out)


def dumps(outcome: DayResult) -> str:
    """A run's result as one line of JSON."""
    return json.dumps(outcome.as_json())
