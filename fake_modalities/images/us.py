"""Ultrasound Image Storage (1.2.840.10008.5.1.4.1.1.6.1): B-mode stills of the right upper
quadrant from a curved-array probe.

Each image is made the way a scanner makes it: echoes along 256 beams of a sector (liver, a
gallbladder with a shadowing stone, a vessel, the kidney and the diaphragm), attenuated along
each beam and compensated by time-gain, with Rayleigh speckle from a complex scatterer field
blurred by the pulse, log-compressed to 8 bits and scan-converted to the sector. The US Region
Calibration module says how big a pixel is, so a viewer's calliper measures in millimetres.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

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
from fake_modalities.images.rng import image_rng

US_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"
"""Ultrasound Image Storage SOP Class UID."""

US_EQUIPMENT = Equipment(
    model_name="SimUS 5",
    station_name="US01",
    device_serial_number="US5-0001",
)
"""The lab's ultrasound scanner."""

_BEAMS = 256
_NEPER_PER_MM_MHZ = 0.00576
"""Soft tissue attenuation, 0.5 dB/cm/MHz, in nepers per mm per MHz (one way)."""


@dataclass(frozen=True, kw_only=True)
class UsSeriesSpec(SeriesSpec):
    """A B-mode series: how many stills, image size, probe and depth."""

    images: int = 3
    """Number of still images (the probe moves a little between them)."""
    rows: int = 600
    """Rows of each image."""
    columns: int = 800
    """Columns of each image."""
    depth_mm: float = 160.0
    """Imaging depth below the skin."""
    sector_deg: float = 70.0
    """Opening angle of the sector."""
    probe_radius_mm: float = 40.0
    """Radius of curvature of the curved-array probe face."""
    frequency_mhz: float = 3.5
    """Transmit frequency."""
    dynamic_range_db: float = 60.0
    """Range of echo amplitudes mapped from black to white."""
    series_number: int = 1
    series_description: str = "Abdomen RUQ"
    protocol_name: str = "Abdomen"
    body_part: str = "ABDOMEN"
    equipment: Equipment = field(default_factory=lambda: US_EQUIPMENT)


@dataclass(frozen=True)
class _Blob:
    """An elliptical structure in the scan plane (x lateral, y depth, mm)."""

    x: float
    y: float
    a: float
    b: float
    echo: float
    attenuation: float
    angle_deg: float = 0.0
    wall_mm: float = 0.0
    wall_echo: float = 0.0


_ANATOMY: tuple[_Blob, ...] = (
    _Blob(0.0, 380.0, 228.0, 228.0, 0.25, 1.0, wall_mm=3.0, wall_echo=2.5),  # diaphragm, lung
    _Blob(0.0, 380.0, 225.0, 225.0, 0.6, 1.0),  # liver above the diaphragm
    _Blob(25.0, 125.0, 40.0, 20.0, 0.3, 1.0, -10.0, wall_mm=1.5, wall_echo=1.2),  # kidney
    _Blob(25.0, 125.0, 22.0, 7.0, 1.1, 1.0, -10.0),  # renal sinus
    _Blob(-30.0, 95.0, 8.0, 8.0, 0.02, 0.05, wall_mm=1.5, wall_echo=1.6),  # portal vein
    _Blob(15.0, 65.0, 28.0, 14.0, 0.0, 0.04, 20.0, wall_mm=1.2, wall_echo=1.5),  # gallbladder
    _Blob(22.0, 74.0, 4.0, 4.0, 4.0, 60.0),  # gallstone: bright, with a shadow behind
)


def us_series(
    study: PatientStudy, spec: UsSeriesSpec | None = None, *, seed: int
) -> Iterator[Dataset]:
    """Yield the B-mode stills of one ultrasound series.

    Args:
        study: Patient and study attributes (from the worklist item).
        spec: Size, probe and depth; the defaults make three 600x800 abdominal stills.
        seed: Makes the UIDs (unless the study brings its own), the speckle and the probe's
            small moves between stills.
    """
    spec = spec or UsSeriesSpec()
    if spec.images < 1 or spec.rows < 8 or spec.columns < 8:
        raise ValueError("an ultrasound series needs at least one image of at least 8x8 pixels")
    series = series_uid(study, seed, "US", spec.series_number)
    geometry = _Geometry.of(spec)

    for index in range(spec.images):
        rng = image_rng(seed, "US", spec.series_number, index)
        acquired = step(spec.acquired_at, index * 20.0)
        ds = new_image(US_IMAGE_STORAGE, instance_uid(series, index + 1))
        add_patient_and_study(ds, study, spec, seed)
        add_general_series(ds, study, spec, modality="US", series_instance_uid=series)
        add_equipment(ds, spec.equipment)
        add_general_image(
            ds,
            instance_number=index + 1,
            image_type=["ORIGINAL", "PRIMARY", "ABDOMINAL", "0001"],
            acquired=acquired,
            content=acquired,
            patient_orientation=[],
        )
        pixels = geometry.scan_convert(_beam_data(spec, geometry, rng))
        set_monochrome_pixels(ds, pixels, bits_stored=8)
        _add_us_image(ds, spec, geometry)
        set_window(ds, [128.0], [256.0], ["B-MODE"])
        add_sop_common(ds, study, spec, acquired)
        yield ds


