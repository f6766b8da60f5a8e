"""The patch ids ePay's workflows still carry, and when each may take its next step.

A change that alters the commands a running workflow issues is guarded by a patch id
(docs/design.md, "Safe upgrades"): ``workflow.patched(id)`` keeps the old branch for the runs
started before it. A patch retires in two steps, each its own release:

1. Once no run started before the patch can be running, the old branch goes and
   ``workflow.patched`` becomes ``workflow.deprecate_patch``: new runs still write the
   marker (flagged deprecated), so that the runs started on the patched release replay.
2. Once no run started before that release can be running either (none with an unflagged
   marker is left), the call itself goes, and its entry here: runs whose marker is flagged
   deprecated replay on code without the call.

Before either step, an operator checks that nothing older is running: ``temporal workflow
count --query "WorkflowType = '<type>' AND ExecutionStatus = 'Running' AND StartTime <
'<when the release the step retires was deployed>'"`` must answer 0.

Every patch call in ``workflows/`` names an entry here, and each entry has recorded
histories on both sides of it in ``tests/histories/`` (``tests/test_patches.py``): a live
patch, one of its workflow type without its marker and one with it; a deprecated one, one
with its marker unflagged (recorded while it was live) and one with it flagged. The patch ids
are constants here, which the workflow modules import.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Step(StrEnum):
    """Where a patch is in its retirement."""

    LIVE = "live"  # workflow.patched(id): the old branch is still in the code
    DEPRECATED = "deprecated"  # workflow.deprecate_patch(id): the old branch is gone


@dataclass(frozen=True)
class Patch:
    id: str
    workflow: str  # the workflow type whose code calls it
    step: Step
    guards: str  # the change, as the runs started before it would meet it
    introduced: str  # the change that added it
    next_step: str  # the release that may take the next step, and on what condition


SWEEP_REFUNDS = "sweep-refunds"
CONFIRMATION_WINS = "recorded-confirmation-wins"
REVOKE_OWED_AT_CLOSE = "revoke-owed-at-close"
CANCEL_DURING_CHALLENGE_VOID = "cancel-during-challenge-void"
SWEEP_FINAL_REFUSALS = "sweep-final-refusals"

_AFTER_PAYMENTS_DRAIN = (
    "deprecate by any release after the one that added it, once no payment started before "
    "that release is running (a payment lives for its window, 90 minutes, plus the retries "
    "of its capture or revocation; the temporal workflow count query above must answer 0)"
)

PATCHES: tuple[Patch, ...] = (
    Patch(
        id=SWEEP_FINAL_REFUSALS,
        workflow="SweeperWorkflow",
        step=Step.LIVE,
        guards=(
            "a capture the partner refuses for good ends the stranded payment failed "
            "(capture_failed) with its compensation, and a void refused for good is recorded "
            "(void_refused) and the payment ends, instead of the sweep erroring on it every "
            "run; the marker is written only when a sweep meets such a refusal"
        ),
        introduced="the recovery layer (defect 3 of the recovery issue)",
        next_step=(
            "deprecate by any release after the one that added it, once no sweep started "
            "before that release is running (a sweep lasts minutes)"
        ),
    ),
    Patch(
        id=CONFIRMATION_WINS,
        workflow="PaymentWorkflow",
        step=Step.LIVE,
        guards=(
            "a confirmation an operator recorded while a department attempt was in flight "
            "wins over that attempt's end without an answer (no answer by the deadline, a "
            "final error): the payment captures instead of failing department_unavailable; "
            "the marker is written only when such a confirmation meets such an end"
        ),
        introduced="the recovery layer (defect 2 of the recovery issue)",
        next_step=_AFTER_PAYMENTS_DRAIN,
    ),
    Patch(
        id=REVOKE_OWED_AT_CLOSE,
        workflow="PaymentWorkflow",
        step=Step.LIVE,
        guards=(
            "a revocation still owed to the department when a payment ends unpaid is recorded "
            "by close_unpaid in the end state's transaction, instead of by a record_note "
            "local activity after it; written by every compensation after the department "
            "was asked"
        ),
        introduced="the recovery layer (defect 4 of the recovery issue)",
        next_step=_AFTER_PAYMENTS_DRAIN,
    ),
    Patch(
        id=CANCEL_DURING_CHALLENGE_VOID,
        workflow="PaymentWorkflow",
        step=Step.LIVE,
        guards=(
            "a Temporal cancel that stops the void of a failed 3-D Secure challenge runs the "
            "cancel's compensation (void, close cancelled_by_operator) instead of failing the "
            "workflow; the marker is written only when such a cancel lands"
        ),
        introduced="the recovery layer (defect 5 of the recovery issue)",
        next_step=_AFTER_PAYMENTS_DRAIN,
    ),
    Patch(
        id=SWEEP_REFUNDS,
        workflow="SweeperWorkflow",
        step=Step.DEPRECATED,
        guards=(
            "a sweep restarts the workflow of every pending refund whose workflow closed "
            "without it (activity restart_stranded_refunds after the payments' sweep)"
        ),
        introduced="commit 5e94250 (Sweeper: a pending refund whose workflow closed ...)",
        next_step=(
            "deprecated (old branch removed) in the release that ships this registry; the "
            "call may be deleted by any release after that one, once no sweep started before "
            "that one was deployed is running (a sweep lasts minutes and the schedule skips "
            "a sweep while one runs; manual sweeps count too). The sweeper histories recorded "
            "while the patch was live (marker not flagged) go with the call"
        ),
    ),
)


def live() -> tuple[Patch, ...]:
    return tuple(p for p in PATCHES if p.step is Step.LIVE)


def by_id(patch_id: str) -> Patch:
    for patch in PATCHES:
        if patch.id == patch_id:
            return patch
    raise KeyError(patch_id)
