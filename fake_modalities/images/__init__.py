"""Synthetic but realistic DICOM images for the fake modalities, deterministic from a seed.

Each generator takes the patient and study (as copied from a worklist item), a series spec and
a seed, and yields pydicom datasets with Part 10 file meta (Explicit VR Little Endian), ready
for `write_series` or a Storage SCU. This package imports nothing of simlab but its common layer.
"""

from fake_modalities.images.context import Equipment, PatientStudy
from fake_modalities.images.cr import CR_IMAGE_STORAGE, CrSeriesSpec, cr_series
from fake_modalities.images.ct import CT_IMAGE_STORAGE, CtSeriesSpec, ct_series
from fake_modalities.images.modules import SeriesSpec, write_dataset, write_series
from fake_modalities.images.mr import MR_IMAGE_STORAGE, MrSeriesSpec, mr_series
from fake_modalities.images.uids import UID_ROOT, derive_uid
from fake_modalities.images.us import US_IMAGE_STORAGE, UsSeriesSpec, us_series

__all__ = [
    "CR_IMAGE_STORAGE",
    "CT_IMAGE_STORAGE",
    "MR_IMAGE_STORAGE",
    "UID_ROOT",
    "US_IMAGE_STORAGE",
    "CrSeriesSpec",
    "CtSeriesSpec",
    "Equipment",
    "MrSeriesSpec",
    "PatientStudy",
    "SeriesSpec",
    "UsSeriesSpec",
    "cr_series",
    "ct_series",
    "derive_uid",
    "mr_series",
    "us_series",
    "write_dataset",
    "write_series",
]
