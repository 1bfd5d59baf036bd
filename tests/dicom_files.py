"""A small factory of valid DICOM test objects, written as Part 10 files for DCMTK to send.

Each maker returns a pydicom Dataset with file meta, identified by the patient/study/series/
instance attributes a test chooses (defaults are fine for "any object"). Pixel data is tiny and
real (a 64x64 16-bit ramp for CT/MR, 32x32 RGB for Secondary Capture), so the objects pass
dciodvfy's checks for what they contain and DCMTK can send them without complaint.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    CTImageStorage,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)

UID_PREFIX = "2.25."
"""UUID-derived UIDs (2.25 arc): unique without a registered root."""
_counter = itertools.count(1)


def new_uid() -> str:
    return generate_uid(prefix=None)


@dataclass
class Ids:
    """Who and what an object belongs to; fresh UIDs unless given."""

    patient_id: str = "PID001"
    patient_name: str = "DOE^JOHN"
    birth_date: str = "19700101"
    sex: str = "M"
    study_uid: str = field(default_factory=new_uid)
    study_date: str = "20240115"
    study_time: str = "093000"
    accession: str = "ACC001"
    study_id: str = "1"
    study_description: str = "CT CHEST"
    referring: str = "HOUSE^GREGORY"
    series_uid: str = field(default_factory=new_uid)
    series_number: int = 1
    series_description: str = "AXIAL"
    modality: str = "CT"
    body_part: str = "CHEST"
    station: str = "CT01"
    sop_uid: str = field(default_factory=new_uid)
    instance_number: int = 1


def _common(ds: Dataset, ids: Ids, sop_class: str) -> None:
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ids.sop_uid
    ds.StudyDate = ids.study_date
    ds.SeriesDate = ids.study_date
    ds.ContentDate = ids.study_date
    ds.StudyTime = ids.study_time
    ds.SeriesTime = ids.study_time
    ds.ContentTime = ids.study_time
    ds.AccessionNumber = ids.accession
    ds.Modality = ids.modality
    ds.Manufacturer = "SIMLAB"
    ds.InstitutionName = "SIMLAB HOSPITAL"
    ds.ReferringPhysicianName = ids.referring
    ds.StationName = ids.station
    ds.StudyDescription = ids.study_description
    ds.SeriesDescription = ids.series_description
    ds.PatientName = ids.patient_name
    ds.PatientID = ids.patient_id
    ds.PatientBirthDate = ids.birth_date
    ds.PatientSex = ids.sex
    ds.BodyPartExamined = ids.body_part
    ds.StudyInstanceUID = ids.study_uid
    ds.SeriesInstanceUID = ids.series_uid
    ds.StudyID = ids.study_id
    ds.SeriesNumber = ids.series_number
    ds.InstanceNumber = ids.instance_number
    ds.FrameOfReferenceUID = generate_uid(prefix=None)
    ds.PositionReferenceIndicator = ""
    if ids.modality in ("CT", "MR"):
        ds.PatientPosition = "HFS"


def _meta(ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = "2.25.10911148233146497052712735417424151808"
    meta.ImplementationVersionName = "SIMLAB_TEST"
    ds.file_meta = meta


def _grey_pixels(ds: Dataset, size: int = 64) -> None:
    ramp = (np.arange(size * size, dtype=np.uint16) % 4096).reshape(size, size)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = size
    ds.Columns = size
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = ramp.tobytes()


def ct(ids: Ids | None = None, size: int = 64) -> Dataset:
    """CT Image Storage with a size x size 16-bit image (64x64 by default)."""
    ids = ids or Ids()
    ds = Dataset()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    _common(ds, ids, CTImageStorage)
    ds.SliceThickness = "1.0"
    ds.KVP = "120"
    ds.ImagePositionPatient = ["0", "0", str(ids.instance_number)]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = ["0.5", "0.5"]
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.AcquisitionNumber = 1
    _grey_pixels(ds, size)
    _meta(ds)
    return ds


def mr(ids: Ids | None = None) -> Dataset:
    """MR Image Storage with a 64x64 16-bit image."""
    ids = ids or Ids(modality="MR", study_description="MR BRAIN", body_part="HEAD")
    ds = Dataset()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    _common(ds, ids, MRImageStorage)
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.EchoTime = "10"
    ds.RepetitionTime = "500"
    ds.EchoTrainLength = 1
    ds.MagneticFieldStrength = "1.5"
    ds.SliceThickness = "5"
    ds.ImagePositionPatient = ["0", "0", str(ids.instance_number)]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = ["1", "1"]
    _grey_pixels(ds)
    _meta(ds)
    return ds


def secondary_capture(ids: Ids | None = None) -> Dataset:
    """Secondary Capture Image Storage, a 32x32 RGB screenshot."""
    ids = ids or Ids(modality="OT", series_description="SCREENSHOT")
    ds = Dataset()
    _common(ds, ids, SecondaryCaptureImageStorage)
    ds.ConversionType = "WSD"
    ds.PatientOrientation = ""
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows = 32
    ds.Columns = 32
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = (np.arange(32 * 32 * 3, dtype=np.uint8) % 251).tobytes()
    _meta(ds)
    return ds


_ENHANCED_CT_MACROS: dict[str, dict[str, object]] = {
    "CTAcquisitionTypeSequence": {
        "AcquisitionType": "SEQUENCED", "ConstantVolumeFlag": "NO", "FluoroscopyFlag": "NO",
    },
    "CTAcquisitionDetailsSequence": {
        "DataCollectionDiameter": "500", "GantryDetectorTilt": "0", "TableHeight": "150",
        "RotationDirection": "CW", "RevolutionTime": 0.5, "SingleCollimationWidth": 0.625,
        "TotalCollimationWidth": 40.0,
    },
    "CTTableDynamicsSequence": {
        "TableSpeed": 0.0, "TableFeedPerRotation": 0.0, "SpiralPitchFactor": 0.0,
    },
    "CTPositionSequence": {
        "TablePosition": 0.0, "ReconstructionTargetCenterPatient": [0.0, 0.0, 0.0],
        "DataCollectionCenterPatient": [0.0, 0.0, 0.0],
    },
    "CTGeometrySequence": {
        "DistanceSourceToDetector": "1000", "DistanceSourceToDataCollectionCenter": 500.0,
    },
    "CTReconstructionSequence": {
        "ConvolutionKernel": "STANDARD", "ConvolutionKernelGroup": "SOFT_TISSUE",
        "ReconstructionDiameter": "320", "ReconstructionAlgorithm": "FILTER_BACK_PROJ",
        "ReconstructionPixelSpacing": [0.5, 0.5], "ReconstructionAngle": 360.0,
        "ImageFilter": "NONE",
    },
    "CTExposureSequence": {
        "ExposureTimeInms": 500.0, "XRayTubeCurrentInmA": 200.0, "ExposureInmAs": 100.0,
        "ExposureModulationType": "NONE", "CTDIvol": 10.0,
    },
    "CTXRayDetailsSequence": {
        "KVP": "120", "FocalSpots": ["1.2"], "FilterType": "FLAT", "FilterMaterial": ["ALUMINUM"],
    },
}  # fmt: skip
"""Shared functional group macros an Enhanced CT Image needs (PS3.3 A.38, C.8.15.3)."""


def enhanced_ct(ids: Ids | None = None, frames: int = 2) -> Dataset:
    """A minimal Enhanced CT Image (multi-frame, `frames` frames of 64x64) - the SOP class a PACS
    may not accept. Shared and per-frame functional groups carry geometry and frame content."""
    ids = ids or Ids(series_description="ENHANCED")
    ds = Dataset()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    _common(ds, ids, EnhancedCTImageStorage)
    ds.ManufacturerModelName = "SIMLAB CT"
    ds.DeviceSerialNumber = "0001"
    ds.SoftwareVersions = "1.0"
    ds.NumberOfFrames = frames
    ds.ContentQualification = "PRODUCT"
    ds.AcquisitionDateTime = ids.study_date + ids.study_time
    ds.AcquisitionDuration = 1.0
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.PresentationLUTShape = "IDENTITY"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.AcquisitionContextSequence = []
    dimension_org = generate_uid(prefix=None)
    org = Dataset()
    org.DimensionOrganizationUID = dimension_org
    ds.DimensionOrganizationSequence = [org]
    index = Dataset()
    index.DimensionOrganizationUID = dimension_org
    index.DimensionIndexPointer = 0x00209057  # In-Stack Position Number
    index.FunctionalGroupPointer = 0x00209111  # Frame Content Sequence
    ds.DimensionIndexSequence = [index]

    measures = Dataset()
    measures.PixelSpacing = ["0.5", "0.5"]
    measures.SliceThickness = "1.0"
    orientation = Dataset()
    orientation.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    frame_type = Dataset()
    frame_type.FrameType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    frame_type.PixelPresentation = "MONOCHROME"
    frame_type.VolumetricProperties = "VOLUME"
    frame_type.VolumeBasedCalculationTechnique = "NONE"
    rescale = Dataset()
    rescale.RescaleIntercept = "-1024"
    rescale.RescaleSlope = "1"
    rescale.RescaleType = "HU"
    shared = Dataset()
    for keyword, values in _ENHANCED_CT_MACROS.items():
        item = Dataset()
        for attribute, value in values.items():
            setattr(item, attribute, value)
        setattr(shared, keyword, [item])
    anatomy = Dataset()
    region = Dataset()
    region.CodeValue, region.CodingSchemeDesignator = "51185008", "SCT"
    region.CodeMeaning = "Chest"
    anatomy.AnatomicRegionSequence = [region]
    anatomy.FrameLaterality = "U"
    shared.FrameAnatomySequence = [anatomy]
    event = Dataset()
    event.IrradiationEventUID = generate_uid(prefix=None)
    shared.IrradiationEventIdentificationSequence = [event]
    shared.PixelMeasuresSequence = [measures]
    shared.PlaneOrientationSequence = [orientation]
    shared.CTImageFrameTypeSequence = [frame_type]
    shared.PixelValueTransformationSequence = [rescale]
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for number in range(1, frames + 1):
        content = Dataset()
        content.StackID = "1"
        content.InStackPositionNumber = number
        content.DimensionIndexValues = [number]
        content.FrameAcquisitionDateTime = ids.study_date + ids.study_time
        content.FrameReferenceDateTime = ids.study_date + ids.study_time
        content.FrameAcquisitionDuration = 500.0
        position = Dataset()
        position.ImagePositionPatient = ["0", "0", str(number)]
        item = Dataset()
        item.FrameContentSequence = [content]
        item.PlanePositionSequence = [position]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    _grey_pixels(ds)
    ds.PixelData = ds.PixelData * frames
    _meta(ds)
    return ds


def jpeg2000_ct(ids: Ids | None = None) -> Dataset:
    """A CT whose pixel data is encapsulated as JPEG 2000 Lossless (the codestream is a stub:
    nothing in the PACS path decodes pixels, and DCMTK sends it as it is)."""
    ds = ct(ids)
    stub = b"\xff\x4f\xff\x51" + bytes(60) + b"\xff\xd9"
    ds.PixelData = encapsulate([stub])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.LossyImageCompression = "00"
    return ds


def write(ds: Dataset, directory: Path, name: str | None = None) -> Path:
    """Write a dataset as a Part 10 file (with preamble) and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (name or f"obj{next(_counter):05d}.dcm")
    ds.save_as(path, enforce_file_format=True)
    return path


