"""MR Image Storage (1.2.840.10008.5.1.4.1.1.4): an axial 2-D head series from the phantom.

Each tissue's signal follows the spin-echo (or inversion-recovery) equation from its proton
density, T1 and T2 at the series' TR, TE and TI, so T1, T2, PD and FLAIR series contrast the way
a radiologist expects (CSF dark on T1 and FLAIR, bright on T2). Noise is Rician, as in a
magnitude image.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from pydicom.dataset import Dataset

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
from fake_modalities.images.phantom import HEAD, Tissue, paint_slice, smooth3, tissue_table
from fake_modalities.images.rng import image_rng
from fake_modalities.images.uids import derive_uid

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
"""MR Image Storage SOP Class UID."""

MR_EQUIPMENT = Equipment(
    model_name="SimMR 1.5T",
    station_name="MR01",
    device_serial_number="MR15-0001",
)
"""The lab's MR scanner."""

Weighting = Literal["T1", "T2", "PD", "FLAIR"]

_BITS_STORED = 12
_FULL_SCALE = 2000.0


@dataclass(frozen=True)
class _Sequence:
    """A pulse sequence preset: what the console would show for the protocol."""

    scanning_sequence: list[str]
    sequence_variant: list[str]
    sequence_name: str
    repetition_time: float
    echo_time: float
    inversion_time: float | None
    echo_train_length: int
    flip_angle: float


_SEQUENCES: dict[str, _Sequence] = {
    "T1": _Sequence(["SE"], ["SP"], "*se2d1", 500.0, 12.0, None, 1, 90.0),
    "T2": _Sequence(["SE"], ["SK", "SP"], "*tse2d1_15", 4000.0, 95.0, None, 15, 150.0),
    "PD": _Sequence(["SE"], ["SK", "SP"], "*tse2d1_7", 3000.0, 12.0, None, 7, 150.0),
    "FLAIR": _Sequence(["SE", "IR"], ["SK", "SP"], "*tir2d1_16", 9000.0, 90.0, 2500.0, 16, 150.0),
}


@dataclass(frozen=True, kw_only=True)
class MrSeriesSpec(SeriesSpec):
    """An axial 2-D MR series: contrast, size, geometry."""

    weighting: Weighting = "T2"
    """Contrast: T1, T2, PD (spin echo / turbo spin echo) or FLAIR (inversion recovery)."""
    slices: int = 20
    """Number of axial images."""
    rows: int = 256
    """Rows of each image."""
    columns: int = 256
    """Columns of each image."""
    slice_thickness: float = 5.0
    """Slice Thickness in mm."""
    slice_gap: float = 1.0
    """Gap between slices in mm (Spacing Between Slices = thickness + gap)."""
    field_of_view: float = 230.0
    """Field of view in mm over the larger of rows and columns."""
    center_z: float = 0.0
    """z (mm) of the middle of the series."""
    field_strength: float = 1.5
    """Magnetic Field Strength in tesla."""
    noise: float = 0.012
    """Noise standard deviation as a fraction of full scale."""
    patient_position: str = "HFS"
    """Patient Position (0018,5100)."""
    series_number: int = 3
    series_description: str = ""
    protocol_name: str = "Brain Routine"
    body_part: str = "HEAD"
    equipment: Equipment = field(default_factory=lambda: MR_EQUIPMENT)

    @property
    def pixel_spacing(self) -> float:
        """Pixel Spacing in mm (square pixels)."""
        return self.field_of_view / max(self.rows, self.columns)

    @property
    def slice_spacing(self) -> float:
        """Distance between slice centres in mm."""
        return self.slice_thickness + self.slice_gap


