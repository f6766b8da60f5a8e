"""Every patch is in the registry (workflows/patches.py), and every registry entry has
recorded histories on both sides of it (docs/design.md, "Safe upgrades").

The sides depend on the patch's step. A live patch (``workflow.patched``) keeps an old
branch for the runs started before it: one history of its workflow type without its marker
(recorded before it) and one with it, both replayed by tests/test_replay.py, show that both
branches still replay. A deprecated patch (``workflow.deprecate_patch``) has lost its old
branch, so runs started before it no longer replay, by design: the registry's condition for
the step is that none is running. What must replay then are the runs started on the
release that had it live (its marker not flagged: they may be running when the deprecation
deploys) and the runs started on the deprecating release (its marker flagged: the next step,
deleting the call, must replay them). So a deprecated patch needs one history of each.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from tests.history_files import Recorded, recorded
from workflows import patches
from workflows.patches import PATCHES, Patch, Step

WORKFLOWS = Path(patches.__file__).parent
WITHOUT = "without its marker (recorded before it)"
WITH = "with its marker"
UNFLAGGED = "with its marker not flagged deprecated (recorded while it was live)"
FLAGGED = "with its marker flagged deprecated (recorded on the deprecating code)"


def sides(patch: Patch) -> dict[str, Callable[[Recorded], bool]]:
    if patch.step is Step.LIVE:
        return {
            WITHOUT: lambda r: patch.id not in r.markers,
            WITH: lambda r: r.markers.get(patch.id) is False,
        }
    return {
        UNFLAGGED: lambda r: r.markers.get(patch.id) is False,
        FLAGGED: lambda r: r.markers.get(patch.id) is True,
    }


def missing_sides(patch: Patch, histories: Iterable[Recorded]) -> list[str]:
    """The sides of ``patch`` that no history of its workflow type is on."""
    of_its_type = [h for h in histories if h.workflow_type == patch.workflow]
    return [side for side, on_it in sides(patch).items() if not any(map(on_it, of_its_type))]


@pytest.mark.parametrize("patch", PATCHES, ids=[p.id for p in PATCHES])
def test_each_patch_has_recorded_histories_on_both_sides(patch: Patch) -> None:
    histories = recorded()
    missing = missing_sides(patch, histories)
    mine = sorted(
        f"{h.name} ({'flagged' if h.markers[patch.id] else 'unflagged'})"
        for h in histories
        if patch.id in h.markers
    )
    assert not missing, (
        f"patch {patch.id} ({patch.step}) has no recorded {patch.workflow} history "
        f"{' nor '.join(missing)}: record one on that side's code (docs/design.md, "
        f"'Recorded histories'); histories with its marker: {mine or 'none'}"
    )


def test_the_check_fails_for_a_patch_without_histories() -> None:
    """The check above can fail: an id no history holds, a patch whose histories are of
    another type, and a deprecated patch recorded only with its marker flagged."""
    histories = recorded()
    assert histories, "no recorded histories"
    unknown = Patch("no-such-patch", "SweeperWorkflow", Step.LIVE, "", "", "")
    assert missing_sides(unknown, histories) == [WITH]
    elsewhere = Patch(patches.SWEEP_REFUNDS, "PaymentWorkflow", Step.DEPRECATED, "", "", "")
    assert missing_sides(elsewhere, histories) == [UNFLAGGED, FLAGGED]
    only_flagged = [h for h in histories if h.markers.get(patches.SWEEP_REFUNDS) is not False]
    sweep_refunds = patches.by_id(patches.SWEEP_REFUNDS)
    assert missing_sides(sweep_refunds, only_flagged) == [UNFLAGGED]


# --- the calls in the code --------------------------------------------------------------


def _resolve(node: ast.expr, namespace: dict[str, Any]) -> Any:
    """A patch id as the call names it: a string, a constant, or module.CONSTANT."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return namespace[node.id]
    if isinstance(node, ast.Attribute):
        return getattr(_resolve(node.value, namespace), node.attr)
    raise AssertionError(f"a patch id written as {ast.unparse(node)}")


def _workflow_name(cls: ast.ClassDef) -> str | None:
    """The type ``@workflow.defn`` (or ``@workflow.defn(name=...)``) gives the class."""
    for decorator in cls.decorator_list:
        call = decorator if isinstance(decorator, ast.Call) else None
        target = call.func if call else decorator
        if ast.unparse(target) != "workflow.defn":
            continue
        for keyword in call.keywords if call else []:
            if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                return str(keyword.value.value)
        return cls.name
    return None


def patch_calls() -> list[tuple[str, str, Step, str]]:
    """(workflow type, patch id, step its call says, where) for every patch call in
    workflows/."""
    found = []
    for path in sorted(WORKFLOWS.glob("*.py")):
        tree = ast.parse(path.read_text())
        namespace = vars(importlib.import_module(f"workflows.{path.stem}"))
        owner = {
            id(node): name
            for cls in ast.walk(tree)
            if isinstance(cls, ast.ClassDef) and (name := _workflow_name(cls))
            for node in ast.walk(cls)
        }
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            call = ast.unparse(node.func)
            if call not in ("workflow.patched", "workflow.deprecate_patch"):
                continue
            step = Step.LIVE if call == "workflow.patched" else Step.DEPRECATED
            where = f"{path.name}:{node.lineno}"
            patch_id = _resolve(node.args[0], namespace)
            found.append(
                (owner.get(id(node), f"no workflow class ({where})"), patch_id, step, where)
            )
    return found


def test_every_patch_call_is_in_the_registry_as_it_stands() -> None:
    calls = patch_calls()
    assert calls, "no patch call found in workflows/: is the scan broken?"
    registry = {(p.workflow, p.id, p.step) for p in PATCHES}
    unregistered = [c for c in calls if c[:3] not in registry]
    assert not unregistered, (
        f"patch calls that workflows/patches.py does not list with that workflow type and "
        f"step: {unregistered}"
    )
    called = {c[:3] for c in calls}
    stale = [p.id for p in PATCHES if (p.workflow, p.id, p.step) not in called]
    assert not stale, f"registry entries that no call in workflows/ makes any more: {stale}"
    ids = [p.id for p in PATCHES]
    assert len(ids) == len(set(ids)), f"a patch id listed twice: {ids}"
