"""Every recorded history in tests/histories/ replays on the current workflow code.

Payments live for up to 90 minutes and capture retries until it succeeds, a webhook delivery
for days, and sweeps and settlements are running whenever a deploy lands, so each deploy meets
running workflows. A workflow change that would make one of them nondeterministic fails
here, before it is released (docs/design.md, "Safe upgrades"). Every workflow type the
worker runs has at least one recorded history. They replay through the product's data
converter: payloads recorded in plaintext pass its decryption unchanged."""

from __future__ import annotations

import ast
import asyncio
import os
import re
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from epay.codec import PayloadKeys
from epay.temporal import data_converter
from tests.history_files import HISTORIES, read
from tests.support import ROOT, decoded_history_text
from workflows.payment import PaymentWorkflow
from workflows.refund import RefundWorkflow
from workflows.settlement import SettlementWorkflow
from workflows.sweeper import SweeperWorkflow
from workflows.webhook import WebhookDeliveryWorkflow

# The replayer has them all: the workflow type in each history picks its class.
WORKFLOWS = [
    PaymentWorkflow,
    RefundWorkflow,
    SweeperWorkflow,
    WebhookDeliveryWorkflow,
    SettlementWorkflow,
]
SCENARIOS = {
    "succeeded_e_dirham",
    "succeeded_3ds_card",
    "declined_card",
    "department_rejected",
    "cancelled_by_department",
    "expired",
    "stopped_mid_confirmation",
    "second_method_on_the_page",
    "confirmation_recorded_during_an_attempt",
    "cancel_during_a_challenge_void",
    "refund_card",
    "sweeper_terminated_challenge",
    "sweeper_capture_refused",
    "webhook_delivered_after_a_refusal",
    "settlement_day",
}
# The sandbox's card numbers the recorder pays with, and the fields a CVV or a PIN would
# come in: no workflow carries either.
CARD_DATA = re.compile(
    r'4242424242424242|4000000000000002|4000000000003220|7840000000000017|"cvv"|"pin"'
)


def test_the_required_scenarios_are_recorded() -> None:
    recorded = {path.stem.split("_", 1)[1] for path in HISTORIES}
    assert recorded >= SCENARIOS, SCENARIOS - recorded


def _workflows_the_worker_runs() -> set[str]:
    """The classes ``workers/main.py`` passes as ``workflows=[...]``."""
    tree = ast.parse((ROOT / "workers" / "main.py").read_text())
    found = {
        element.id
        for node in ast.walk(tree)
        if isinstance(node, ast.keyword) and node.arg == "workflows"
        if isinstance(node.value, ast.List)
        for element in node.value.elts
        if isinstance(element, ast.Name)
    }
    assert found, "no workflows=[...] found in workers/main.py"
    return found


def test_every_workflow_type_the_worker_runs_has_a_recorded_history() -> None:
    assert {w.__name__ for w in WORKFLOWS} == _workflows_the_worker_runs()
    types = {read(path).workflow_type for path in HISTORIES}
    missing = {w.__name__ for w in WORKFLOWS} - types
    assert not missing, f"no recorded history of {sorted(missing)}"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
def test_recorded_history_holds_no_card_data(path: Path) -> None:
    found = CARD_DATA.findall(decoded_history_text(path.read_text()))
    assert not found, f"{path.name} holds card data: {sorted(set(found))}"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
def test_recorded_history_replays_on_the_current_code(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    read(path)  # a whole history: it starts with the workflow's start

    async def replay() -> None:
        converter = data_converter(PayloadKeys.single("k1", os.urandom(32)))
        replayer = Replayer(workflows=WORKFLOWS, data_converter=converter)
        await replayer.replay_workflow(history)

    asyncio.run(replay())  # raises on any nondeterminism
