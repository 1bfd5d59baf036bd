"""CT Image Storage (1.2.840.10008.5.1.4.1.1.2): an axial head series from the phantom.

The series is contiguous axial slices stepping up the z axis; each slice is the phantom's tissue
labels mapped to Hounsfield units, softened by a reconstruction-like blur, with quantum noise,
stored as 12 bits in 16 (value = HU + 1024, Rescale Intercept -1024, Slope 1).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from fake_modalities.images.context import Equipment, PatientStudy
from fake_modalities.images.modules import (
    SeriesSpec,
    add_axial_plane,
    add_equipment,
    add_frame_of_reference,
    add_general_image,
    add_general_series,
    add_patient_and_study,
    add_sop_common,
    instance_uid,
    new_image,
    series_uid,
    set_monochrome_pixels,
    set_window,
    step,
)
from fake_modalities.images.phantom import HEAD, HEAD_REST, paint_slice, smooth3, tissue_table
from fake_modalities.images.rng import image_rng
from fake_modalities.images.uids import derive_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
"""CT Image Storage SOP Class UID."""

CT_EQUIPMENT = Equipment(
    model_name="SimCT 64",
    station_name="CT01",
    device_serial_number="CT64-0001",
)
"""The lab's CT scanner."""

_HU_OFFSET = 1024
_BITS_STORED = 12
_TABLE_SPEED_MM_S = 30.0


@dataclass(frozen=True, kw_only=True)
class CtSeriesSpec(SeriesSpec):
    """An axial CT series: size, geometry and technique."""

    slices: int = 32
    """Number of axial images."""
    rows: int = 512
    """Rows of each image."""
    columns: int = 512
    """Columns of each image."""
    slice_thickness: float = 5.0
    """Slice Thickness (0018,0050) in mm."""
    spacing: float | None = None
    """Distance between slice centres in mm (None: equal to the thickness, contiguous)."""
    reconstruction_diameter: float = 250.0
    """Field of view in mm; Pixel Spacing is this over the larger of rows and columns."""
    center_z: float = 0.0
    """Table position (z, mm) of the middle of the series."""
    kvp: float = 120.0
    """Peak kilovoltage."""
    tube_current_ma: int = 280
    """X-Ray Tube Current in mA."""
    exposure_time_ms: int = 1000
    """Exposure Time per rotation in ms."""
    convolution_kernel: str = "H30s"
    """Reconstruction kernel name."""
    noise_hu: float = 5.0
    """Standard deviation of the image noise in HU."""
    patient_position: str = "HFS"
    """Patient Position (0018,5100): head first, supine."""
    series_number: int = 2
    series_description: str = "Head 5.0 H30s"
    protocol_name: str = "Routine Head"
    body_part: str = "HEAD"
    equipment: Equipment = field(default_factory=lambda: CT_EQUIPMENT)

    @property
    def pixel_spacing(self) -> float:
        """Pixel Spacing in mm (square pixels)."""
        return self.reconstruction_diameter / max(self.rows, self.columns)

    @property
    def slice_spacing(self) -> float:
        """Distance between slice centres in mm."""
        return self.spacing if self.spacing is not None else self.slice_thickness


