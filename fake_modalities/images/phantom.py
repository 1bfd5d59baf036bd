"""Analytic phantoms: a 3-D head made of ellipsoids (after Shepp & Logan, and Kak & Slaney's
3-D version) labelled by tissue, and a chest for projection radiography.

Coordinates are the patient's, in millimetres (DICOM LPS: +x to the patient's left, +y
posterior, +z superior). A slice is painted as tissue labels; each modality maps labels to its
own physics (Hounsfield units for CT, proton density and relaxation times for MR).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class Tissue(IntEnum):
    """Tissue labels of the phantoms (the values of a label image)."""

    AIR = 0
    SKIN = 1
    BONE = 2
    GRAY_MATTER = 3
    WHITE_MATTER = 4
    CSF = 5
    LESION = 6
    FAT = 7
    TABLE = 8


@dataclass(frozen=True)
class TissueProperties:
    """What each modality sees of a tissue (values at 1.5 T for MR)."""

    hu: float
    """CT number in Hounsfield units."""
    proton_density: float
    """Relative MR proton density (0 to 1)."""
    t1_ms: float
    """Longitudinal relaxation time."""
    t2_ms: float
    """Transverse relaxation time."""


TISSUES: dict[Tissue, TissueProperties] = {
    Tissue.AIR: TissueProperties(hu=-1000, proton_density=0.0, t1_ms=1, t2_ms=1),
    Tissue.SKIN: TissueProperties(hu=30, proton_density=0.75, t1_ms=850, t2_ms=50),
    Tissue.BONE: TissueProperties(hu=1100, proton_density=0.05, t1_ms=250, t2_ms=1),
    Tissue.GRAY_MATTER: TissueProperties(hu=40, proton_density=0.82, t1_ms=950, t2_ms=100),
    Tissue.WHITE_MATTER: TissueProperties(hu=28, proton_density=0.70, t1_ms=600, t2_ms=80),
    Tissue.CSF: TissueProperties(hu=8, proton_density=1.0, t1_ms=4000, t2_ms=2000),
    Tissue.LESION: TissueProperties(hu=65, proton_density=0.88, t1_ms=1100, t2_ms=140),
    Tissue.FAT: TissueProperties(hu=-95, proton_density=0.9, t1_ms=260, t2_ms=80),
    Tissue.TABLE: TissueProperties(hu=180, proton_density=0.0, t1_ms=1, t2_ms=1),
}


def _rotated_extent(a: float, b: float, cos: float, sin: float) -> tuple[float, float]:
    """Half width and half height of the box around an ellipse with semi-axes a, b turned."""
    return math.hypot(a * cos, b * sin), math.hypot(a * sin, b * cos)


@dataclass(frozen=True)
class Ellipsoid:
    """An ellipsoid of one tissue, turned by `angle_deg` about the z axis."""

    center: tuple[float, float, float]
    semi_axes: tuple[float, float, float]
    tissue: Tissue
    angle_deg: float = 0.0

    def paint(self, labels: np.ndarray, xs: np.ndarray, ys: np.ndarray, z: float) -> None:
        """Set `labels` to this tissue where the axial plane at `z` cuts the ellipsoid.

        `xs` (columns) and `ys` (rows) are the ascending patient coordinates of pixel centres.
        """
        cx, cy, cz = self.center
        a, b, c = self.semi_axes
        dz = (z - cz) / c
        if abs(dz) >= 1.0:
            return
        shrink = math.sqrt(1.0 - dz * dz)
        a, b = a * shrink, b * shrink
        theta = math.radians(self.angle_deg)
        cos, sin = math.cos(theta), math.sin(theta)
        half_x, half_y = _rotated_extent(a, b, cos, sin)
        c0, c1 = np.searchsorted(xs, [cx - half_x, cx + half_x])
        r0, r1 = np.searchsorted(ys, [cy - half_y, cy + half_y])
        if c0 >= c1 or r0 >= r1:
            return
        dx = xs[c0:c1][np.newaxis, :] - cx
        dy = ys[r0:r1][:, np.newaxis] - cy
        u = (dx * cos + dy * sin) / a
        v = (-dx * sin + dy * cos) / b
        inside = u * u + v * v <= 1.0
        labels[r0:r1, c0:c1][inside] = self.tissue


@dataclass(frozen=True)
class Slab:
    """An axis-aligned box of one tissue (a patient table, a head rest)."""

    low: tuple[float, float, float]
    high: tuple[float, float, float]
    tissue: Tissue

    def paint(self, labels: np.ndarray, xs: np.ndarray, ys: np.ndarray, z: float) -> None:
        """Set `labels` to this tissue inside the box, on the axial plane at `z`."""
        if not self.low[2] <= z <= self.high[2]:
            return
        c0, c1 = np.searchsorted(xs, [self.low[0], self.high[0]])
        r0, r1 = np.searchsorted(ys, [self.low[1], self.high[1]])
        labels[r0:r1, c0:c1] = self.tissue


HEAD_SCALE_MM = 100.0
"""Half the height of the Shepp-Logan head in millimetres (the unit of its normalised shapes)."""


def _sl(
    x: float, y: float, z: float, a: float, b: float, c: float, tissue: Tissue, angle: float = 0
) -> Ellipsoid:
    """A Shepp-Logan ellipsoid from normalised coordinates (y up the image = anterior)."""
    s = HEAD_SCALE_MM
    return Ellipsoid((x * s, -y * s, z * s), (a * s, b * s, c * s), tissue, -angle)


HEAD: tuple[Ellipsoid | Slab, ...] = (
    _sl(0, 0, 0, 0.745, 0.975, 0.95, Tissue.SKIN),
    _sl(0, 0, 0, 0.72, 0.95, 0.925, Tissue.FAT),
    _sl(0, 0, 0, 0.69, 0.92, 0.90, Tissue.BONE),
    _sl(0, -0.0184, 0, 0.6624, 0.874, 0.88, Tissue.GRAY_MATTER),
    _sl(0, -0.02, 0.05, 0.52, 0.72, 0.70, Tissue.WHITE_MATTER),
    _sl(0.22, 0, -0.25, 0.11, 0.31, 0.22, Tissue.CSF, -18),
    _sl(-0.22, 0, -0.25, 0.16, 0.41, 0.21, Tissue.CSF, 18),
    _sl(0, 0.35, -0.25, 0.21, 0.25, 0.35, Tissue.GRAY_MATTER),
    _sl(0, 0.1, -0.25, 0.046, 0.046, 0.046, Tissue.LESION),
    _sl(0, -0.1, -0.25, 0.046, 0.046, 0.046, Tissue.CSF),
    _sl(-0.08, -0.605, -0.25, 0.046, 0.023, 0.02, Tissue.LESION),
    _sl(0.06, -0.605, -0.25, 0.023, 0.046, 0.02, Tissue.LESION),
    _sl(0.06, -0.105, 0.625, 0.056, 0.04, 0.1, Tissue.LESION, 90),
    _sl(0, 0.1, 0.625, 0.056, 0.056, 0.1, Tissue.LESION),
    _sl(-0.3, 0.25, 0.35, 0.09, 0.12, 0.08, Tissue.LESION, 30),
)
"""A head: scalp, fat, skull, gray and white matter, ventricles and a few lesions."""

HEAD_REST: tuple[Ellipsoid | Slab, ...] = (
    Slab((-110.0, 100.0, -1000.0), (110.0, 108.0, 1000.0), Tissue.TABLE),
)
"""The CT table's head rest under the patient (posterior), in every axial slice."""