@dataclass(frozen=True)
class _Geometry:
    """Where the sector lies in the image: pixel size, skin line, beam angles and depths."""

    spec: UsSeriesSpec
    pixel_mm: float
    skin_row: float
    samples: int

    @classmethod
    def of(cls, spec: UsSeriesSpec) -> _Geometry:
        pixel_mm = spec.depth_mm * 1.08 / spec.rows
        samples = max(64, min(1024, round(spec.depth_mm / 0.25)))
        return cls(spec, pixel_mm, 0.03 * spec.rows, samples)

    @property
    def half_angle(self) -> float:
        return math.radians(self.spec.sector_deg) / 2.0

    def beam_points(self) -> tuple[np.ndarray, np.ndarray]:
        """Lateral x and depth y (mm) of every beam sample, shape beams x samples."""
        radius = self.spec.probe_radius_mm
        angles = np.linspace(-self.half_angle, self.half_angle, _BEAMS)[:, np.newaxis]
        depths = np.linspace(0.0, self.spec.depth_mm, self.samples)[np.newaxis, :]
        x = (radius + depths) * np.sin(angles)
        y = (radius + depths) * np.cos(angles) - radius
        return x, y

    def scan_convert(self, beams: np.ndarray) -> np.ndarray:
        """Map beam data (beams x samples, uint8) onto the image: the sector on black."""
        spec = self.spec
        radius = spec.probe_radius_mm
        cols = (np.arange(spec.columns) - (spec.columns - 1) / 2.0) * self.pixel_mm
        rows = (np.arange(spec.rows) - self.skin_row) * self.pixel_mm
        x = cols[np.newaxis, :]
        y = rows[:, np.newaxis] + radius
        depth = np.hypot(x, y) - radius
        angle = np.arctan2(x, y)
        inside = (depth >= 0) & (depth <= spec.depth_mm) & (np.abs(angle) <= self.half_angle)
        beam = (angle + self.half_angle) / (2 * self.half_angle) * (_BEAMS - 1)
        sample = np.rint(depth / spec.depth_mm * (self.samples - 1))
        beam = np.clip(beam, 0, _BEAMS - 1)
        sample = np.clip(sample, 0, self.samples - 1).astype(np.intp)
        low = np.floor(beam).astype(np.intp)
        high = np.minimum(low + 1, _BEAMS - 1)
        frac = (beam - low).astype(np.float32)
        data = beams.astype(np.float32)
        image = data[low, sample] * (1 - frac) + data[high, sample] * frac
        return np.where(inside, np.rint(image), 0).astype(np.uint8)

    def region(self) -> tuple[int, int, int, int]:
        """Bounding box (x0, y0, x1, y1) in pixels of the sector, for the region calibration."""
        spec = self.spec
        radius = spec.probe_radius_mm
        far = radius + spec.depth_mm
        half_width = far * math.sin(self.half_angle) / self.pixel_mm
        centre = (spec.columns - 1) / 2.0
        top = self.skin_row - radius * (1 - math.cos(self.half_angle)) / self.pixel_mm
        bottom = self.skin_row + spec.depth_mm / self.pixel_mm
        x0 = max(0, math.floor(centre - half_width))
        x1 = min(spec.columns - 1, math.ceil(centre + half_width))
        return x0, max(0, math.floor(top)), x1, min(spec.rows - 1, math.ceil(bottom))


