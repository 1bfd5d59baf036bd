"""Computed Radiography Image Storage (1.2.840.10008.5.1.4.1.1.1): a PA chest radiograph.

The image is a projection of the chest phantom: each pixel is the line integral of attenuation
along the beam (analytic through each ellipsoid), with quantum noise that grows where fewer
photons reach the plate, mapped to 12 bits the way a CR reader's processing shows it (bone
bright, lungs dark, MONOCHROME2).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset

from fake_modalities.images.context import Equipment, PatientStudy
from fake_modalities.images.modules import (
    SeriesSpec,
    add_equipment,
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
from fake_modalities.images.phantom import CHEST, smooth3
from fake_modalities.images.rng import image_rng

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
"""Computed Radiography Image Storage SOP Class UID."""

CR_EQUIPMENT = Equipment(
    model_name="SimCR Reader",
    station_name="CR01",
    device_serial_number="CR-0001",
)
"""The lab's CR reader."""

_BITS_STORED = 12
_MAX_LINE_INTEGRAL = 6.0
"""Attenuation (μ·L) shown at full scale: the densest path through the spine and heart."""


@dataclass(frozen=True, kw_only=True)
class CrSeriesSpec(SeriesSpec):
    """A CR chest series: plate size, resolution and technique."""

    images: int = 1
    """Number of exposures in the series (each a little different, as a repeat would be)."""
    rows: int = 2150
    """Rows of the image (43 cm plate at 0.2 mm)."""
    columns: int = 1750
    """Columns of the image (35 cm plate at 0.2 mm)."""
    field_height: float = 430.0
    """Height of the imaged field in mm (Imager Pixel Spacing = this over rows)."""
    kvp: float = 125.0
    """Peak kilovoltage."""
    exposure_mas: float = 2.5
    """Tube current-time product in mAs."""
    photons_per_pixel: float = 20000.0
    """Photons reaching a pixel with nothing in the beam; fewer means noisier images."""
    view_position: str = "PA"
    """View Position (0018,5101)."""
    series_number: int = 1
    series_description: str = "Chest PA"
    protocol_name: str = "Chest PA"
    body_part: str = "CHEST"
    equipment: Equipment = field(default_factory=lambda: CR_EQUIPMENT)

    @property
    def pixel_spacing(self) -> float:
        """Imager Pixel Spacing in mm (square pixels)."""
        return self.field_height / self.rows


def cr_series(
    study: PatientStudy, spec: CrSeriesSpec | None = None, *, seed: int
) -> Iterator[Dataset]:
    """Yield the radiographs of one CR series.

    Args:
        study: Patient and study attributes (from the worklist item).
        spec: Size and technique; the defaults make one 2150x1750 PA chest.
        seed: Makes the UIDs (unless the study brings its own), the noise and the small
            differences in positioning between exposures.
    """
    spec = spec or CrSeriesSpec()
    if spec.images < 1 or spec.rows < 1 or spec.columns < 1:
        raise ValueError("a CR series needs at least one image of at least 1x1 pixels")
    series = series_uid(study, seed, "CR", spec.series_number)
    spacing = spec.pixel_spacing
    scale = ((1 << _BITS_STORED) - 1) / _MAX_LINE_INTEGRAL

    for index in range(spec.images):
        rng = image_rng(seed, "CR", spec.series_number, index)
        shift_x, shift_z = rng.normal(0.0, 6.0, size=2)
        xs = (np.arange(spec.columns) - (spec.columns - 1) / 2.0) * spacing - shift_x
        zs = ((spec.rows - 1) / 2.0 - np.arange(spec.rows)) * spacing - shift_z
        acquired = step(spec.acquired_at, index * 45.0)
        content = step(acquired, 30.0)

        ds = new_image(CR_IMAGE_STORAGE, instance_uid(series, index + 1))
        add_patient_and_study(ds, study, spec, seed)
        add_general_series(ds, study, spec, modality="CR", series_instance_uid=series)
        ds.ViewPosition = spec.view_position
        ds.PlateType = "ST-VI"
        ds.PhosphorType = "BaFBr:Eu"
        add_equipment(ds, spec.equipment)
        add_general_image(
            ds,
            instance_number=index + 1,
            image_type=["ORIGINAL", "PRIMARY"],
            acquired=acquired,
            content=content,
            patient_orientation=["L", "F"],
        )
        _add_cr_image(ds, spec)

        line_integral = np.zeros((spec.rows, spec.columns), dtype=np.float32)
        for shape in CHEST:
            shape.add_to(line_integral, xs, zs)
        line_integral = smooth3(line_integral)
        photons = spec.photons_per_pixel * np.exp(-line_integral)
        noise = rng.standard_normal(line_integral.shape, dtype=np.float32)
        line_integral += noise / np.sqrt(np.maximum(photons, 1.0)).astype(np.float32)
        stored = np.clip(np.rint(line_integral * scale), 0, (1 << _BITS_STORED) - 1)
        set_monochrome_pixels(ds, stored.astype(np.uint16), bits_stored=_BITS_STORED)
        set_window(ds, [2300.0], [3200.0], ["CHEST"])
        add_sop_common(ds, study, spec, content)
        yield ds


def _add_cr_image(ds: Dataset, spec: CrSeriesSpec) -> None:
    """CR Image module (C.8.1.2) apart from the pixel description."""
    ds.KVP = f"{spec.kvp:g}"
    ds.PlateID = "PLATE-0042"
    ds.DistanceSourceToDetector = "1800"
    ds.ExposureTime = "10"
    ds.XRayTubeCurrent = str(round(spec.exposure_mas / 0.010))
    ds.Exposure = str(round(spec.exposure_mas))
    ds.ExposureInuAs = round(spec.exposure_mas * 1000)
    ds.ImagerPixelSpacing = [f"{spec.pixel_spacing:.6g}"] * 2
    ds.GeneratorPower = str(round(spec.kvp * spec.exposure_mas / 0.010 / 1000))
    ds.AcquisitionDeviceProcessingDescription = "CHEST PA"
    ds.CassetteOrientation = "PORTRAIT"
    ds.CassetteSize = "35CMX43CM"
    ds.ExposuresOnPlate = 1
    ds.RelativeXRayExposure = "1850"
    ds.Sensitivity = "200"