def mr_series(
    study: PatientStudy, spec: MrSeriesSpec | None = None, *, seed: int
) -> Iterator[Dataset]:
    """Yield the images of one axial MR series, inferior to superior.

    Args:
        study: Patient and study attributes (from the worklist item).
        spec: Contrast, size and geometry; the defaults make a 20-slice 256x256 T2 head.
        seed: Makes the UIDs (unless the study brings its own) and the noise.
    """
    spec = spec or MrSeriesSpec()
    if spec.slices < 1 or spec.rows < 1 or spec.columns < 1:
        raise ValueError("an MR series needs at least one slice of at least 1x1 pixels")
    seq = _SEQUENCES[spec.weighting]
    description = spec.series_description or f"{spec.weighting.lower()}_tra"
    spec_for_series = replace(spec, series_description=description)
    series = series_uid(study, seed, "MR", spec.series_number)
    frame_of_reference = derive_uid(seed, "frame-of-reference", series)
    spacing = spec.pixel_spacing
    xs = (np.arange(spec.columns) - (spec.columns - 1) / 2.0) * spacing
    ys = (np.arange(spec.rows) - (spec.rows - 1) / 2.0) * spacing
    first_z = spec.center_z - (spec.slices - 1) / 2.0 * spec.slice_spacing
    signal_of = _signal_table(seq)
    sigma = np.float32(spec.noise * _FULL_SCALE)
    center, width = _brain_window(signal_of, float(sigma))
    scan_seconds = seq.repetition_time / 1000.0 * spec.rows / seq.echo_train_length * 2
    content = step(spec.acquired_at, scan_seconds + 5.0)

    for index in range(spec.slices):
        z = round(first_z + index * spec.slice_spacing, 4)
        ds = new_image(MR_IMAGE_STORAGE, instance_uid(series, index + 1))
        add_patient_and_study(ds, study, spec_for_series, seed)
        add_general_series(
            ds,
            study,
            spec_for_series,
            modality="MR",
            series_instance_uid=series,
            patient_position=spec.patient_position,
        )
        add_frame_of_reference(ds, frame_of_reference)
        add_equipment(ds, spec.equipment)
        add_general_image(
            ds,
            instance_number=index + 1,
            image_type=["ORIGINAL", "PRIMARY", "OTHER"],
            acquired=spec.acquired_at,
            content=content,
        )
        add_axial_plane(
            ds,
            position=(float(xs[0]), float(ys[0]), z),
            pixel_spacing=spacing,
            slice_thickness=spec.slice_thickness,
            spacing_between_slices=spec.slice_spacing,
        )
        _add_mr_image(ds, spec, seq)

        rng = image_rng(seed, "MR", spec.series_number, index)
        signal = smooth3(signal_of[paint_slice(HEAD, xs, ys, z)])
        real = signal + rng.standard_normal(signal.shape, dtype=np.float32) * sigma
        imag = rng.standard_normal(signal.shape, dtype=np.float32) * sigma
        magnitude = np.sqrt(real * real + imag * imag)
        stored = np.clip(np.rint(magnitude), 0, (1 << _BITS_STORED) - 1).astype(np.uint16)
        set_monochrome_pixels(ds, stored, bits_stored=_BITS_STORED)
        set_window(ds, [center], [width], [spec.weighting])
        add_sop_common(ds, study, spec_for_series, content)
        yield ds


def _signal_table(seq: _Sequence) -> np.ndarray:
    """Signal of each tissue label for this sequence, scaled so the brightest is full scale."""
    pd = tissue_table("proton_density").astype(np.float64)
    t1 = tissue_table("t1_ms").astype(np.float64)
    t2 = tissue_table("t2_ms").astype(np.float64)
    recovery = np.exp(-seq.repetition_time / t1)
    if seq.inversion_time is not None:
        longitudinal = np.abs(1.0 - 2.0 * np.exp(-seq.inversion_time / t1) + recovery)
    else:
        longitudinal = 1.0 - recovery
    signal = pd * longitudinal * np.exp(-seq.echo_time / t2)
    return (signal / signal.max() * _FULL_SCALE).astype(np.float32)


def _brain_window(signal_of: np.ndarray, sigma: float) -> tuple[float, float]:
    """A window spanning the brain's tissues (what a technologist would set for reading)."""
    brain = [Tissue.GRAY_MATTER, Tissue.WHITE_MATTER, Tissue.CSF, Tissue.LESION]
    values = signal_of[brain]
    low, high = float(values.min()), float(values.max())
    width = max((high - low) * 1.4, 8.0 * sigma)
    return round((low + high) / 2.0), round(width)


def _add_mr_image(ds: Dataset, spec: MrSeriesSpec, seq: _Sequence) -> None:
    """MR Image module (C.8.3.1) apart from Image Type and the pixel description."""
    ds.ScanningSequence = seq.scanning_sequence
    ds.SequenceVariant = seq.sequence_variant
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.SequenceName = seq.sequence_name
    ds.AngioFlag = "N"
    ds.RepetitionTime = f"{seq.repetition_time:g}"
    ds.EchoTime = f"{seq.echo_time:g}"
    if seq.inversion_time is not None:
        ds.InversionTime = f"{seq.inversion_time:g}"
    ds.EchoTrainLength = str(seq.echo_train_length)
    ds.NumberOfAverages = "1"
    ds.ImagingFrequency = f"{42.577478 * spec.field_strength:.6f}"
    ds.ImagedNucleus = "1H"
    ds.EchoNumbers = "1"
    ds.MagneticFieldStrength = f"{spec.field_strength:g}"
    ds.NumberOfPhaseEncodingSteps = str(round(spec.columns * 0.75))
    ds.PercentSampling = "100"
    ds.PercentPhaseFieldOfView = "100"
    ds.PixelBandwidth = "200"
    ds.ReceiveCoilName = "Head_20"
    ds.TransmitCoilName = "Body"
    ds.AcquisitionMatrix = [spec.rows, 0, 0, round(spec.columns * 0.75)]
    ds.InPlanePhaseEncodingDirection = "ROW"
    ds.FlipAngle = f"{seq.flip_angle:g}"
    ds.VariableFlipAngleFlag = "N"
    ds.SAR = "0.8"
    ds.dBdt = "0"
