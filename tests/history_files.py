"""The recorded histories in tests/histories/, read as files: which workflow type each is
of and which patch markers it holds (tests/test_replay.py, tests/test_patches.py)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
PATCH_MARKER = "core_patch"  # the SDK's marker name for workflow.patched / deprecate_patch


@dataclass(frozen=True)
class Recorded:
    path: Path
    workflow_type: str
    markers: dict[str, bool]  # patch id -> whether its marker is flagged deprecated

    @property
    def name(self) -> str:
        return self.path.name


def _is(event: dict[str, Any], kind: str) -> bool:
    """Event types as the CLI and the SDK write them: EVENT_TYPE_MARKER_RECORDED, or
    MarkerRecorded."""
    camel = "".join(word.capitalize() for word in kind.split("_"))
    return event["eventType"] in (f"EVENT_TYPE_{kind}", camel)


def read(path: Path) -> Recorded:
    events = json.loads(path.read_text())["events"]
    started = events[0]
    assert _is(started, "WORKFLOW_EXECUTION_STARTED"), f"{path.name} starts with {started}"
    workflow_type = started["workflowExecutionStartedEventAttributes"]["workflowType"]["name"]
    markers: dict[str, bool] = {}
    for event in events:
        if not _is(event, "MARKER_RECORDED"):
            continue
        attributes = event["markerRecordedEventAttributes"]
        if attributes["markerName"] != PATCH_MARKER:
            continue
        [payload] = attributes["details"]["patch-data"]["payloads"]
        data = json.loads(base64.b64decode(payload["data"]))
        markers[data["id"]] = bool(data.get("deprecated", False))
    return Recorded(path, workflow_type, markers)


def recorded(paths: Iterable[Path] = HISTORIES) -> list[Recorded]:
    return [read(path) for path in paths]
