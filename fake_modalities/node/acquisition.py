"""Acquiring a procedure: images from `fake_modalities.images`, written durably to the outbox.

What decides the bytes: the node's seed and the worklist item (patient, accession, requested
procedure, Study Instance UID, scheduled date/time). Image dates are the scheduled start when
the item has one, so the same actions give the same files; MPPS times are the wall clock.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID, ImplicitVRLittleEndian, RLELossless

from fake_modalities.images import (
    CrSeriesSpec,
    CtSeriesSpec,
    Equipment,
    MrSeriesSpec,
    PatientStudy,
    UsSeriesSpec,
    cr_series,
    ct_series,
    mr_series,
    us_series,
)
from simlab.common.modality_config import ModalityConfig

_PROTOCOLS = {
    "CT": ("CT HEAD WO", "HEAD", "Axial 5mm"),
    "MR": ("MR BRAIN", "HEAD", "Ax T2"),
    "CR": ("CHEST PA", "CHEST", "Chest PA"),
    "DX": ("CHEST PA", "CHEST", "Chest PA"),
    "US": ("US ABDOMEN", "ABDOMEN", "Abdomen RUQ"),
}


def procedure_seed(config_seed: int, item: dict[str, str], attempt: int) -> int:
    """A generator seed from the node's seed and what identifies the worklist item."""
    key = "|".join(
        [
            str(config_seed),
            item.get("patient_id", ""),
            item.get("accession_number", ""),
            item.get("requested_procedure_id", ""),
            item.get("scheduled_procedure_step_id", ""),
            item.get("study_instance_uid", ""),
            str(attempt),
        ]
    )
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big")


def patient_study(item: dict[str, str], study_instance_uid: str) -> PatientStudy:
    """The image generator's patient/study context, copied from the worklist item."""
    return PatientStudy(
        patient_id=item.get("patient_id", ""),
        patient_name=item.get("patient_name", ""),
        birth_date=item.get("birth_date", ""),
        sex=item.get("sex", ""),
        accession_number=item.get("accession_number", ""),
        study_instance_uid=study_instance_uid,
        study_id=item.get("requested_procedure_id", "")[:16],
        referring_physician=item.get("referring_physician", ""),
        study_description=item.get("requested_procedure_description", ""),
        requested_procedure_id=item.get("requested_procedure_id", ""),
        requested_procedure_description=item.get("requested_procedure_description", ""),
        scheduled_procedure_step_id=item.get("scheduled_procedure_step_id", ""),
        scheduled_procedure_step_description=item.get("scheduled_procedure_step_description", ""),
        study_datetime=acquired_at(item),
    )


def acquired_at(item: dict[str, str]) -> datetime:
    """The scheduled start of the item (date, time), or the registration time."""
    date = item.get("scheduled_start_date", "")[:8]
    time = (item.get("scheduled_start_time", "") or "080000").split(".")[0].ljust(6, "0")[:6]
    try:
        return datetime.strptime(date + time, "%Y%m%d%H%M%S")
    except ValueError:
        return datetime.strptime(item.get("registered_at", "20260101080000"), "%Y%m%d%H%M%S")


def generate(config: ModalityConfig, proc: dict[str, Any], series_number: int) -> list[Dataset]:
    """The datasets of one series of the procedure."""
    item = proc["item"]
    study = patient_study(item, proc["study_instance_uid"])
    rows, columns = config.image_size()
    count = config.images_per_series()
    protocol, body_part, description = _PROTOCOLS[config.profile]
    common: dict[str, Any] = {
        "series_number": series_number,
        "series_description": item.get("scheduled_procedure_step_description") or description,
        "protocol_name": protocol,
        "body_part": body_part,
        "acquired_at": acquired_at(item),
        "operator_name": config.acquisition.operator_name,
        "performed_procedure_step_id": proc["pps_id"],
        "mpps_sop_instance_uid": proc["mpps_uid"] if proc.get("mpps_created") else "",
        "equipment": Equipment(
            station_name=config.station_name[:16],
            model_name=f"Sim{config.profile}",
            device_serial_number=f"{config.profile}-{config.dicom.ae_title}"[:64],
        ),
    }
    seed = proc["seed"]
    size = {"rows": rows, "columns": columns}
    if config.profile == "CT":
        return list(ct_series(study, CtSeriesSpec(slices=count, **size, **common), seed=seed))
    if config.profile == "MR":
        return list(mr_series(study, MrSeriesSpec(slices=count, **size, **common), seed=seed))
    if config.profile == "US":
        return list(us_series(study, UsSeriesSpec(images=count, **size, **common), seed=seed))
    spec = CrSeriesSpec(images=count, **size, **common)
    return list(cr_series(study, replace(spec), seed=seed))


def encode(ds: Dataset, transfer_syntax: str) -> Dataset:
    """Re-encode a generated dataset (Explicit VR LE) in the configured transfer syntax."""
    uid = UID(transfer_syntax)
    if uid == RLELossless:
        ds.compress(RLELossless)
    elif uid == ImplicitVRLittleEndian:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return ds


def write_durably(ds: Dataset, path: Path) -> Path:
    """Write a Part 10 file via a temp file, fsync and rename: a crash leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    ds.save_as(tmp, enforce_file_format=True)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
