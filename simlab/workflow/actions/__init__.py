"""Every action an administrator can take in the lab, one engine for the CLI, the TUI and
scenario reference solutions; each action is journalled in the lab's event log.

    actions = Actions(lab, actor="trainee")
    actions.ae_put(node="pacs", ae_title="CT_1", host="127.0.0.1", port=4101)
    run_action(lab, "reference", {"action": "dicom.echo", "from": "ct-1", "to": "pacs"})
"""

from __future__ import annotations

from typing import Any

from simlab.runtime.lab import Lab
from simlab.workflow.actions.admin import AdminActions
from simlab.workflow.actions.data import DataActions
from simlab.workflow.actions.dicom import DicomActions
from simlab.workflow.actions.engine import (
    ACTIONS,
    ActionError,
    ActionFailed,
    ActionResult,
    ActionSpec,
)


class Actions(AdminActions, DicomActions, DataActions):
    """All actions, bound to one lab and one actor (who is journalled as having done them)."""


def run_action(lab: Lab, actor: str, step: dict[str, Any]) -> ActionResult:
    """Run one action step as a scenario writes it: {"action": "ae.put", "node": ..., ...}.

    Returns the result (ok False when the action ran and failed); raises ActionError when the
    step cannot run as written (unknown action, wrong arguments, unknown node).
    """
    return Actions(lab, actor).run(step)


__all__ = [
    "ACTIONS",
    "ActionError",
    "ActionFailed",
    "ActionResult",
    "ActionSpec",
    "Actions",
    "run_action",
]