def study_files(
    directory: Path, *, count: int = 3, maker: Callable[[Ids], Dataset] = ct, ids: Ids | None = None
) -> tuple[Ids, list[Path]]:
    """`count` instances of one series (same patient/study/series), written to `directory`."""
    base = ids or Ids()
    paths = []
    for number in range(1, count + 1):
        one = Ids(**{**base.__dict__, "sop_uid": new_uid(), "instance_number": number})
        paths.append(write(maker(one), directory))
    return base, paths


# --- running DCMTK against a node -----------------------------------------------------------------


def dcmtk(*args: object, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run a DCMTK tool; stdout and stderr merged into `.stdout` (DCMTK logs on both)."""
    return subprocess.run(
        [str(a) for a in args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


def storescu(node: Any, *files: Path, extra: Sequence[object] = (), aet: str = "STORESCU"):
    """storescu -v to the node (its AE title and DICOM port) with the given files."""
    return dcmtk(
        "storescu", "-v", *extra, "-aet", aet, "-aec", node.ae_title, "127.0.0.1",
        node.dicom_port, *files,
    )  # fmt: skip


def wait_for_log(node: Any, pattern: str, timeout: float = 5.0) -> str:
    """The first node-log line matching a regex, polling until `timeout` (a line may lag)."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        for line in node.log_text().splitlines():
            if regex.search(line):
                return line
        if time.monotonic() > deadline:
            tail = "\n".join(node.log_text().splitlines()[-15:])
            raise AssertionError(f"no log line matches {pattern!r}; log tail:\n{tail}")
        time.sleep(0.05)


def object_files(node: Any) -> list[Path]:
    """Every file under the node's data/objects directory."""
    root = node.data_dir / "objects"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
