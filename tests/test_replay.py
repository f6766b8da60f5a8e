"""Every recorded history in tests/histories/ replays on the current workflow code.

Payments live for up to 90 minutes and capture retries until it succeeds, so each deploy
meets running payments. A workflow change that would make one of them nondeterministic
fails here, before it is released (docs/design.md, "Safe upgrades"). They replay through the
product's data converter: payloads recorded in plaintext pass its decryption unchanged."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from epay.codec import PayloadKeys
from epay.temporal import data_converter
from workflows.payment import PaymentWorkflow
from workflows.refund import RefundWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
SCENARIOS = {
    "succeeded_e_dirham",
    "succeeded_3ds_card",
    "declined_card",
    "department_rejected",
    "cancelled_by_department",
    "expired",
    "stopped_mid_confirmation",
    "refund_card",
}


def test_the_required_scenarios_are_recorded() -> None:
    recorded = {path.stem.split("_", 1)[1] for path in HISTORIES}
    assert recorded >= SCENARIOS


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
def test_recorded_history_replays_on_the_current_code(path: Path) -> None:
    history = WorkflowHistory.from_json(f"payment-{path.stem}", path.read_text())
    assert json.loads(path.read_text())["events"][0]["eventType"] in (
        "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED",
        "WorkflowExecutionStarted",
    )

    async def replay() -> None:
        converter = data_converter(PayloadKeys.single("k1", os.urandom(32)))
        replayer = Replayer(workflows=[PaymentWorkflow, RefundWorkflow], data_converter=converter)
        await replayer.replay_workflow(history)

    asyncio.run(replay())  # raises on any nondeterminism
