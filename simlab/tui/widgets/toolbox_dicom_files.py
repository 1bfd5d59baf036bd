"""DICOM files for the toolbox: a small valid test image to send, a dcmdump-like reader, and the
list of files a C-GET brought back to the workstation (for "Dump a file").

The test image is a Secondary Capture Image (PS3.3 A.8.1): Patient, General Study, General
Series, SC Equipment, General Image, Image Pixel, SC Image and SOP Common modules, with a 16x16
8-bit greyscale ramp — valid for `dciodvfy`, accepted by any PACS that stores SC.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import UID, ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from simlab.workflow.actions.dicom import received_files

IMPLEMENTATION_CLASS_UID = "2.25.274896377120934271622719498063823911206"
"""simlab's implementation class UID (2.25 arc: derived from a UUID)."""
TEST_PATIENT_ID = "TOOLBOX01"
TEST_PATIENT_NAME = "TOOLBOX^TEST^IMAGE"


def test_image(
    now: datetime | None = None,
    patient_id: str = TEST_PATIENT_ID,
    patient_name: str = TEST_PATIENT_NAME,
    accession: str = "TBX0001",
) -> Dataset:
    """A new Secondary Capture image (fresh study, series and SOP instance UIDs)."""
    now = now or datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid(prefix=None)
    ds.StudyDate = ds.ContentDate = date
    ds.StudyTime = ds.ContentTime = time
    ds.AccessionNumber = accession
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    ds.Manufacturer = "SIMLAB"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "TOOLBOX TEST IMAGE"
    ds.SeriesDescription = "TEST PATTERN"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = generate_uid(prefix=None)
    ds.SeriesInstanceUID = generate_uid(prefix=None)
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.ImageLaterality = "U"
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = 16
    ds.Columns = 16
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = bytes((row * 16 + col) % 256 for row in range(16) for col in range(16))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = "SIMLAB_TBX"
    ds.file_meta = meta
    return ds


def write_test_image(directory: Path | None = None, **kwargs: str) -> Path:
    """Write a new test image as a Part 10 file (in a temp directory unless given)."""
    where = Path(directory or tempfile.mkdtemp(prefix="simlab-tbx-"))
    where.mkdir(parents=True, exist_ok=True)
    ds = test_image(**kwargs)  # type: ignore[arg-type]
    path = where / f"SC_{ds.SOPInstanceUID[-12:]}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


@dataclass(frozen=True)
class DumpRow:
    """One element as dcmdump shows it."""

    tag: str
    vr: str
    name: str
    value: str
    depth: int = 0


MAX_VALUE = 80


def _value(elem: DataElement) -> str:
    value = elem.value
    if isinstance(value, (bytes, bytearray)):
        return f"({len(value)} bytes)"
    if value is None:
        return ""
    text = "\\".join(str(v) for v in value) if isinstance(value, (list, MultiValue)) else str(value)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def _rows(ds: Dataset, depth: int) -> Iterator[DumpRow]:
    for elem in ds:
        tag = f"({elem.tag.group:04x},{elem.tag.element:04x})"
        name = elem.keyword or elem.name
        if elem.VR == "SQ":
            yield DumpRow(tag, "SQ", name, f"({len(elem.value)} items)", depth)
            for n, item in enumerate(elem.value, 1):
                yield DumpRow("", "", f"item {n}", "", depth + 1)
                yield from _rows(item, depth + 2)
        else:
            yield DumpRow(tag, str(elem.VR), name, _value(elem), depth)


def dump(path: Path | str) -> list[DumpRow]:
    """File meta and dataset elements of a DICOM file; ValueError when it cannot be read."""
    try:
        ds = dcmread(path)
    except (OSError, InvalidDicomError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    rows = [DumpRow("", "", "# file meta", "")]
    rows.extend(_rows(ds.file_meta, 0))
    rows.append(DumpRow("", "", "# dataset", ""))
    rows.extend(_rows(ds, 0))
    return rows


MAX_RECEIVED = 200
"""At most this many received files are offered (the newest)."""


def received_choices(lab: Any) -> list[tuple[str, str]]:
    """(label, path) of the files C-GETs saved on the workstation, newest first.

    The label is what tells them apart: the end of the SOP Instance UID and the SOP class (the
    file names are hashes). A lab without a directory (or a stand-in without paths) has none.
    """
    if getattr(lab, "paths", None) is None:
        return []
    out: list[tuple[str, str]] = []
    for path in received_files(lab)[:MAX_RECEIVED]:
        try:
            ds = dcmread(
                path, stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"]
            )
            sop_uid = str(ds.get("SOPInstanceUID", "") or "")
            sop_class = str(ds.get("SOPClassUID", "") or "")
            name = UID(sop_class).name if sop_class else "?"
        except (OSError, InvalidDicomError, ValueError):
            sop_uid, name = "", "unreadable"
        tail = f"…{sop_uid[-14:]}" if len(sop_uid) > 14 else sop_uid or path.name[:12]
        out.append((f"{tail} {name}", str(path)))
    return out