def ct_series(
    study: PatientStudy, spec: CtSeriesSpec | None = None, *, seed: int
) -> Iterator[Dataset]:
    """Yield the images of one axial CT series, first (inferior) to last (superior).

    Args:
        study: Patient and study attributes (from the worklist item).
        spec: Size, geometry and technique; the defaults make a 32-slice 512x512 head.
        seed: Makes the UIDs (unless the study brings its own) and the noise; same seed,
            same bytes.
    """
    spec = spec or CtSeriesSpec()
    if spec.slices < 1 or spec.rows < 1 or spec.columns < 1:
        raise ValueError("a CT series needs at least one slice of at least 1x1 pixels")
    series = series_uid(study, seed, "CT", spec.series_number)
    frame_of_reference = derive_uid(seed, "frame-of-reference", series)
    spacing = spec.pixel_spacing
    xs = (np.arange(spec.columns) - (spec.columns - 1) / 2.0) * spacing
    ys = (np.arange(spec.rows) - (spec.rows - 1) / 2.0) * spacing
    first_z = spec.center_z - (spec.slices - 1) / 2.0 * spec.slice_spacing
    hu_of = tissue_table("hu")
    shapes = HEAD + HEAD_REST
    seconds_per_slice = spec.slice_spacing / _TABLE_SPEED_MM_S
    ctdi = round(0.25 * spec.tube_current_ma * spec.exposure_time_ms / 1000.0 * 0.75, 2)

    for index in range(spec.slices):
        z = round(first_z + index * spec.slice_spacing, 4)
        acquired = step(spec.acquired_at, index * seconds_per_slice)
        content = step(spec.acquired_at, spec.slices * seconds_per_slice + 20.0)
        sop_instance = instance_uid(series, index + 1)
        ds = new_image(CT_IMAGE_STORAGE, sop_instance)
        add_patient_and_study(ds, study, spec, seed)
        add_general_series(
            ds,
            study,
            spec,
            modality="CT",
            series_instance_uid=series,
            patient_position=spec.patient_position,
        )
        add_frame_of_reference(ds, frame_of_reference)
        add_equipment(ds, spec.equipment)
        add_general_image(
            ds,
            instance_number=index + 1,
            image_type=["ORIGINAL", "PRIMARY", "AXIAL"],
            acquired=acquired,
            content=content,
        )
        add_axial_plane(
            ds,
            position=(float(xs[0]), float(ys[0]), z),
            pixel_spacing=spacing,
            slice_thickness=spec.slice_thickness,
            spacing_between_slices=spec.slice_spacing,
        )
        _add_ct_image(ds, spec, ctdi)

        rng = image_rng(seed, "CT", spec.series_number, index)
        hu = smooth3(hu_of[paint_slice(shapes, xs, ys, z)])
        hu += rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(spec.noise_hu)
        stored = np.clip(np.rint(hu) + _HU_OFFSET, 0, (1 << _BITS_STORED) - 1)
        set_monochrome_pixels(ds, stored.astype(np.uint16), bits_stored=_BITS_STORED)
        set_window(ds, [40, 400], [80, 1800], ["BRAIN", "BONE"])
        add_sop_common(ds, study, spec, content)
        yield ds


def _add_ct_image(ds: Dataset, spec: CtSeriesSpec, ctdi: float) -> None:
    """CT Image module (C.8.2.1) apart from Image Type and the pixel description."""
    ds.RescaleIntercept = str(-_HU_OFFSET)
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.KVP = f"{spec.kvp:g}"
    ds.ScanOptions = "HELICAL_CT"
    ds.DataCollectionDiameter = "500"
    ds.ReconstructionDiameter = f"{spec.reconstruction_diameter:g}"
    ds.DistanceSourceToDetector = "1040"
    ds.DistanceSourceToPatient = "570"
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "150"
    ds.RotationDirection = "CW"
    ds.ExposureTime = str(spec.exposure_time_ms)
    ds.XRayTubeCurrent = str(spec.tube_current_ma)
    ds.Exposure = str(spec.tube_current_ma * spec.exposure_time_ms // 1000)
    ds.FilterType = "HEAD"
    ds.GeneratorPower = str(round(spec.kvp * spec.tube_current_ma / 1000))
    ds.FocalSpots = "0.7"
    ds.ConvolutionKernel = spec.convolution_kernel
    ds.RevolutionTime = 1.0
    ds.SingleCollimationWidth = 0.6
    ds.TotalCollimationWidth = 38.4
    ds.TableSpeed = _TABLE_SPEED_MM_S
    ds.TableFeedPerRotation = _TABLE_SPEED_MM_S * 1.0  # one rotation a second
    ds.SpiralPitchFactor = 0.8
    ds.CTDIvol = ctdi
    phantom = Dataset()
    phantom.CodeValue = "113690"
    phantom.CodingSchemeDesignator = "DCM"
    phantom.CodeMeaning = "IEC Head Dosimetry Phantom"
    ds.CTDIPhantomTypeCodeSequence = Sequence([phantom])
