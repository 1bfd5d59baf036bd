"""The state of a scenario played in a lab: `<lab>/session.json`, shared by every process.

`simlab run` writes it, `simlab check`, `simlab hint` and `simlab submit` (and the TUI, and the
instructor view) read and update it, so a session survives a crashed runner and can be judged
from another shell. Everything the trainee does also lands in the lab's journal (events.jsonl).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from simlab.runtime.lab import Lab


class SessionState(BaseModel):
    """One scenario session."""

    scenario_path: str
    scenario_id: str
    seed: int
    actor: str = "trainee"
    started_at: float | None = None
    refs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    baseline_config: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Each node's flattened config before any fault"
    )
    fault_keys: list[str] = Field(
        default_factory=list, description="'node:key' changed by faults (not the trainee's)"
    )
    baseline_counts: dict[str, int] = Field(default_factory=dict)
    fired: list[str] = Field(default_factory=list, description="Fault ids fired")
    activities_done: list[str] = Field(default_factory=list)
    revealed: list[str] = Field(default_factory=list)
    met: list[str] = Field(default_factory=list, description="Objectives seen met at a check")
    hints_taken: list[str] = Field(default_factory=list)
    answers: dict[str, str] = Field(default_factory=dict)
    submitted_at: float | None = None


def session_path(lab: Lab) -> Path:
    return lab.paths.root / "session.json"


def load_session(lab: Lab) -> SessionState | None:
    path = session_path(lab)
    if not path.exists():
        return None
    return SessionState.model_validate(json.loads(path.read_text(encoding="utf-8")))


def save_session(lab: Lab, state: SessionState) -> None:
    """Atomic write: another process reads the old or the new state, never half of one."""
    path = session_path(lab)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.model_dump(mode="json"), indent=2), encoding="utf-8")
    os.replace(tmp, path)
