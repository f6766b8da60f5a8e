"""The figures of a phase: latency percentiles, history events, ratios, outcomes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from domain.states import PaymentState


def percentiles(seconds: Sequence[float]) -> dict[str, float | None]:
    """p50, p95 and p99 in milliseconds, by nearest rank."""
    ordered = sorted(seconds)

    def rank(p: int) -> float | None:
        if not ordered:
            return None
        return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000, 1)

    return {"p50": rank(50), "p95": rank(95), "p99": rank(99)}


def events_summary(counts: Sequence[int]) -> dict[str, float | int | None]:
    if not counts:
        return {"sampled": 0, "mean": None, "min": None, "max": None}
    return {
        "sampled": len(counts),
        "mean": round(sum(counts) / len(counts), 1),
        "min": min(counts),
        "max": max(counts),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


@dataclass
class Outcome:
    """One payment of a pipeline: how it ended, when, and its two latencies in seconds."""

    state: str
    method: str
    started: float  # the wall clock (time.time())
    ended: float
    create_to_reserved: float | None = None
    authorise_to_succeeded: float | None = None
    workflow_id: str | None = None


def phase_figures(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """What both pipelines report: counts, throughput and latencies."""
    ok = [o for o in outcomes if o.state == PaymentState.SUCCEEDED]
    seconds = max(o.ended for o in outcomes) - min(o.started for o in outcomes)
    ended_otherwise: dict[str, int] = {}
    for o in outcomes:
        if o.state != PaymentState.SUCCEEDED:
            ended_otherwise[o.state] = ended_otherwise.get(o.state, 0) + 1
    return {
        "payments": len(outcomes),
        "succeeded": len(ok),
        "ended_otherwise": ended_otherwise,
        "seconds": round(seconds, 2),
        "payments_per_second": round(len(ok) / seconds, 2) if seconds > 0 else None,
        "create_to_reserved_ms": percentiles(
            [o.create_to_reserved for o in ok if o.create_to_reserved is not None]
        ),
        "authorise_to_succeeded_ms": percentiles(
            [o.authorise_to_succeeded for o in ok if o.authorise_to_succeeded is not None]
        ),
    }
