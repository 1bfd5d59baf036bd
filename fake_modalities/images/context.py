"""Who and what an image belongs to: the patient and study (from a worklist) and the device."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class PatientStudy:
    """Patient and study attributes a modality copies from a Modality Worklist item.

    Values are DICOM-encoded strings (PN as ``FAMILY^GIVEN``, DA as ``YYYYMMDD``), so a worklist
    C-FIND response maps onto this class field for field. Empty strings stay empty: the Type 2
    attributes they fill are written zero-length, as a modality does when it has no value.
    """

    patient_id: str
    """Patient ID (0010,0020)."""
    patient_name: str
    """Patient's Name (0010,0010), e.g. ``DOE^JANE``."""
    birth_date: str = ""
    """Patient's Birth Date (0010,0030), ``YYYYMMDD``."""
    sex: str = ""
    """Patient's Sex (0010,0040): ``M``, ``F``, ``O`` or empty."""
    issuer_of_patient_id: str = ""
    """Issuer of Patient ID (0010,0021), the assigning authority, e.g. ``HOSP``."""
    accession_number: str = ""
    """Accession Number (0008,0050) of the order (RIS)."""
    study_instance_uid: str | None = None
    """Study Instance UID (0020,000D) from the worklist; None derives one from the seed."""
    study_id: str = ""
    """Study ID (0020,0010); a modality often puts the requested procedure ID here."""
    referring_physician: str = ""
    """Referring Physician's Name (0008,0090)."""
    study_description: str = ""
    """Study Description (0008,1030), usually the requested procedure description."""
    requested_procedure_id: str = ""
    """Requested Procedure ID (0040,1001), copied into the Request Attributes Sequence."""
    requested_procedure_description: str = ""
    """Requested Procedure Description (0032,1060)."""
    scheduled_procedure_step_id: str = ""
    """Scheduled Procedure Step ID (0040,0009)."""
    scheduled_procedure_step_description: str = ""
    """Scheduled Procedure Step Description (0040,0007)."""
    patient_age: str = ""
    """Patient's Age (0010,1010), e.g. ``047Y``; empty leaves it out."""
    patient_weight: float | None = None
    """Patient's Weight (0010,1030) in kg; None leaves it out."""
    patient_size: float | None = None
    """Patient's Size (0010,1020) in metres; None leaves it out."""
    study_datetime: datetime | None = None
    """When the study started (Study Date/Time); None uses the series' acquisition time."""


@dataclass(frozen=True)
class Equipment:
    """The device that made the images (General Equipment module, PS3.3 C.7.5.1)."""

    manufacturer: str = "SIMLAB"
    """Manufacturer (0008,0070)."""
    model_name: str = "Synthetic"
    """Manufacturer's Model Name (0008,1090)."""
    station_name: str = "SIM01"
    """Station Name (0008,1010)."""
    institution_name: str = "Simlab General Hospital"
    """Institution Name (0008,0080)."""
    department_name: str = "Radiology"
    """Institutional Department Name (0008,1040)."""
    device_serial_number: str = "SIM0001"
    """Device Serial Number (0018,1000)."""
    software_versions: str = "simlab-fm 1.0"
    """Software Versions (0018,1020)."""
