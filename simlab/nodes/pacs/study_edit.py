"""The administrator's study edit and split: how a PACS admin fixes a data fault.

A real PACS has a "study edit / reconcile" tool: when a modality wrote a wrong Patient ID or
Accession Number, garbled a name (wrong Specific Character Set), or reused one Study Instance UID
for two patients, the administrator corrects the patient/study attributes, or moves the wrong
patient's series into a study of their own. Both rewrite every affected object file durably (a
temp file beside it, fsync, rename, fsync the directory, as the archive stores) and then the
index, so what Query/Retrieve answers, what a retrieve sends and what is on disk agree.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom import dcmread

from simlab.nodes.pacs.index import PATIENT_EDIT_FIELDS, STUDY_EDIT_FIELDS

if TYPE_CHECKING:
    from simlab.nodes.pacs.archive import Archive

EDITABLE = (*PATIENT_EDIT_FIELDS, *STUDY_EDIT_FIELDS)
"""Attributes an edit may set, by DICOM keyword."""
_DATE = re.compile(r"^(\d{8})?$")
_TIME = re.compile(r"^(\d{2,6}(\.\d{1,6})?)?$")
_MAX_LENGTH = {"PatientID": 64, "AccessionNumber": 16, "StudyID": 16, "IssuerOfPatientID": 64}


class StudyEditError(ValueError):
    """The edit is refused (unknown attribute, bad value, unknown series); the text says why."""


def validate_changes(body: dict[str, Any]) -> dict[str, str]:
    """The attribute changes of an edit request: known keywords, text values of a legal form."""
    unknown = sorted(set(body) - set(EDITABLE))
    if unknown:
        raise StudyEditError(f"cannot edit {', '.join(unknown)}; editable: {', '.join(EDITABLE)}")
    changes: dict[str, str] = {}
    for keyword, value in body.items():
        if not isinstance(value, str):
            raise StudyEditError(f"{keyword} must be a string")
        value = value.strip()
        if "\\" in value or any(ord(c) < 32 for c in value):
            raise StudyEditError(f"{keyword}: no backslash or control characters")
        if len(value) > _MAX_LENGTH.get(keyword, 64):
            raise StudyEditError(f"{keyword} is longer than {_MAX_LENGTH.get(keyword, 64)}")
        if keyword in ("PatientBirthDate", "StudyDate") and not _DATE.match(value):
            raise StudyEditError(f"{keyword} must be a DICOM date YYYYMMDD")
        if keyword == "StudyTime" and not _TIME.match(value):
            raise StudyEditError("StudyTime must be a DICOM time HHMMSS")
        if keyword == "PatientSex" and value not in ("", "M", "F", "O"):
            raise StudyEditError("PatientSex must be M, F, O or empty")
        changes[keyword] = value
    if "PatientID" in changes and not changes["PatientID"]:
        raise StudyEditError("PatientID cannot be emptied (that is the fault, not the fix)")
    return changes


def edit_study(
    archive: Archive,
    study_uid: str,
    changes: dict[str, str],
    *,
    series_uids: list[str] | None = None,
) -> dict[str, Any]:
    """Rewrite a study's files with `changes`, then its index rows.

    With `series_uids`, split: only those series are rewritten, under a new Study Instance UID,
    and become a study of their own (with the patient/study attributes of `changes`).
    Raises KeyError for an unknown study, StudyEditError for an unknown series.
    """
    rows = archive.index.study_instances(study_uid)
    if not rows:
        raise KeyError(study_uid)
    new_study_uid: str | None = None
    tags = dict(changes)
    if series_uids is not None:
        known = {r["series_uid"] for r in rows}
        missing = sorted(set(series_uids) - known)
        if missing or not series_uids:
            raise StudyEditError(
                f"series not in study {study_uid}: {', '.join(missing) or '(none)'}"
            )
        if set(series_uids) == known:
            raise StudyEditError("a split must leave at least one series in the study")
        rows = [r for r in rows if r["series_uid"] in series_uids]
        new_study_uid = f"2.25.{uuid.uuid4().int}"  # PS3.5 B.2: a UUID-derived UID
        tags["StudyInstanceUID"] = new_study_uid
    sizes: dict[str, int] = {}
    delta = 0
    for row in rows:
        path = archive.path_of(row)
        sizes[row["sop_uid"]] = rewrite_file(path, tags)
        delta += sizes[row["sop_uid"]] - int(row["size"])
    archive.adjust_stored(delta)
    archive.index.edit_study(
        study_uid, changes, sizes, series_uids=series_uids, new_study_uid=new_study_uid
    )
    return {
        "study_uid": new_study_uid or study_uid,
        "edited_from": study_uid,
        "instances": len(rows),
        "changes": changes,
    }


def rewrite_file(path: Path, tags: dict[str, str]) -> int:
    """Set `tags` in one Part 10 file, durably; returns the new file size.

    Values that the file's Specific Character Set cannot carry switch it to UTF-8 (ISO_IR 192)
    after decoding every text element in the old set, so no other element is garbled.
    """
    ds = dcmread(path)
    charset = ds.get("SpecificCharacterSet", "") or ""
    declared = charset if isinstance(charset, str) else "\\".join(charset)
    if not _fits(declared.strip(), "".join(tags.values())):
        ds.decode()
        ds.SpecificCharacterSet = "ISO_IR 192"
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    tmp = path.with_name(f".{path.name}.edit")
    try:
        ds.save_as(tmp, enforce_file_format=True)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return path.stat().st_size


def _fits(declared: str, text: str) -> bool:
    """Whether `text` can be written in the declared Specific Character Set (PS3.5 6.1)."""
    if text.isascii() or declared == "ISO_IR 192":
        return True
    if declared == "ISO_IR 100":
        try:
            text.encode("latin-1")
        except UnicodeEncodeError:
            return False
        return True
    return False
