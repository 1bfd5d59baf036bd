"""Builders for the modules every image IOD shares (PS3.3 C.7), the file meta and the writer.

Each modality's generator starts a dataset with `new_image`, adds its own modules, sets the
pixels and hands the dataset to `write_dataset` (or straight to a Storage SCU).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from fake_modalities.images.context import Equipment, PatientStudy
from fake_modalities.images.uids import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    derive_uid,
)

DEFAULT_ACQUIRED_AT = datetime(2024, 3, 4, 9, 15, 0)
"""When a series is acquired unless its spec says otherwise (fixed, so output is reproducible)."""

MPPS_SOP_CLASS_UID = "1.2.840.10008.3.1.2.3.3"
"""Modality Performed Procedure Step SOP Class (PS3.4 F.7)."""


@dataclass(frozen=True, kw_only=True)
class SeriesSpec:
    """What every generated series has, whatever the modality."""

    series_number: int = 1
    """Series Number (0020,0011)."""
    series_description: str = ""
    """Series Description (0008,103E)."""
    protocol_name: str = ""
    """Protocol Name (0018,1030)."""
    body_part: str = ""
    """Body Part Examined (0018,0015), e.g. HEAD, CHEST, ABDOMEN."""
    acquired_at: datetime = DEFAULT_ACQUIRED_AT
    """Start of the acquisition; content times of later images step on from it."""
    operator_name: str = ""
    """Operators' Name (0008,1070), the technologist."""
    performed_procedure_step_id: str = ""
    """Performed Procedure Step ID (0040,0253) the modality gave its MPPS."""
    mpps_sop_instance_uid: str = ""
    """SOP Instance UID of the MPPS (N-CREATE), referenced from the series when set."""
    equipment: Equipment = field(default_factory=Equipment)
    """The device."""


def dicom_date(when: datetime) -> str:
    """DA value of a datetime."""
    return when.strftime("%Y%m%d")


def dicom_time(when: datetime) -> str:
    """TM value of a datetime, with milliseconds when there are any."""
    if when.microsecond:
        return f"{when:%H%M%S}.{when.microsecond // 1000:03d}"
    return when.strftime("%H%M%S")


def study_uid(study: PatientStudy, seed: int) -> str:
    """The study's Instance UID: the worklist's, or one derived from seed and patient/order."""
    if study.study_instance_uid:
        return study.study_instance_uid
    return derive_uid(seed, "study", study.patient_id, study.accession_number)


def series_uid(study: PatientStudy, seed: int, modality: str, series_number: int) -> str:
    """A Series Instance UID from the study, modality and series number."""
    return derive_uid(seed, "series", study_uid(study, seed), modality, series_number)


def instance_uid(series_instance_uid: str, number: int) -> str:
    """The SOP Instance UID of image `number` of a series."""
    return derive_uid("instance", series_instance_uid, number)


def character_set(texts: Iterable[str]) -> str | None:
    """Specific Character Set for these texts: none for ASCII, Latin-1 if it fits, else UTF-8."""
    joined = "".join(texts)
    if joined.isascii():
        return None
    try:
        joined.encode("latin-1")
    except UnicodeEncodeError:
        return "ISO_IR 192"
    return "ISO_IR 100"


