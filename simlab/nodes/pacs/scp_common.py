"""What the PACS's DICOM modules share: the uncompressed transfer syntaxes, the status data set
every SCP answers with, and readable SOP class names for the node log.

It exists so the association policy and the Storage, Q/R and Storage Commitment SCPs can live in
their own modules without importing one another for a three-line helper.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from simlab.common.dicom_status import Status

UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian]
"""The uncompressed transfer syntaxes, in the order the PACS proposes and accepts them."""


def uid_name(uid: str) -> str:
    """The UID's registered name (``CT Image Storage``), or the UID when it has none."""
    name = UID(uid).name
    return name if name and name != uid else uid


def status_dataset(status: int, comment: str = "") -> Dataset:
    """A response status data set; an Error Comment (64 chars at most) unless it is Success."""
    ds = Dataset()
    ds.Status = int(status)
    if comment and status != Status.SUCCESS:
        ds.ErrorComment = comment[:64]
    return ds
