"""HL7 toolbox helpers: message templates, a segment/field reader and the message inspector.

The templates are what a RIS or a HIS sends to the PACS (IHE RAD-1/12/4): ADT^A04 register,
ADT^A08 update, ADT^A40 merge and ORM^O01 new order, dated today, addressed by default to the
PACS's configured HL7 application/facility (MSH-5/MSH-6, which it checks: a wrong one is AR 103).
The inspector shows any message (sent or ACK) as a tree: segment -> field (PID-5) -> components.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from simlab.common.hl7_messages import ErrorCode

TEMPLATES = ("ADT^A04", "ADT^A08", "ADT^A40", "ORM^O01")
"""The message kinds the toolbox composes."""


@dataclass(frozen=True)
class Addressing:
    """Who sends and who receives (MSH-3..6) and the patient/order the template is about."""

    receiving_application: str = "SIMLAB_PACS"
    receiving_facility: str = "RADIOLOGY"
    sending_application: str = "ADMIN_WS"
    sending_facility: str = "RADIOLOGY"
    patient_id: str = "TBX0001"
    patient_name: str = "TOOLBOX^TEST"
    prior_patient_id: str = "TBX0000"
    accession: str = "TBXACC0001"
    modality: str = "CT"


def compose(kind: str, who: Addressing, now: datetime, control_id: str | None = None) -> str:
    """A template message of `kind` (one of TEMPLATES), segments separated by newlines."""
    stamp = now.strftime("%Y%m%d%H%M%S")
    ctrl = control_id or f"TBX{now.strftime('%H%M%S')}"
    event = kind.split("^")[1]
    structure = {"A40": "ADT_A39", "O01": "ORM_O01"}.get(event, "ADT_A01")
    msh = (
        f"MSH|^~\\&|{who.sending_application}|{who.sending_facility}|"
        f"{who.receiving_application}|{who.receiving_facility}|{stamp}||{kind}^{structure}|"
        f"{ctrl}|P|2.5.1|||AL|NE||UNICODE UTF-8"
    )
    pid = f"PID|1||{who.patient_id}^^^HOSP^MR||{who.patient_name}||19700101|M"
    if kind == "ORM^O01":
        acc = who.accession
        segments = [
            msh,
            pid,
            "PV1|1|O",
            f"ORC|NW|PL-{acc}|FL-{acc}||SC||||{stamp}",
            f"OBR|1|PL-{acc}|FL-{acc}|CT123^CT Head^L|||{stamp}|||||||||||{acc}|RP-{acc}|"
            f"SPS-{acc}||||{who.modality}",
        ]
    elif kind == "ADT^A40":
        segments = [msh, f"EVN|A40|{stamp}", pid, f"MRG|{who.prior_patient_id}^^^HOSP^MR"]
    else:
        segments = [msh, f"EVN|{event}|{stamp}", pid, "PV1|1|O"]
    return "\n".join(segments)


def split_segments(message: str) -> list[str]:
    """Segments of a message whatever separates them (CR, LF or CRLF)."""
    return [s for s in re.split(r"\r\n|\r|\n", message.strip()) if s.strip()]


def to_wire(message: str) -> str:
    """The message as sent over MLLP: segments separated by CR."""
    return "\r".join(split_segments(message)) + "\r"


@dataclass(frozen=True)
class Field:
    """One field of a segment, numbered as people name it (PID-5; MSH-1 is the separator)."""

    segment: str
    number: int
    value: str
    components: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.segment}-{self.number}"


@dataclass(frozen=True)
class Segment:
    name: str
    index: int
    """1-based position in the message."""
    text: str
    fields: tuple[Field, ...]


def read_message(message: str) -> list[Segment]:
    """Segments and their fields; MSH is numbered so MSH-3 is the sending application."""
    segments = split_segments(message)
    separator = "|"
    component = "^"
    if segments and segments[0].startswith("MSH") and len(segments[0]) > 4:
        separator = segments[0][3]
        component = segments[0][4:5] or "^"
    out = []
    for index, text in enumerate(segments, 1):
        name = text[:3]
        parts = text.split(separator)
        fields: list[Field] = []
        if name == "MSH":
            fields.append(Field(name, 1, separator, (separator,)))
            encoding = parts[1] if len(parts) > 1 else ""
            fields.append(Field(name, 2, encoding, (encoding,)))
            rest = [(n + 3, v) for n, v in enumerate(parts[2:])]
        else:
            rest = [(n + 1, v) for n, v in enumerate(parts[1:])]
        for number, value in rest:
            fields.append(Field(name, number, value, tuple(value.split(component))))
        out.append(Segment(name, index, text, tuple(fields)))
    return out


def field_value(message: str, label: str) -> str:
    """The value of a field named like 'MSH-5' or 'PID-5' (first such segment), '' if absent."""
    name, _, number = label.partition("-")
    for segment in read_message(message):
        if segment.name == name:
            for f in segment.fields:
                if str(f.number) == number:
                    return f.value
    return ""


def error_meaning(code: int | None) -> str:
    """The table 0357 text of an ERR-3 code, e.g. 103 -> 'Table value not found'."""
    if code is None:
        return ""
    try:
        return ErrorCode(code).text
    except ValueError:
        return "not in table 0357"


ACK_MEANING = {
    "AA": ("Application Accept", "green"),
    "AE": ("Application Error", "yellow"),
    "AR": ("Application Reject", "red"),
    "CA": ("Commit Accept", "green"),
    "CE": ("Commit Error", "yellow"),
    "CR": ("Commit Reject", "red"),
}
"""MSA-1 (HL7 table 0008) and the colour the toolbox shows it in."""


class Hl7Inspector(Tree[str]):
    """A message as a tree: segment -> numbered field (with its value) -> components."""

    DEFAULT_CSS = """
    Hl7Inspector { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("(no message)", id=id)
        self.show_root = True

    def show(self, message: str, title: str = "message") -> None:
        """Replace the tree with `message`; segments expanded, fields collapsed."""
        self.clear()
        segments = read_message(message)
        self.root.set_label(Text(f"{title} ({len(segments)} segments)", style="bold"))
        for segment in segments:
            seg_node = self.root.add(Text(f"{segment.index:>2} {segment.name}", style="bold"))
            for f in segment.fields:
                if not f.value:
                    continue
                self._add_field(seg_node, f)
            seg_node.expand()
        self.root.expand()

    @staticmethod
    def _add_field(parent: TreeNode[str], f: Field) -> None:
        label = Text.assemble((f"{f.label:<7}", "bold cyan"), " ", f.value)
        separators = f.segment == "MSH" and f.number <= 2
        if len(f.components) > 1 and not separators:
            node = parent.add(label, data=f.value)
            for n, comp in enumerate(f.components, 1):
                if comp:
                    node.add_leaf(Text.assemble((f"{f.label}.{n}", "cyan"), " ", comp), data=comp)
            return
        parent.add_leaf(label, data=f.value)