def paint_slice(
    shapes: tuple[Ellipsoid | Slab, ...], xs: np.ndarray, ys: np.ndarray, z: float
) -> np.ndarray:
    """Tissue labels (uint8, rows x columns) of the axial plane at `z`; later shapes win."""
    labels = np.zeros((len(ys), len(xs)), dtype=np.uint8)
    for shape in shapes:
        shape.paint(labels, xs, ys, z)
    return labels


def tissue_table(attribute: str) -> np.ndarray:
    """A lookup array label → one property of TISSUES (e.g. ``"hu"``), as float32."""
    table = np.zeros(max(Tissue) + 1, dtype=np.float32)
    for tissue, props in TISSUES.items():
        table[tissue] = getattr(props, attribute)
    return table


def smooth3(image: np.ndarray) -> np.ndarray:
    """A 3x3 binomial blur (edges replicated): the soft edges a reconstruction kernel leaves."""
    padded = np.pad(image, 1, mode="edge")
    rows = padded[:-2, :] + 2 * padded[1:-1, :] + padded[2:, :]
    return (rows[:, :-2] + 2 * rows[:, 1:-1] + rows[:, 2:]) / 16.0


@dataclass(frozen=True)
class ProjectedEllipsoid:
    """An ellipsoid seen by a projection along y: its path length times an attenuation.

    `angle_deg` turns it in the x-z (coronal) plane; `mu_per_mm` is its attenuation relative to
    what it displaces (negative for air in the lungs).
    """

    center: tuple[float, float, float]
    semi_axes: tuple[float, float, float]
    mu_per_mm: float
    angle_deg: float = 0.0

    def add_to(self, line_integral: np.ndarray, xs: np.ndarray, zs: np.ndarray) -> None:
        """Add μ·(path length through the ellipsoid) at each (z row, x column) of the detector.

        `xs` ascends; `zs` descends (row 0 is the top of a radiograph: superior).
        """
        cx, _, cz = self.center
        a, b, c = self.semi_axes
        theta = math.radians(self.angle_deg)
        cos, sin = math.cos(theta), math.sin(theta)
        half_x, half_z = _rotated_extent(a, c, cos, sin)
        c0, c1 = np.searchsorted(xs, [cx - half_x, cx + half_x])
        r0, r1 = np.searchsorted(-zs, [-(cz + half_z), -(cz - half_z)])
        if c0 >= c1 or r0 >= r1:
            return
        dx = xs[c0:c1][np.newaxis, :] - cx
        dz = zs[r0:r1][:, np.newaxis] - cz
        u = (dx * cos + dz * sin) / a
        v = (-dx * sin + dz * cos) / c
        inside = np.clip(1.0 - u * u - v * v, 0.0, None)
        line_integral[r0:r1, c0:c1] += (2.0 * b * self.mu_per_mm) * np.sqrt(inside)


