"""Node configuration models.

Every node reads one JSON config file at start and on reload. The lab writes these files; an
administrator edits them through the node's admin API (validated by these models) or by hand.
Relative paths in a config are relative to the directory of the config file, so the same file
works for a local child process and for a container with the node directory bind-mounted.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from simlab.common.transfer_syntaxes import ACCEPTED

# PS3.5 6.2: an AE title is 1-16 characters of the Default Character Repertoire, no backslash
# and no control characters; leading/trailing spaces are not significant.
_AE_TITLE_RE = re.compile(r"^[ -\[\]-~]{1,16}$")

M = TypeVar("M", bound=BaseModel)

AeTitle = Annotated[str, Field(min_length=1, max_length=16, description="DICOM AE title")]
Port = Annotated[int, Field(ge=1, le=65535)]


def validate_ae_title(value: str) -> str:
    """Return a normalised AE title, or raise ValueError naming the rule it breaks."""
    if not _AE_TITLE_RE.match(value) or not value.strip():
        raise ValueError(
            f"AE title {value!r} must be 1-16 printable ASCII characters without backslash"
        )
    return value.strip()


class StrictModel(BaseModel):
    """Base for config models: unknown keys are an error, so a typo never goes unnoticed."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RemoteAe(StrictModel):
    """An entry of a node's AE table: a peer it accepts associations from or connects to."""

    ae_title: AeTitle
    """The peer's AE title."""
    host: str = "127.0.0.1"
    """Host name or address where the peer's DICOM service listens."""
    port: Port = 104
    """TCP port of the peer's DICOM service."""
    description: str = ""
    """Free text shown in consoles, e.g. 'CT scanner, room 2'."""

    _check_title = field_validator("ae_title")(lambda cls, v: validate_ae_title(v))


class AdminSettings(StrictModel):
    """Where the node's JSON admin API listens and how it authenticates callers."""

    host: str = "127.0.0.1"
    """Bind address; loopback unless a lab is shared on purpose."""
    port: Port
    """TCP port of the admin API."""
    token_file: str = "admin.token"  # noqa: S105 (a file name, not a secret)
    """File holding the lab's admin token (relative to the config file)."""


class DicomSettings(StrictModel):
    """The node's DICOM Upper Layer service (PS3.8) and its association policy."""

    ae_title: AeTitle
    """This node's own AE title."""
    host: str = "127.0.0.1"
    """Bind address of the DICOM listener."""
    port: Port
    """TCP port of the DICOM listener."""
    require_called_ae: bool = True
    """Reject an association whose Called AE title is not ours (A-ASSOCIATE-RJ reason 7)."""
    require_known_calling_ae: bool = True
    """Reject a Calling AE title missing from the AE table (A-ASSOCIATE-RJ reason 3)."""
    max_associations: int = Field(default=16, ge=1, le=256)
    """Concurrent associations; beyond it A-ASSOCIATE-RJ transient, source 3, reason 2."""
    max_pdu_size: int = Field(default=262_144, ge=0)
    """Maximum PDU length we receive (0 means unlimited)."""
    acse_timeout: float = Field(default=30.0, gt=0)
    """ARTIM: seconds to wait for an association request/release (PS3.8 9.1.5)."""
    dimse_timeout: float = Field(default=60.0, gt=0)
    """Seconds to wait for a DIMSE message on an open association."""
    network_timeout: float = Field(default=60.0, gt=0)
    """Seconds of TCP silence before the association is aborted."""

    _check_title = field_validator("ae_title")(lambda cls, v: validate_ae_title(v))


class Hl7Settings(StrictModel):
    """The node's HL7 v2 listener over MLLP and the identity it answers as (MSH-5/MSH-6)."""

    host: str = "127.0.0.1"
    """Bind address of the MLLP listener."""
    port: Port
    """TCP port of the MLLP listener."""
    application: str = "SIMLAB"
    """This node's application name: inbound MSH-5 must match it, else ACK AR."""
    facility: str = "RADIOLOGY"
    """This node's facility name: inbound MSH-6 must match it, else ACK AR."""
    max_message_bytes: int = Field(default=1_048_576, ge=1024)
    """Largest message accepted; a bigger one is logged and the connection closed."""
    idle_timeout: float = Field(default=60.0, gt=0)
    """Seconds a silent MLLP connection is kept open."""