def _beam_data(spec: UsSeriesSpec, geometry: _Geometry, rng: np.random.Generator) -> np.ndarray:
    """Log-compressed echo amplitudes along each beam (beams x samples, uint8)."""
    x, y = geometry.beam_points()
    dx, dy = rng.normal(0.0, 3.0, size=2)
    echo, attenuation = _tissue(x - dx, y - dy)

    sample_mm = spec.depth_mm / (geometry.samples - 1)
    # what the pulse lost on its way to (not through) each sample: a stone echoes, then shadows
    passed = np.cumsum(attenuation, axis=1) - attenuation
    loss = passed * (2.0 * _NEPER_PER_MM_MHZ * spec.frequency_mhz)
    gain = np.arange(geometry.samples) * (2.0 * _NEPER_PER_MM_MHZ * spec.frequency_mhz)
    amplitude = echo * np.exp((gain[np.newaxis, :] - loss) * sample_mm)

    noise = rng.standard_normal((2, *echo.shape), dtype=np.float32) / np.float32(math.sqrt(2))
    field_ = (noise[0] + 1j * noise[1]) * amplitude
    field_ = _blur(field_, axis=1, sigma=2.0)
    field_ = _blur(field_, axis=0, sigma=1.3)
    envelope = np.abs(field_) + 1e-6

    reference = 0.886 * 10 ** (26.0 / 20.0)
    db = 20.0 * np.log10(envelope / reference)
    grey = (db + spec.dynamic_range_db) / spec.dynamic_range_db * 255.0
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


def _tissue(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Echogenicity and relative attenuation at points of the scan plane (mm)."""
    echo = np.full(x.shape, 0.6, dtype=np.float32)
    attenuation = np.ones(x.shape, dtype=np.float32)
    echo[y < 24.0] = 0.45  # muscle
    echo[y < 14.0] = 0.35  # subcutaneous fat
    echo[y < 2.0] = 1.2  # skin
    echo[(y >= 23.0) & (y < 25.0)] = 1.6  # fascia
    for blob in _ANATOMY:
        theta = math.radians(blob.angle_deg)
        cos, sin = math.cos(theta), math.sin(theta)
        u = ((x - blob.x) * cos + (y - blob.y) * sin) / blob.a
        v = (-(x - blob.x) * sin + (y - blob.y) * cos) / blob.b
        r = np.sqrt(u * u + v * v)
        inside = r <= 1.0
        echo[inside] = blob.echo
        attenuation[inside] = blob.attenuation
        if blob.wall_mm:
            wall = (r > 1.0) & (r <= 1.0 + blob.wall_mm / min(blob.a, blob.b))
            echo[wall] = blob.wall_echo
    return echo, attenuation


def _blur(values: np.ndarray, axis: int, sigma: float) -> np.ndarray:
    """Gaussian blur along one axis (the pulse's length or the beam's width), unit energy."""
    taps = np.arange(-3, 4)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    kernel /= math.sqrt(float((kernel**2).sum()))
    out = np.zeros_like(values)
    length = values.shape[axis]
    for tap, weight in zip(taps, kernel, strict=True):
        shifted = np.roll(values, int(tap), axis=axis)
        if tap > 0:
            np.put_along_axis(shifted, np.arange(tap).reshape(_shape(axis, tap)), 0, axis)
        elif tap < 0:
            idx = np.arange(length + tap, length).reshape(_shape(axis, -tap))
            np.put_along_axis(shifted, idx, 0, axis)
        out += weight * shifted
    return out


def _shape(axis: int, n: int) -> tuple[int, int]:
    return (1, n) if axis == 1 else (n, 1)


def _add_us_image(ds: Dataset, spec: UsSeriesSpec, geometry: _Geometry) -> None:
    """US Image (C.8.5.6) and US Region Calibration (C.8.5.5) apart from the pixels."""
    ds.TransducerData = "C5-2"
    ds.ProcessingFunction = "ABDOMEN"
    ds.MechanicalIndex = "1.1"
    ds.SoftTissueThermalIndex = "0.4"
    ds.DepthOfScanField = str(round(spec.depth_mm))

    x0, y0, x1, y1 = geometry.region()
    region = Dataset()
    region.RegionSpatialFormat = 1  # 2D (tissue or flow)
    region.RegionDataType = 1  # tissue
    region.RegionFlags = 0
    region.RegionLocationMinX0 = x0
    region.RegionLocationMinY0 = y0
    region.RegionLocationMaxX1 = x1
    region.RegionLocationMaxY1 = y1
    region.ReferencePixelX0 = round((spec.columns - 1) / 2.0)
    region.ReferencePixelY0 = round(geometry.skin_row)
    region.PhysicalUnitsXDirection = 3  # cm
    region.PhysicalUnitsYDirection = 3
    region.ReferencePixelPhysicalValueX = 0.0
    region.ReferencePixelPhysicalValueY = 0.0
    region.PhysicalDeltaX = round(geometry.pixel_mm / 10.0, 8)
    region.PhysicalDeltaY = round(geometry.pixel_mm / 10.0, 8)
    region.TransducerFrequency = round(spec.frequency_mhz * 1000)
    ds.SequenceOfUltrasoundRegions = Sequence([region])