def new_image(sop_class_uid: str, sop_instance_uid: str) -> Dataset:
    """An empty dataset with Part 10 file meta (Explicit VR Little Endian) for one image."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    return ds


def add_sop_common(ds: Dataset, study: PatientStudy, spec: SeriesSpec, created: datetime) -> None:
    """SOP Common (C.12.1): character set and creation time (the UIDs are set by new_image)."""
    texts = [
        study.patient_name,
        study.referring_physician,
        study.study_description,
        study.requested_procedure_description,
        study.scheduled_procedure_step_description,
        spec.series_description,
        spec.protocol_name,
        spec.operator_name,
        spec.equipment.institution_name,
        spec.equipment.department_name,
    ]
    charset = character_set(texts)
    if charset:
        ds.SpecificCharacterSet = charset
    ds.InstanceCreationDate = dicom_date(created)
    ds.InstanceCreationTime = dicom_time(created)


def add_patient_and_study(ds: Dataset, study: PatientStudy, spec: SeriesSpec, seed: int) -> None:
    """Patient (C.7.1.1), General Study (C.7.2.1) and Patient Study (C.7.2.2)."""
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    if study.issuer_of_patient_id:
        ds.IssuerOfPatientID = study.issuer_of_patient_id
    ds.PatientBirthDate = study.birth_date
    ds.PatientSex = study.sex

    started = study.study_datetime or spec.acquired_at
    ds.StudyInstanceUID = study_uid(study, seed)
    ds.StudyDate = dicom_date(started)
    ds.StudyTime = dicom_time(started)
    ds.ReferringPhysicianName = study.referring_physician
    # Study ID: the worklist's, else what a modality falls back on (the order, or its own number)
    ds.StudyID = (
        study.study_id
        or study.requested_procedure_id
        or study.accession_number[:16]
        or ds.StudyInstanceUID[-8:].lstrip(".")
    )
    ds.AccessionNumber = study.accession_number
    if study.study_description:
        ds.StudyDescription = study.study_description

    if study.patient_age:
        ds.PatientAge = study.patient_age
    if study.patient_size is not None:
        ds.PatientSize = f"{study.patient_size:.2f}"
    if study.patient_weight is not None:
        ds.PatientWeight = f"{study.patient_weight:.1f}"


def add_general_series(
    ds: Dataset,
    study: PatientStudy,
    spec: SeriesSpec,
    *,
    modality: str,
    series_instance_uid: str,
    patient_position: str | None = None,
    laterality: str | None = None,
) -> None:
    """General Series (C.7.3.1), with the Request Attributes of the worklist item (IHE SWF)."""
    ds.Modality = modality
    ds.SeriesInstanceUID = series_instance_uid
    ds.SeriesNumber = spec.series_number
    if laterality is not None:
        ds.Laterality = laterality
    ds.SeriesDate = dicom_date(spec.acquired_at)
    ds.SeriesTime = dicom_time(spec.acquired_at)
    if spec.series_description:
        ds.SeriesDescription = spec.series_description
    if spec.protocol_name:
        ds.ProtocolName = spec.protocol_name
    if spec.operator_name:
        ds.OperatorsName = spec.operator_name
    if spec.body_part:
        ds.BodyPartExamined = spec.body_part
    if patient_position is not None:
        ds.PatientPosition = patient_position
    if spec.performed_procedure_step_id:
        ds.PerformedProcedureStepID = spec.performed_procedure_step_id
        ds.PerformedProcedureStepStartDate = dicom_date(spec.acquired_at)
        ds.PerformedProcedureStepStartTime = dicom_time(spec.acquired_at)
        if study.scheduled_procedure_step_description:
            ds.PerformedProcedureStepDescription = study.scheduled_procedure_step_description
    if spec.mpps_sop_instance_uid:
        ref = Dataset()
        ref.ReferencedSOPClassUID = MPPS_SOP_CLASS_UID
        ref.ReferencedSOPInstanceUID = spec.mpps_sop_instance_uid
        ds.ReferencedPerformedProcedureStepSequence = Sequence([ref])
    if study.requested_procedure_id or study.scheduled_procedure_step_id:
        item = Dataset()
        if study.accession_number:
            item.AccessionNumber = study.accession_number
        item.StudyInstanceUID = ds.StudyInstanceUID
        if study.requested_procedure_id:
            item.RequestedProcedureID = study.requested_procedure_id
        if study.requested_procedure_description:
            item.RequestedProcedureDescription = study.requested_procedure_description
        if study.scheduled_procedure_step_id:
            item.ScheduledProcedureStepID = study.scheduled_procedure_step_id
        if study.scheduled_procedure_step_description:
            item.ScheduledProcedureStepDescription = study.scheduled_procedure_step_description
        ds.RequestAttributesSequence = Sequence([item])


def add_equipment(ds: Dataset, equipment: Equipment) -> None:
    """General Equipment (C.7.5.1)."""
    ds.Manufacturer = equipment.manufacturer
    ds.InstitutionName = equipment.institution_name
    ds.StationName = equipment.station_name
    ds.InstitutionalDepartmentName = equipment.department_name
    ds.ManufacturerModelName = equipment.model_name
    ds.DeviceSerialNumber = equipment.device_serial_number
    ds.SoftwareVersions = equipment.software_versions


def add_frame_of_reference(ds: Dataset, uid: str, indicator: str = "") -> None:
    """Frame of Reference (C.7.4.1)."""
    ds.FrameOfReferenceUID = uid
    ds.PositionReferenceIndicator = indicator


def add_general_image(
    ds: Dataset,
    *,
    instance_number: int,
    image_type: list[str],
    acquired: datetime,
    content: datetime,
    acquisition_number: int = 1,
    patient_orientation: list[str] | None = None,
) -> None:
    """General Acquisition (C.7.10.1) and General Image (C.7.6.1)."""
    ds.InstanceNumber = instance_number
    if patient_orientation is not None:
        ds.PatientOrientation = patient_orientation
    ds.ContentDate = dicom_date(content)
    ds.ContentTime = dicom_time(content)
    ds.ImageType = image_type
    ds.AcquisitionNumber = acquisition_number
    ds.AcquisitionDate = dicom_date(acquired)
    ds.AcquisitionTime = dicom_time(acquired)
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"


def add_axial_plane(
    ds: Dataset,
    *,
    position: tuple[float, float, float],
    pixel_spacing: float,
    slice_thickness: float,
    spacing_between_slices: float | None = None,
) -> None:
    """Image Plane (C.7.6.2) of an axial slice: rows run to patient left, columns posterior."""
    ds.PixelSpacing = [_ds(pixel_spacing), _ds(pixel_spacing)]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.ImagePositionPatient = [_ds(v) for v in position]
    ds.SliceThickness = _ds(slice_thickness)
    if spacing_between_slices is not None:
        ds.SpacingBetweenSlices = _ds(spacing_between_slices)
    ds.SliceLocation = _ds(position[2])


def set_monochrome_pixels(
    ds: Dataset,
    pixels: np.ndarray,
    *,
    bits_stored: int,
    photometric: str = "MONOCHROME2",
) -> None:
    """Image Pixel (C.7.6.3) of one unsigned grayscale frame (8 or 16 bits allocated)."""
    rows, columns = pixels.shape
    bits_allocated = 8 if pixels.dtype == np.uint8 else 16
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    dtype = "u1" if bits_allocated == 8 else "<u2"
    data = np.ascontiguousarray(pixels, dtype=dtype).tobytes()
    if len(data) % 2:
        data += b"\0"
    ds.PixelData = data
    ds["PixelData"].VR = "OB" if bits_allocated == 8 else "OW"


def set_window(ds: Dataset, centers: list[float], widths: list[float], names: list[str]) -> None:
    """VOI LUT (C.11.2): one or more windows with their explanations."""
    ds.WindowCenter = [_ds(c) for c in centers] if len(centers) > 1 else _ds(centers[0])
    ds.WindowWidth = [_ds(w) for w in widths] if len(widths) > 1 else _ds(widths[0])
    ds.WindowCenterWidthExplanation = names if len(names) > 1 else names[0]


def step(when: datetime, seconds: float) -> datetime:
    """A datetime `seconds` later, rounded to milliseconds (TM precision used here)."""
    later = when + timedelta(seconds=seconds)
    return later.replace(microsecond=(later.microsecond // 1000) * 1000)


def write_dataset(ds: Dataset, path: Path) -> Path:
    """Write one dataset as a DICOM Part 10 file (preamble, DICM, file meta, dataset)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_series(datasets: Iterable[Dataset], directory: Path) -> list[Path]:
    """Write datasets as ``<modality><series>_<instance>.dcm`` files in `directory`."""
    paths = []
    for ds in datasets:
        name = f"{ds.Modality}{int(ds.SeriesNumber):03d}_{int(ds.InstanceNumber):05d}.dcm"
        paths.append(write_dataset(ds, directory / name))
    return paths


def _ds(value: float) -> str:
    """A Decimal String (at most 16 characters) without a trailing '.0' or float noise."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    if len(text) > 16:
        text = f"{value:.10g}"
    return text