class NodeConfig(StrictModel):
    """What every node has: identity, admin API, data directory and log file."""

    node_id: str = Field(pattern=r"^[a-z][a-z0-9-]{0,31}$")
    """The node's name in the lab, e.g. 'pacs' or 'ct-1'."""
    role: str
    """What the node is in the department ('pacs', 'ris', 'modality', 'viewer')."""
    display_name: str = ""
    """A human name for consoles, e.g. 'Main PACS (Image Manager/Archive)'."""
    admin: AdminSettings
    data_dir: str = "data"
    """Directory of received objects, databases and queues (relative to the config file)."""
    log_file: str = "node.log"
    """Human-readable log (relative to the config file)."""


ALL_STORAGE = "*"
"""Marker in accepted_sop_classes meaning 'every Storage SOP class pynetdicom knows'."""


class StorageSettings(StrictModel):
    """How the archive stores what it receives."""

    quota_bytes: int | None = Field(default=None, ge=0)
    """Total bytes the archive may hold; a C-STORE beyond it gets 0xA700. None: no quota."""
    path: str = ""
    """Directory new objects are written to (the storage filesystem; relative to the config
    file); '' means ``<data_dir>/objects``. Objects already archived stay where they were written:
    the index remembers each object's storage directory, so changing this moves nothing."""
    duplicate_policy: Literal["overwrite", "keep", "reject"] = "overwrite"
    """What a second C-STORE of a known SOP Instance UID does: replace the object, keep the
    first one (answer Success, store nothing), or refuse it (0x0111 Duplicate SOP Instance)."""


class StorageCommitmentSettings(StrictModel):
    """Storage Commitment Push Model SCP (PS3.4 J): how the PACS sends its N-EVENT-REPORT."""

    report_association: Literal["same", "new"] = "same"
    """'same': send the report on the requester's association while it is still open, else on a
    new one; 'new': always open a new association to the requester's AE (from the AE table)."""
    report_delay: float = Field(default=0.0, ge=0, le=3600)
    """Seconds between the N-ACTION response and the report (a real archive commits later)."""
    report_retries: int = Field(default=2, ge=0, le=20)
    """Further attempts when the requester cannot be reached on a new association."""
    retry_interval: float = Field(default=5.0, ge=0, le=3600)
    """Seconds between those attempts."""


class PacsConfig(NodeConfig):
    """The PACS: Image Manager / Image Archive (IHE RAD SWF)."""

    role: Literal["pacs"] = "pacs"
    dicom: DicomSettings
    hl7: Hl7Settings
    ae_table: list[RemoteAe] = Field(default_factory=list)
    """Known remote AEs: allowed callers and C-MOVE destinations."""
    storage: StorageSettings = Field(default_factory=StorageSettings)
    storage_commitment: StorageCommitmentSettings = Field(default_factory=StorageCommitmentSettings)
    """Storage Commitment Push Model: where and when the commitment result is reported."""
    accepted_sop_classes: list[str] = Field(default_factory=lambda: [ALL_STORAGE])
    """Storage SOP Class UIDs (or keywords) accepted by the Storage SCP; '*' means all."""
    rejected_sop_classes: list[str] = Field(default_factory=list)
    """Storage SOP classes removed from the accepted set (UIDs or keywords)."""
    accepted_transfer_syntaxes: list[str] = Field(default_factory=lambda: list(ACCEPTED))
    """Transfer syntaxes the Storage SCP accepts (remove JPEG 2000 to make a negotiation fault)."""

    def ae_entry(self, ae_title: str) -> RemoteAe | None:
        """The AE table entry for a title (trailing spaces are not significant), or None."""
        wanted = ae_title.strip()
        return next((ae for ae in self.ae_table if ae.ae_title == wanted), None)


def config_dir(config_path: Path) -> Path:
    """Directory relative paths inside a config file are resolved against."""
    return config_path.resolve().parent


def resolve(config_path: Path, relative: str) -> Path:
    """Resolve a path from a config file against the config file's directory."""
    path = Path(relative)
    return path if path.is_absolute() else config_dir(config_path) / path


def load_config(model: type[M], path: Path) -> M:
    """Read and validate a node config file; raises pydantic.ValidationError or OSError."""
    return model.model_validate_json(path.read_bytes())


def save_config(config: BaseModel, path: Path) -> None:
    """Write a config file atomically (temp file, fsync, rename) so a crash never leaves half a
    file for the next start to choke on."""
    data = json.dumps(config.model_dump(mode="json"), indent=2, sort_keys=False) + "\n"
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
