"""What the toolbox and instructor screens need from the TUI's session, and small shared bits."""

from __future__ import annotations

import json
from typing import Any, Protocol

from simlab.runtime.lab import Lab
from simlab.scenarios.engine import ScenarioRun
from simlab.workflow.actions import ActionResult, Actions


class ToolboxSession(Protocol):
    """The running lab, the journalled actions bound to the user's actor, the scenario if any."""

    @property
    def lab(self) -> Lab | None: ...

    @property
    def actions(self) -> Actions | None: ...

    @property
    def actor(self) -> str: ...

    @property
    def run(self) -> ScenarioRun | None: ...


def bound(session: ToolboxSession) -> tuple[Lab, Actions]:
    """The session's lab and actions; ValueError when no lab is attached yet."""
    if session.lab is None or session.actions is None:
        raise ValueError("start or attach a lab first")
    return session.lab, session.actions


def compact(value: Any, limit: int = 60) -> str:
    """One short line of JSON for a table cell."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_key_values(text: str) -> dict[str, str]:
    """'PatientName=DOE*' lines -> dict; blank lines and '#' comments skipped.

    Raises ValueError naming the line that has no '='.
    """
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"query line {number}: expected key=value, got {line!r}")
        out[key.strip()] = value.strip()
    return out


def result_style(result: ActionResult) -> str:
    return "green" if result.ok else "red"
