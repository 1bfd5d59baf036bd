"""What a node console reads and changes, in one place: the node's admin API through the actions.

Every change (config, AE table, studies, queue, restart) is an action, so it is journalled with
its actor for scoring; the reads a trainee asks for (open a tab, refresh) are actions too (they
show the diagnosis in the timeline). Only the log's follow mode polls the admin API directly, so
a followed log does not flood the journal.

`ConsoleBackend` is the interface the console screen uses; `ActionsBackend` is the real one, and a
test can give the screen any object with the same methods (a static fake for snapshots).
"""

from __future__ import annotations

from typing import Any, Protocol

from simlab.client.admin import AdminApiError, path_part
from simlab.workflow.actions import ActionError, ActionResult


class ConsoleError(Exception):
    """A read the console needs failed; the text says why (shown as a notification)."""


class ConsoleBackend(Protocol):
    """What a node console needs from the lab."""

    node_id: str
    role: str
    """'pacs', 'ris', 'viewer', 'modality' or 'network'."""
    title: str
    """One line for the console's header: name, AE title, ports."""

    def config(self) -> dict[str, Any]: ...
    def ae_rows(self) -> list[dict[str, Any]]: ...
    def studies(self) -> list[dict[str, Any]]: ...
    def study(self, study_uid: str) -> dict[str, Any]: ...
    def dump(self, sop_uid: str) -> list[str]: ...
    def queue(self) -> list[dict[str, Any]]: ...
    def queue_entry(self, entry_id: int) -> dict[str, Any]: ...
    def log(self, lines: int, journal: bool) -> list[str]: ...

    def config_patch(self, patch: dict[str, Any]) -> ActionResult: ...
    def ae_put(self, row: dict[str, Any]) -> ActionResult: ...
    def ae_delete(self, ae_title: str) -> ActionResult: ...
    def study_delete(self, study_uid: str) -> ActionResult: ...
    def study_edit(self, study_uid: str, tags: dict[str, Any]) -> ActionResult: ...
    def queue_retry(self, entry_id: int | None) -> ActionResult: ...
    def queue_edit(self, entry_id: int, message: str) -> ActionResult: ...
    def queue_delete(self, entry_id: int) -> ActionResult: ...
    def restart(self) -> ActionResult: ...


class ActionsBackend:
    """The real backend: a session's actions (journalled with the session's actor)."""

    def __init__(self, session: Any, node_id: str) -> None:
        if getattr(session, "lab", None) is None or getattr(session, "actions", None) is None:
            raise ValueError("the session has no lab: start or attach one before a console")
        self.session = session
        self.lab = session.lab
        self.actions = session.actions
        entry = self.lab.manifest.node(node_id)
        self.node_id = node_id
        self.role = entry.role
        parts = [entry.display_name or node_id, f"({entry.role})"]
        if entry.ae_title:
            parts.append(f"AE {entry.ae_title}")
        if entry.dicom_port:
            parts.append(f"DICOM {entry.host}:{entry.dicom_port}")
        if entry.hl7_port:
            parts.append(f"HL7 {entry.hl7_port}")
        parts.append(f"admin {entry.admin_port}")
        self.title = "  ".join(parts)

    # ------------------------------------------------------------------------------ running
    def _act(self, name: str, **args: Any) -> ActionResult:
        """Run an action; an action that cannot run as asked comes back as a failed result."""
        try:
            return self.actions.run({"action": name, "node": self.node_id, **args})
        except ActionError as exc:
            return ActionResult(name, False, str(exc), None, args)

    def _read(self, name: str, **args: Any) -> Any:
        result = self._act(name, **args)
        if not result.ok:
            raise ConsoleError(result.text)
        return result.data

    # -------------------------------------------------------------------------------- reads
    def config(self) -> dict[str, Any]:
        return dict(self._read("config.get"))

    def ae_rows(self) -> list[dict[str, Any]]:
        return list(self._read("ae.list"))

    def studies(self) -> list[dict[str, Any]]:
        return list(self._read("studies.list", limit=1000))

    def study(self, study_uid: str) -> dict[str, Any]:
        return dict(self._read("api", path=f"/studies/{path_part(study_uid)}"))

    def dump(self, sop_uid: str) -> list[str]:
        answer = self._read("api", path=f"/instances/{path_part(sop_uid)}/dump")
        return list(answer.get("lines", []))

    def queue(self) -> list[dict[str, Any]]:
        return list(self._read("queue.list")["items"])

    def queue_entry(self, entry_id: int) -> dict[str, Any]:
        return dict(self._read("api", path=f"/queue/{entry_id}"))

    def log(self, lines: int, journal: bool) -> list[str]:
        """The end of the node log; `journal` False for follow-mode polling (not journalled)."""
        if journal:
            answer = self._read("api", path="/log", query={"lines": lines})
        else:
            try:
                answer = self.lab.client(self.node_id, timeout=5.0).get("/log", lines=lines)
            except AdminApiError as exc:
                raise ConsoleError(str(exc)) from None
        return list(answer.get("lines", []))

    # ------------------------------------------------------------------------------ changes
    def config_patch(self, patch: dict[str, Any]) -> ActionResult:
        return self._act("config.patch", patch=patch)

    def ae_put(self, row: dict[str, Any]) -> ActionResult:
        return self._act("ae.put", **row)

    def ae_delete(self, ae_title: str) -> ActionResult:
        return self._act("ae.delete", ae_title=ae_title)

    def study_delete(self, study_uid: str) -> ActionResult:
        return self._act("study.delete", study_uid=study_uid)

    def study_edit(self, study_uid: str, tags: dict[str, Any]) -> ActionResult:
        return self._act("study.edit", study_uid=study_uid, tags=tags)

    def queue_retry(self, entry_id: int | None) -> ActionResult:
        return self._act("queue.retry", **({"id": entry_id} if entry_id is not None else {}))

    def queue_edit(self, entry_id: int, message: str) -> ActionResult:
        return self._act("queue.edit", id=entry_id, message=message)

    def queue_delete(self, entry_id: int) -> ActionResult:
        return self._act("queue.delete", id=entry_id)

    def restart(self) -> ActionResult:
        return self._act("node.restart")


def merge_patch(old: Any, new: Any) -> Any:
    """The RFC 7386 merge patch that turns `old` into `new` (objects key by key, null deletes,
    anything else — lists included — replaces)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {}
    for key in old:
        if key not in new:
            patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = merge_patch(old[key], value)
    return patch


def describe_failure(result: ActionResult) -> list[str]:
    """A failed action as lines for people: its text, then each field the node refused."""
    lines = [result.text]
    if isinstance(result.data, list):
        for item in result.data:
            if isinstance(item, dict) and "loc" in item:
                lines.append(f"  {item.get('loc')}: {item.get('msg')}")
    return lines
