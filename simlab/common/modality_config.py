"""Configuration of a fake modality (CT, MR, CR, DX, US console) node.

The modality is an IHE RAD Scheduled Workflow Acquisition Modality: it queries a Modality
Worklist (RAD-5), reports MPPS (RAD-6/7), stores images (RAD-8) and asks for Storage Commitment
(RAD-10). Every peer is configured here, so a fault (a wrong called AE, a wrong port, a station
AE the RIS does not schedule for) is a config change an administrator can find and undo.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from simlab.common.config import DicomSettings, NodeConfig, RemoteAe, StrictModel

Profile = Literal["CT", "MR", "CR", "DX", "US"]
CharacterSetMode = Literal["auto", "utf8_as_latin1", "latin1_as_utf8", "latin1_undeclared"]
"""How a modality encodes text in its images; every mode but 'auto' is a misconfiguration."""

TAG_OVERRIDE_KEYWORDS = (
    "PatientID",
    "IssuerOfPatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyInstanceUID",
    "StudyID",
    "StudyDescription",
    "ReferringPhysicianName",
)
"""Attributes `acquisition.tag_overrides` may set: patient and study identification."""
_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
SENDABLE_TRANSFER_SYNTAXES = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, RLE_LOSSLESS)
"""Transfer syntaxes the modality can encode its images in without extra codecs."""


PROFILE_DEFAULTS: dict[str, dict[str, int]] = {
    "CT": {"images": 16, "rows": 512, "columns": 512},
    "MR": {"images": 20, "rows": 256, "columns": 256},
    "CR": {"images": 1, "rows": 1024, "columns": 832},
    "DX": {"images": 1, "rows": 1024, "columns": 832},
    "US": {"images": 3, "rows": 480, "columns": 640},
}
"""Realistic but lab-friendly acquisition sizes per profile (a simulated day stays small)."""


class AcquisitionSettings(StrictModel):
    """What one acquisition produces."""

    images_per_series: int | None = Field(default=None, ge=1, le=2000)
    """Images (slices, frames) per series; None: the profile's default (CT 16, MR 20, US 3...)."""
    rows: int | None = Field(default=None, ge=8, le=4096)
    """Rows per image; None: the profile's default (CT 512, MR 256, CR/DX 1024, US 480)."""
    columns: int | None = Field(default=None, ge=8, le=4096)
    """Columns per image; None: the profile's default."""
    series_per_procedure: int = Field(default=1, ge=1, le=10)
    """Series acquired per procedure step."""
    transfer_syntax: str = EXPLICIT_VR_LITTLE_ENDIAN
    """Transfer syntax the images are written and sent in (Explicit/Implicit VR LE, RLE)."""
    operator_name: str = "TECH^SIM"
    """Operators' Name (0008,1070) written into images and MPPS."""
    tag_overrides: dict[str, str] = Field(default_factory=dict)
    """Values written into every image instead of those from the worklist or the console,
    by DICOM keyword ('' writes the attribute empty), as a field engineer's template or a service
    setting does: e.g. {"PatientID": ""}. Only patient/study identification attributes
    (`TAG_OVERRIDE_KEYWORDS`); the MPPS and the console keep the real values."""
    character_set_mode: CharacterSetMode = "auto"
    """How text in the images is encoded (PS3.5 6.1): 'auto' declares what it writes (nothing
    for ASCII, ISO_IR 100 for Latin-1, ISO_IR 192 otherwise); 'utf8_as_latin1' declares
    ISO_IR 100 but writes UTF-8 bytes (Müller reads MÃ¼ller); 'latin1_as_utf8' declares
    ISO_IR 192 but writes Latin-1 bytes (not valid UTF-8); 'latin1_undeclared' writes Latin-1
    bytes without a Specific Character Set (the default repertoire is ASCII only)."""

    @model_validator(mode="after")
    def _known_syntax(self) -> AcquisitionSettings:
        if self.transfer_syntax not in SENDABLE_TRANSFER_SYNTAXES:
            raise ValueError(
                f"transfer_syntax {self.transfer_syntax} is not one the modality can encode; "
                f"use one of {', '.join(SENDABLE_TRANSFER_SYNTAXES)}"
            )
        return self

    @model_validator(mode="after")
    def _known_overrides(self) -> AcquisitionSettings:
        unknown = sorted(set(self.tag_overrides) - set(TAG_OVERRIDE_KEYWORDS))
        if unknown:
            raise ValueError(
                f"tag_overrides: {', '.join(unknown)} cannot be overridden; "
                f"use {', '.join(TAG_OVERRIDE_KEYWORDS)}"
            )
        uid = self.tag_overrides.get("StudyInstanceUID")
        if uid is not None and not _UID_RE.match(uid):
            raise ValueError(f"tag_overrides: StudyInstanceUID {uid!r} is not a valid UID")
        for keyword, value in self.tag_overrides.items():
            if len(value) > 64 or "\\" in value:
                raise ValueError(f"tag_overrides: {keyword} value too long or has a backslash")
        return self


