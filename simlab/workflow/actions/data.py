"""Data actions: studies in an archive, messages in a queue, an HL7 message sent by hand.

The RIS's outbound HL7 queue and a modality's C-STORE send queue look alike to an administrator
(list, retry, delete, fix) but their consoles differ: the RIS retries, edits and deletes one
entry at a time (`POST /queue/{id}/retry`, `PUT /queue/{id}`), the modality retries failed
images in bulk (`POST /queue/retry {"ids"}`) and its images cannot be edited. The actions map
one vocabulary onto both.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from simlab.client import hl7_client
from simlab.client.admin import path_part
from simlab.workflow.actions.engine import (
    ActionArgs,
    ActionError,
    ActionsBase,
    NodeArgs,
    Outcome,
    action,
)

RIS_RETRYABLE = ("dead",)
"""RIS queue states `queue.retry` without an id sends again (pending ones are on their way)."""
_FIELD_RE = re.compile(r"^([A-Z][A-Z0-9]{2})-(\d+)(?:\.(\d+))?$")


class StudiesArgs(NodeArgs):
    accession: str | None = None
    patient_id: str | None = None
    limit: int = Field(default=100, ge=1, le=10_000)


class StudyArgs(NodeArgs):
    study_uid: str = Field(min_length=1, max_length=64)


class StudyEditArgs(StudyArgs):
    tags: dict[str, Any] = Field(min_length=1)
    """Keyword -> new value, e.g. {"PatientID": "MRN-1"}."""


class QueueListArgs(NodeArgs):
    state: str | None = None


class QueueRetryArgs(NodeArgs):
    id: int | None = None
    """One entry; every failed entry when absent."""


class QueueItemArgs(NodeArgs):
    id: int


class QueueEditArgs(QueueItemArgs):
    message: str | None = None
    """The whole new message text (segments on lines or separated by CR)."""
    changes: dict[str, str] | None = None
    """Field edits, e.g. {"MSH-5": "SIMLAB_PACS", "PID-3": "MRN-1", "PID-5.1": "DOE"}."""

    @model_validator(mode="after")
    def _one(self) -> QueueEditArgs:
        if (self.message is None) == (self.changes is None):
            raise ValueError("give exactly one of message or changes")
        return self


class Hl7SendArgs(ActionArgs):
    """Where to send: `to` a node of the lab, or `host` + `port` (an address the user typed)."""

    to: str | None = Field(default=None, min_length=1)
    """A node id with an HL7 listener (pacs, ris)."""
    host: str | None = Field(default=None, min_length=1, max_length=255)
    port: int | None = Field(default=None, ge=1, le=65535)
    message: str = Field(min_length=8)
    timeout: float = Field(default=10.0, gt=0, le=120)

    @model_validator(mode="after")
    def _one_destination(self) -> Hl7SendArgs:
        address = self.host is not None or self.port is not None
        if self.to is not None and address:
            problem = "give either to (a node id) or host and port, not both"
        elif self.to is None and not address:
            problem = "give to (a node id) or host and port"
        elif self.to is None and (self.host is None or self.port is None):
            problem = "give both host and port"
        else:
            return self
        raise PydanticCustomError("destination", problem)


def edit_fields(message: str, changes: dict[str, str]) -> str:
    """Apply 'SEG-n[.c]' edits to the first segment of each name (MSH-n counts MSH-1, the
    field separator, as HL7 does)."""
    segments = [s for s in re.split(r"\r\n|\r|\n", message) if s]
    if not segments or not segments[0].startswith("MSH"):
        raise ActionError("the queued message does not start with MSH")
    sep, comp = segments[0][3], segments[0][4]
    for key, value in changes.items():
        m = _FIELD_RE.match(key)
        if not m:
            raise ActionError(f"{key!r}: write a field as SEG-n or SEG-n.c, e.g. PID-3")
        name, number, component = m.group(1), int(m.group(2)), m.group(3)
        index = next((i for i, s in enumerate(segments) if s.startswith(name + sep)), None)
        if index is None:
            raise ActionError(f"the message has no {name} segment")
        fields = segments[index].split(sep)
        pos = number - 1 if name == "MSH" else number
        if pos < 1:
            raise ActionError(f"{key}: MSH-1 and MSH-2 cannot be edited")
        fields.extend([""] * (pos + 1 - len(fields)))
        if component:
            parts = fields[pos].split(comp)
            c = int(component)
            parts.extend([""] * (c - len(parts)))
            parts[c - 1] = value
            fields[pos] = comp.join(parts)
        else:
            fields[pos] = value
        segments[index] = sep.join(fields)
    return "\r".join(segments) + "\r"


class DataActions(ActionsBase):
    """studies.list, study.delete, study.edit, queue.*, hl7.send."""

    @action("studies.list", StudiesArgs)
    def studies_list(self, a: StudiesArgs) -> Outcome:
        """List the studies a node holds (PACS archive, viewer cache)."""
        rows = self.client(a.node).get(
            "/studies", accession=a.accession, patient_id=a.patient_id, limit=a.limit
        )
        return Outcome(rows, f"{a.node}: {len(rows)} stud{'y' if len(rows) == 1 else 'ies'}")

    @action("study.delete", StudyArgs)
    def study_delete(self, a: StudyArgs) -> Outcome:
        """Delete a study (its files and index rows)."""
        answer = self.client(a.node).delete(f"/studies/{path_part(a.study_uid)}")
        count = answer.get("instances", "?") if isinstance(answer, dict) else "?"
        return Outcome(answer, f"{a.node}: study {a.study_uid} deleted ({count} instances)")

    @action("study.edit", StudyEditArgs)
    def study_edit(self, a: StudyEditArgs) -> Outcome:
        """Correct tags of a stored study (PATCH /studies/{uid} with keyword -> value)."""
        answer = self.client(a.node).patch(f"/studies/{path_part(a.study_uid)}", a.tags)
        changed = ", ".join(f"{k}={v}" for k, v in a.tags.items())
        return Outcome(answer, f"{a.node}: study {a.study_uid} edited ({changed})")

    # ------------------------------------------------------------------------------- queues
    def _queue_role(self, node: str) -> str:
        role = self.entry(node).role
        if role not in ("ris", "modality"):
            raise ActionError(f"{node} ({role}) has no send queue; the RIS and modalities do")
        return role

    @action("queue.list", QueueListArgs)
    def queue_list(self, a: QueueListArgs) -> Outcome:
        """List a node's outbound queue (RIS HL7 messages, modality images)."""
        role = self._queue_role(a.node)
        answer = self.client(a.node).get("/queue", state=a.state)
        items = answer if role == "ris" else answer.get("items", [])
        counts: dict[str, int] = {}
        for item in items:
            counts[item["state"]] = counts.get(item["state"], 0) + 1
        shown = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        return Outcome(
            {"items": items, "counts": counts}, f"{a.node}: {len(items)} queued ({shown or '-'})"
        )

    @action("queue.retry", QueueRetryArgs)
    def queue_retry(self, a: QueueRetryArgs) -> Outcome:
        """Send again one queue entry, or every failed one."""
        client = self.client(a.node)
        if self._queue_role(a.node) == "modality":
            answer = client.post("/queue/retry", {"ids": [a.id]} if a.id is not None else {})
            return Outcome(answer, f"{a.node}: {answer.get('retried', 0)} item(s) queued again")
        ids = (
            [a.id]
            if a.id is not None
            else [e["id"] for s in RIS_RETRYABLE for e in client.get("/queue", state=s)]
        )
        done = [client.post(f"/queue/{i}/retry") for i in ids]
        return Outcome(done, f"{a.node}: {len(done)} message(s) queued again")

    @action("queue.delete", QueueItemArgs)
    def queue_delete(self, a: QueueItemArgs) -> Outcome:
        """Delete one queue entry (it is never sent)."""
        self._queue_role(a.node)
        answer = self.client(a.node).delete(f"/queue/{a.id}")
        return Outcome(answer, f"{a.node}: queue entry {a.id} deleted")

    @action("queue.edit", QueueEditArgs)
    def queue_edit(self, a: QueueEditArgs) -> Outcome:
        """Fix a queued HL7 message (whole text or some fields) and make it pending again."""
        if self._queue_role(a.node) == "modality":
            raise ActionError(
                f"queue.edit: {a.node}'s queue holds images, which cannot be edited; "
                "retry or delete them"
            )
        client = self.client(a.node)
        message = a.message
        if a.changes is not None:
            entry = client.get(f"/queue/{a.id}")
            message = edit_fields(entry["message"], a.changes)
        answer = client.put(f"/queue/{a.id}", {"message": message})
        what = ", ".join(a.changes) if a.changes else "message replaced"
        return Outcome(answer, f"{a.node}: queue entry {a.id} edited ({what})")

    # ---------------------------------------------------------------------------------- HL7
    @action("hl7.send", Hl7SendArgs)
    def hl7_send(self, a: Hl7SendArgs) -> Outcome:
        """Send one HL7 message over MLLP (to a node, or to host and port) and read the ACK."""
        if a.to is not None:
            entry = self.entry(a.to)
            if not entry.hl7_port:
                raise ActionError(f"{a.to} has no HL7 listener")
            host, port, where = entry.host, entry.hl7_port, a.to
        else:
            assert a.host is not None and a.port is not None  # the model checked
            host, port, where = a.host, a.port, f"{a.host}:{a.port}"
        r = hl7_client.send(host, port, a.message, a.timeout)
        return Outcome(r.as_dict(), f"HL7 to {where}: {r.text}", ok=r.ok)
