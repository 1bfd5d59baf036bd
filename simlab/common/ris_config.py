"""The RIS node's configuration model (IHE Order Filler / ADT / Department System Scheduler).

Built on the shared base models of `simlab.common.config`: the RIS has the same identity, admin
API, DICOM and HL7 listener settings as every node, plus what only an Order Filler has: where
its outbound HL7 goes (the PACS's MLLP port and MSH-5/MSH-6), how its persistent outbound queue
retries, and how it numbers what it generates (accession numbers, UIDs).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from simlab.common.config import (
    AeTitle,
    DicomSettings,
    Hl7Settings,
    NodeConfig,
    Port,
    RemoteAe,
    StrictModel,
    validate_ae_title,
)
from simlab.common.uids import RIS_UID_ROOT

_UID_ROOT_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


MllpFraming = Literal["mllp", "no_end_block", "no_start_block", "lf_end"]
"""How outbound messages are framed: `mllp` is HL7 v2.5.1 Appendix C (0x0B message 0x1C 0x0D);
the others are the broken framings a misconfigured interface produces (trailer missing, start
block missing, 0x1C followed by LF), kept so a lab can show what a receiver does with them."""

_MESSAGE_TYPE_RE = re.compile(r"^[A-Z][A-Z0-9]{2}(\^[A-Z0-9]{3})?$")
_FIELD_RE = re.compile(r"^[A-Z][A-Z0-9]{2}-[1-9][0-9]{0,2}$")


class FieldTransform(StrictModel):
    """An interface-engine transform rule on one field of outbound messages (e.g. OBR-18).

    Non-empty values of the field, in every segment of that name, become prefix + value +
    suffix. Interfaces use such rules to meet a receiver's numbering; a wrong one silently
    changes what the receiver stores (an accession that matches no study).
    """

    field: str
    """Segment and field number, e.g. `OBR-18` (accession number)."""
    prefix: str = Field(default="", max_length=16)
    """Text put before the value."""
    suffix: str = Field(default="", max_length=16)
    """Text put after the value."""

    @field_validator("field")
    @classmethod
    def _check_field(cls, value: str) -> str:
        value = value.strip().upper()
        if not _FIELD_RE.match(value) or value.startswith("MSH-"):
            raise ValueError("field must be SEG-n (e.g. OBR-18), not an MSH field")
        return value


class Hl7Destination(StrictModel):
    """A receiver of the RIS's outbound HL7 (ADT and ORM), e.g. the PACS."""

    name: str = Field(default="pacs", pattern=r"^[a-z][a-z0-9-]{0,31}$")
    """Queue name of the destination; each destination has its own ordered queue."""
    host: str = "127.0.0.1"
    """Host of the receiver's MLLP listener."""
    port: Port
    """TCP port of the receiver's MLLP listener."""
    application: str = "SIMLAB_PACS"
    """MSH-5 receiving application the messages are addressed to."""
    facility: str = "RADIOLOGY"
    """MSH-6 receiving facility the messages are addressed to."""
    ack_timeout: float = Field(default=10.0, gt=0, le=300)
    """Seconds to connect and to wait for each ACK."""
    enabled: bool = True
    """A disabled destination keeps queueing but sends nothing (an interface 'stopped')."""
    message_types: list[str] | None = None
    """Route filter: the message types sent here, as `ADT` or `ADT^A08` (MSH-9.1^MSH-9.2);
    None sends everything. A message the filter excludes is kept in the queue as `filtered`
    (never sent unless an administrator retries it), as interface engines do."""
    transforms: list[FieldTransform] = Field(default_factory=list)
    """Transform rules applied to each message queued for this destination."""
    framing: MllpFraming = "mllp"
    """MLLP framing of outbound messages; anything but `mllp` is a broken interface."""

    @field_validator("message_types")
    @classmethod
    def _check_types(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        out = [v.strip().upper() for v in value]
        for item in out:
            if not _MESSAGE_TYPE_RE.match(item):
                raise ValueError(f"message type {item!r} must be like ADT or ADT^A08")
        return out

    def routes(self, type_label: str) -> bool:
        """True when the route filter lets a message of `type_label` (ADT^A08) through."""
        if self.message_types is None:
            return True
        return type_label in self.message_types or type_label.split("^")[0] in self.message_types


class QueueSettings(StrictModel):
    """How the persistent outbound queue delivers: in order, one at a time, with retries."""

    block_on_error: bool = True
    """A dead-lettered head-of-line message blocks the messages behind it until it is retried,
    edited or deleted (what real interface engines do, so order is never broken)."""
    max_attempts: int = Field(default=8, ge=1, le=1000)
    """Attempts (connection failures, timeouts, AE 206) before a message is dead-lettered."""
    backoff_initial: float = Field(default=1.0, gt=0, le=3600)
    """Seconds before the first retry; doubled at each further failure."""
    backoff_max: float = Field(default=60.0, gt=0, le=86400)
    """Longest wait between two attempts."""


class NumberingSettings(StrictModel):
    """How the RIS numbers what it generates; the same requests give the same numbers."""

    uid_root: str = RIS_UID_ROOT
    """Root of the UIDs the RIS generates (Study Instance UID, MPPS instance when missing)."""
    accession_prefix: str = Field(default="ACC", max_length=8)
    """Accession numbers are this prefix and a zero-padded sequence (ACC000001)."""
    patient_id_prefix: str = Field(default="RIS", max_length=8)
    """Patient IDs generated for registrations without one."""
    control_id_prefix: str = Field(default="RIS", max_length=6)
    """Prefix of outbound MSH-10 control IDs (then a sequence that is never reused)."""

    @field_validator("uid_root")
    @classmethod
    def _check_root(cls, value: str) -> str:
        if not _UID_ROOT_RE.match(value) or len(value) > 50:
            raise ValueError("uid_root must be dotted decimal digits, at most 50 characters")
        return value


class RisConfig(NodeConfig):
    """The RIS: Order Filler, ADT and Department System Scheduler (IHE RAD SWF)."""

    role: Literal["ris"] = "ris"
    dicom: DicomSettings
    """MWL and MPPS SCP (own AE title, e.g. SIMLAB_RIS)."""
    hl7: Hl7Settings
    """Inbound HL7 from a HIS / order placer (MSH-5/6 must name the RIS)."""
    ae_table: list[RemoteAe] = Field(default_factory=list)
    """Modalities allowed to query the worklist and send MPPS."""
    destinations: list[Hl7Destination] = Field(default_factory=list)
    """Where outbound ADT and ORM go (usually one entry: the PACS)."""
    queue: QueueSettings = Field(default_factory=QueueSettings)
    numbering: NumberingSettings = Field(default_factory=NumberingSettings)
    modality_stations: dict[str, AeTitle] = Field(default_factory=dict)
    """Scheduled Station AE title for an order that names none, by modality (CT → CT_1)."""
    forward_inbound: bool = True
    """Forward patients and orders received by HL7 to the destinations (as the RIS's own)."""
    mpps_status_updates: bool = True
    """Send ORM^O01 SC (ORC-5 IP/CM/DC) to the destinations when an MPPS changes an order."""

    @field_validator("modality_stations")
    @classmethod
    def _check_stations(cls, value: dict[str, str]) -> dict[str, str]:
        return {k.upper(): validate_ae_title(v) for k, v in value.items()}

    @field_validator("destinations")
    @classmethod
    def _unique_names(cls, value: list[Hl7Destination]) -> list[Hl7Destination]:
        names = [d.name for d in value]
        if len(names) != len(set(names)):
            raise ValueError("destination names must be unique")
        return value

    def ae_entry(self, ae_title: str) -> RemoteAe | None:
        """The AE table entry for a title (trailing spaces are not significant), or None."""
        wanted = ae_title.strip()
        return next((ae for ae in self.ae_table if ae.ae_title == wanted), None)

    def destination(self, name: str) -> Hl7Destination | None:
        return next((d for d in self.destinations if d.name == name), None)