class SendQueueSettings(StrictModel):
    """The C-STORE send queue: batching and retry with bounded backoff."""

    batch_size: int = Field(default=50, ge=1, le=1000)
    """Images sent on one association."""
    max_attempts: int = Field(default=3, ge=1, le=100)
    """Attempts per image before it stays failed until an operator retries it."""
    backoff_initial: float = Field(default=2.0, ge=0, le=3600)
    """Seconds before the first automatic retry; doubled on each further failure."""
    backoff_max: float = Field(default=60.0, ge=0, le=86400)
    """Upper bound of the retry delay."""
    poll_interval: float = Field(default=0.5, gt=0, le=60)
    """Seconds the sender sleeps when the queue has nothing due."""


class StorageCommitmentRequest(StrictModel):
    """Storage Commitment Push Model SCU (PS3.4 J) after a procedure is completed."""

    enabled: bool = True
    """Ask the destination PACS to commit the procedure's images."""
    wait_for_send: float = Field(default=60.0, ge=0, le=3600)
    """Seconds to wait for the procedure's images to be sent before asking for commitment."""
    report_timeout: float = Field(default=15.0, gt=0, le=3600)
    """Seconds to keep the association open for an N-EVENT-REPORT; a later report can still
    arrive on the modality's own DICOM listener (a new association from the PACS)."""


class WorklistQuerySettings(StrictModel):
    """The default matching keys of the worklist query (PS3.4 K.6.1.2.2)."""

    station_ae_title: str | None = ""
    """Scheduled Station AE Title; '' means this modality's own AE title, None no filter."""
    modality: str | None = ""
    """Modality; '' means the profile's modality, None no filter."""
    date: str | None = "today"
    """Scheduled Procedure Step Start Date: 'today', a DICOM date or range, or None."""


class ModalityConfig(NodeConfig):
    """A fake acquisition modality: console, worklist/MPPS SCU, Storage SCU, commitment SCU."""

    role: Literal["modality"] = "modality"
    profile: Profile = "CT"
    """What kind of device this is; decides the generator and the SOP class."""
    dicom: DicomSettings
    """Own AE title and the listener for Storage Commitment N-EVENT-REPORTs (and C-ECHO)."""
    station_name: str = "CT01"
    """Station Name (0008,1010)."""
    destination: RemoteAe
    """The PACS the images are stored to and commitment is asked from."""
    mwl: RemoteAe | None = None
    """The Modality Worklist SCP (RIS); None: no worklist, patients are keyed by hand."""
    mpps: RemoteAe | None = None
    """The MPPS SCP (RIS or PACS); None: no MPPS is sent."""
    worklist_query: WorklistQuerySettings = Field(default_factory=WorklistQuerySettings)
    acquisition: AcquisitionSettings = Field(default_factory=AcquisitionSettings)
    send_queue: SendQueueSettings = Field(default_factory=SendQueueSettings)
    storage_commitment: StorageCommitmentRequest = Field(default_factory=StorageCommitmentRequest)
    operator_typo_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    """Probability that a hand-keyed Patient ID or Accession Number gets a typing error."""
    seed: int = Field(default=1, ge=0)
    """Decides generated UIDs, pixel data and typing errors: same seed, same actions, same data."""
    association_timeout: float = Field(default=10.0, gt=0, le=600)
    """Seconds to wait for an A-ASSOCIATE response and for each DIMSE response as SCU."""

    def images_per_series(self) -> int:
        return self.acquisition.images_per_series or PROFILE_DEFAULTS[self.profile]["images"]

    def image_size(self) -> tuple[int, int]:
        """(rows, columns) of each generated image."""
        defaults = PROFILE_DEFAULTS[self.profile]
        return (
            self.acquisition.rows or defaults["rows"],
            self.acquisition.columns or defaults["columns"],
        )