@dataclass(frozen=True)
class ProjectedArc:
    """A rib seen on a radiograph: a band of bone along the upper arc of an ellipse.

    The band follows the ellipse with centre `center` (x, z) and semi-axes `semi_axes` (x, z),
    is `width` mm wide, and only the part whose x lies between `x_range` is drawn. Across the
    band the bone is a cylinder of diameter `width`.
    """

    center: tuple[float, float]
    semi_axes: tuple[float, float]
    width: float
    x_range: tuple[float, float]
    mu_per_mm: float

    def add_to(self, line_integral: np.ndarray, xs: np.ndarray, zs: np.ndarray) -> None:
        """Add μ·(path length through the rib) at each (z row, x column) of the detector."""
        cx, cz = self.center
        a, c = self.semi_axes
        c0, c1 = np.searchsorted(xs, list(self.x_range))
        r0, r1 = np.searchsorted(-zs, [-(cz + c + self.width), -(cz - self.width)])
        if c0 >= c1 or r0 >= r1:
            return
        dx = (xs[c0:c1][np.newaxis, :] - cx) / a
        dz = (zs[r0:r1][:, np.newaxis] - cz) / c
        # distance (mm, approximately) from the ellipse, for points above its centre
        radius = np.sqrt(dx * dx + dz * dz)
        scale = np.sqrt((a * dx) ** 2 + (c * dz) ** 2) / np.maximum(radius, 1e-6)
        distance = (radius - 1.0) * scale
        half = self.width / 2.0
        chord = np.clip(1.0 - (distance / half) ** 2, 0.0, None)
        chord *= dz >= 0.1
        line_integral[r0:r1, c0:c1] += (self.width * self.mu_per_mm) * np.sqrt(chord)


MU_SOFT = 0.020
"""Linear attenuation of soft tissue per mm at a chest radiograph's effective energy."""
MU_BONE = 0.048
"""Linear attenuation of cortical bone per mm."""


def _ribs() -> list[ProjectedArc]:
    """Ten posterior ribs a side: arcs rising from the spine and curving down laterally."""
    ribs = []
    for side in (-1, 1):
        for k in range(10):
            top = 170.0 - k * 25.0
            a = 100.0 + 5.0 * k
            c = 70.0 + 4.0 * k
            cx = side * 55.0
            reach = 55.0 + a + 10.0
            x_range = (14.0, reach) if side > 0 else (-reach, -14.0)
            ribs.append(ProjectedArc((cx, top - c), (a, c), 10.0, x_range, 1.2 * MU_BONE))
    return ribs


CHEST: tuple[ProjectedEllipsoid | ProjectedArc, ...] = (
    ProjectedEllipsoid((0.0, 0.0, -20.0), (165.0, 105.0, 320.0), MU_SOFT),
    ProjectedEllipsoid((-200.0, 0.0, 120.0), (45.0, 45.0, 120.0), MU_SOFT, 15.0),
    ProjectedEllipsoid((200.0, 0.0, 120.0), (45.0, 45.0, 120.0), MU_SOFT, -15.0),
    ProjectedEllipsoid((-80.0, 5.0, 25.0), (64.0, 75.0, 150.0), -0.85 * MU_SOFT, -6.0),
    ProjectedEllipsoid((82.0, 5.0, 20.0), (60.0, 75.0, 145.0), -0.85 * MU_SOFT, 6.0),
    ProjectedEllipsoid((28.0, -15.0, -60.0), (75.0, 55.0, 55.0), 0.4 * MU_SOFT, -25.0),
    ProjectedEllipsoid((0.0, -10.0, 60.0), (22.0, 35.0, 110.0), 0.4 * MU_SOFT),
    ProjectedEllipsoid((0.0, 55.0, -20.0), (17.0, 17.0, 400.0), MU_BONE - MU_SOFT),
    ProjectedEllipsoid((-70.0, -45.0, 178.0), (75.0, 9.0, 8.0), MU_BONE - MU_SOFT, 10.0),
    ProjectedEllipsoid((70.0, -45.0, 178.0), (75.0, 9.0, 8.0), MU_BONE - MU_SOFT, -10.0),
    ProjectedEllipsoid((-205.0, 0.0, 150.0), (18.0, 18.0, 140.0), MU_BONE - MU_SOFT, 8.0),
    ProjectedEllipsoid((205.0, 0.0, 150.0), (18.0, 18.0, 140.0), MU_BONE - MU_SOFT, -8.0),
    *_ribs(),
)
"""A chest for a PA radiograph: thorax, shoulders, lungs, heart, spine, clavicles, ribs."""
