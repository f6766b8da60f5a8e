"""What ``epay ops`` prints for people (``--json`` prints the commands' own dicts)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from commands.ops.common import PaymentView, PendingActivity
from commands.text import age, aligned, stamp, utc
from domain.money import format_aed

_COLUMNS = (
    "PAYMENT",
    "STATE",
    "WAITING FOR",
    "SINCE (UTC)",
    "FOR",
    "GIVES UP (UTC)",
    "DEPT",
    "AMOUNT",
)


def stuck_table(views: list[PaymentView]) -> str:
    now = datetime.now(UTC)
    rows = [
        (
            v.payment_id,
            v.state or "-",
            v.waiting_for or "-",
            stamp(v.since),
            age(now, v.since),
            stamp(v.gives_up_at),
            v.department or "-",
            v.amount or "-",
        )
        for v in views
    ]
    header, *lines = aligned([_COLUMNS, *rows])
    out = [header]
    for line, v in zip(lines, views, strict=True):
        out.append(line)
        out.append(f"    step: {v.step or '-'}")
        out.append(f"    why:  {v.why or '-'}")
        out.append(f"    {v.ui_url}")
    return "\n".join(out)


def describe_payment(shown: dict[str, Any]) -> str:
    lines = [f"payment {shown['payment_id']} (workflow {shown['workflow_status']})"]
    s = shown["status"]
    if s:
        method = s["method"]
        lines += [
            f"  {s['department']} {s['service_code']} {s['reference']} {format_aed(s['amount'])}",
            f"  state:       {s['state']}, waiting for {s['waiting_for']}",
            f"  step:        {s['doing']}",
            f"  since:       {utc(s['step_started_at'])}",
            f"  gives up at: {utc(s['gives_up_at'])}",
        ]
        if method:
            lines.append(f"  method:      {method['type']} {method.get('last4') or ''}".rstrip())
        flags = [k for k in ("cancel_requested", "compensating", "capture_decided") if s[k]]
        if s["failure_code"] or flags:
            lines.append(f"  failure:     {s['failure_code'] or '-'}  {' '.join(flags)}".rstrip())
    else:
        lines.append(f"  {shown['status_note']}")
    lines.append("pending calls:")
    pending = [PendingActivity(**p) for p in shown["pending_activities"]]
    lines += [f"  {p.line()}" for p in pending] or ["  none"]
    lines.append("audit trail:")
    trail = [
        (
            stamp(e["occurred_at"]),
            e["event"],
            f"{e['from_state'] or '-'} -> {e['to_state']}",
            e["actor"],
            e["detail"] or "",
        )
        for e in shown["events"]
    ]
    lines += [f"  {line}" for line in aligned(trail)]
    lines.append(shown["ui_url"])
    return "\n".join(lines)


def print_json(value: object) -> None:
    print(json.dumps(value, indent=2))
