"""DICOM SCU helpers the lab side runs as the administrator's workstation (AE title ADMIN_WS).

What `echoscu`, `findscu`, `movescu` and `storescu` do, from Python, for `simlab admin`, the TUI
and scenario reference solutions. A protocol failure is an answer, not an exception: every helper
returns a DicomResult with the real code (A-ASSOCIATE-RJ result/source/reason, PS3.8 9.3.4;
DIMSE status, PS3.7 Annex C) in its text, and every timer is set so a hung peer shows as
"timeout" instead of a hung tool.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityWorklistInformationFind,
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
)

from simlab.common.dicom_association import (
    Timeouts,
    associate,
    new_ae,
    status_text,
    verify,
)

ADMIN_WS = "ADMIN_WS"
"""The administrator workstation's AE title (known to the lab's PACS, RIS and viewer)."""

Model = Literal["study", "patient", "worklist"]
_FIND_MODELS = {
    "study": StudyRootQueryRetrieveInformationModelFind,
    "patient": PatientRootQueryRetrieveInformationModelFind,
    "worklist": ModalityWorklistInformationFind,
}
_MOVE_MODELS = {
    "study": StudyRootQueryRetrieveInformationModelMove,
    "patient": PatientRootQueryRetrieveInformationModelMove,
}
_DEFAULT_LEVEL = {"study": "STUDY", "patient": "PATIENT"}
_RETURN_KEYS = {
    "PATIENT": ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"),
    "STUDY": (
        "PatientName",
        "PatientID",
        "StudyInstanceUID",
        "AccessionNumber",
        "StudyDate",
        "StudyDescription",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedInstances",
    ),
    "SERIES": ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber"),
    "IMAGE": ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"),
}
"""Return keys added (empty) to a C-FIND at each level unless the query names them already."""
_WORKLIST_KEYS = ("PatientName", "PatientID", "AccessionNumber", "StudyInstanceUID")
_WORKLIST_SPS_KEYS = (
    "ScheduledStationAETitle",
    "Modality",
    "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime",
    "ScheduledProcedureStepID",
    "ScheduledProcedureStepDescription",
)
_SPS = "ScheduledProcedureStepSequence"


@dataclass
class DicomResult:
    """What one SCU operation came to.

    ok: the operation succeeded (for C-FIND/C-MOVE: final status Success).
    status: the final DIMSE status, None when no association was made or no response came.
    text: one line with the code, e.g. 'rejected 1/1/7 (called AE title not recognised)'.
    """

    ok: bool
    status: int | None
    text: str
    matches: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "status": self.status, "text": self.text}
        if self.matches:
            out["matches"] = self.matches
        if self.details:
            out["details"] = self.details
        return out


def echo(
    host: str, port: int, called_ae: str, calling_ae: str = ADMIN_WS, timeout: float = 10.0
) -> DicomResult:
    """C-ECHO (`echoscu -aet calling -aec called host port`)."""
    outcome = verify(calling_ae, host, port, called_ae, Timeouts.uniform(timeout))
    return DicomResult(outcome.ok, outcome.status, outcome.text)


def find(
    host: str,
    port: int,
    called_ae: str,
    query: Mapping[str, Any],
    model: Model = "study",
    calling_ae: str = ADMIN_WS,
    timeout: float = 10.0,
) -> DicomResult:
    """C-FIND in the Study Root, Patient Root or Modality Worklist model.

    `query` maps keywords to values ('PatientName': 'DOE*'); 'QueryRetrieveLevel' is set from
    the model unless given. For the worklist, keys of the Scheduled Procedure Step go in as
    'ScheduledProcedureStepSequence.Modality' or simply 'Modality'/'ScheduledStationAETitle'.
    """
    if model not in _FIND_MODELS:
        return DicomResult(False, None, f"unknown query model {model!r}")
    try:
        identifier = build_identifier(query, model)
    except (ValueError, TypeError) as exc:
        return DicomResult(False, None, f"bad query: {exc}")
    ae = new_ae(calling_ae, Timeouts.uniform(timeout))
    ae.add_requested_context(_FIND_MODELS[model])
    attempt = associate(ae, host, port, called_ae)
    if not attempt.ok:
        return DicomResult(False, None, attempt.error)
    assoc = attempt.assoc
    matches: list[dict[str, Any]] = []
    final: int | None = None
    try:
        for status, found in assoc.send_c_find(identifier, _FIND_MODELS[model]):
            code = getattr(status, "Status", None)
            if code is None:
                break
            final = int(code)
            if final in (0xFF00, 0xFF01) and found is not None:
                matches.append(dataset_to_dict(found))
    finally:
        if assoc.is_established:
            assoc.release()
    if final is None:
        return DicomResult(False, None, "timeout (no C-FIND response) or association aborted")
    ok = final == 0x0000
    text = f"{len(matches)} match{'es' if len(matches) != 1 else ''}" if ok else ""
    text = f"{status_text(final)}{': ' + text if text else ''}"
    return DicomResult(ok, final, text, matches)


def move(
    host: str,
    port: int,
    called_ae: str,
    destination: str,
    query: Mapping[str, Any],
    model: Literal["study", "patient"] = "study",
    calling_ae: str = ADMIN_WS,
    timeout: float = 30.0,
) -> DicomResult:
    """C-MOVE (`movescu -aem destination`): the peer sends the matches to `destination`.

    Success needs the peer to know the destination AE (else 0xA801) and to reach it (else the
    sub-operations fail: 0xA702 or 0xB000). details carries the sub-operation counts.
    """
    if model not in _MOVE_MODELS:
        return DicomResult(False, None, f"C-MOVE has no {model!r} model")
    try:
        identifier = build_identifier(query, model, return_keys=False)
    except (ValueError, TypeError) as exc:
        return DicomResult(False, None, f"bad query: {exc}")
    ae = new_ae(calling_ae, Timeouts.uniform(timeout))
    ae.add_requested_context(_MOVE_MODELS[model])
    attempt = associate(ae, host, port, called_ae)
    if not attempt.ok:
        return DicomResult(False, None, attempt.error)
    assoc = attempt.assoc
    final: int | None = None
    counts: dict[str, int] = {}
    try:
        for status, _identifier in assoc.send_c_move(identifier, destination, _MOVE_MODELS[model]):
            code = getattr(status, "Status", None)
            if code is None:
                break
            final = int(code)
            for key in ("Completed", "Failed", "Warning", "Remaining"):
                value = status.get(f"NumberOf{key}Suboperations")
                if value is not None:
                    counts[key.lower()] = int(value)
    finally:
        if assoc.is_established:
            assoc.release()
    if final is None:
        return DicomResult(False, None, "timeout (no C-MOVE response) or association aborted")
    sub = ", ".join(f"{n} {k}" for k, n in counts.items() if k != "remaining")
    text = status_text(final) + (f" ({sub})" if sub else "")
    ok = final == 0x0000 and not counts.get("failed")
    return DicomResult(ok, final, text, details={"suboperations": counts})


def store(
    host: str,
    port: int,
    called_ae: str,
    files: Iterable[Path | str],
    calling_ae: str = ADMIN_WS,
    timeout: float = 30.0,
) -> DicomResult:
    """C-STORE files (`storescu`) on one association; details has each file's status."""
    datasets: list[tuple[str, Dataset]] = []
    for path in files:
        try:
            datasets.append((str(path), dcmread(path)))
        except (OSError, InvalidDicomError) as exc:
            return DicomResult(False, None, f"cannot read {path}: {exc}")
    if not datasets:
        return DicomResult(False, None, "no files to send")
    ae = new_ae(calling_ae, Timeouts.uniform(timeout))
    for sop_class, syntax in sorted(
        {(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for _p, ds in datasets}
    ):
        ae.add_requested_context(sop_class, [syntax])
    attempt = associate(ae, host, port, called_ae)
    if not attempt.ok:
        return DicomResult(False, None, attempt.error)
    assoc = attempt.assoc
    results: list[dict[str, Any]] = []
    try:
        for path, ds in datasets:
            try:
                rsp = assoc.send_c_store(ds)
            except ValueError as exc:  # no accepted presentation context for this object
                results.append({"file": path, "status": None, "text": str(exc)})
                continue
            code = getattr(rsp, "Status", None)
            text = status_text(int(code)) if code is not None else "no response (timeout/abort)"
            results.append(
                {"file": path, "status": None if code is None else int(code), "text": text}
            )
            if not assoc.is_established:
                break
    finally:
        if assoc.is_established:
            assoc.release()
    sent = [r for r in results if r["status"] is not None and r["status"] < 0xA000]
    failed = len(datasets) - len(sent)
    worst = next((r for r in results if r not in sent), results[-1] if results else None)
    status = worst["status"] if worst else None
    text = f"{len(sent)} of {len(datasets)} stored"
    if failed and worst:
        text += f"; {worst['text']}"
    return DicomResult(failed == 0, status, text, details={"files": results})


# -------------------------------------------------------------------------- identifiers


def build_identifier(query: Mapping[str, Any], model: str, return_keys: bool = True) -> Dataset:
    """A C-FIND/C-MOVE identifier from keyword -> value (str, list or None for a return key)."""
    ds = Dataset()
    sps = Dataset()
    for key, value in query.items():
        name = key.split(".", 1)[1] if key.startswith(_SPS + ".") else key
        if model == "worklist" and (key.startswith(_SPS + ".") or name in _WORKLIST_SPS_KEYS):
            _set(sps, name, value)
        else:
            _set(ds, name, value)
    if model == "worklist":
        if return_keys:
            for name in _WORKLIST_KEYS:
                if name not in ds:
                    _set(ds, name, "")
            for name in _WORKLIST_SPS_KEYS:
                if name not in sps:
                    _set(sps, name, "")
        ds.ScheduledProcedureStepSequence = [sps]
        return ds
    if "QueryRetrieveLevel" not in ds:
        ds.QueryRetrieveLevel = _DEFAULT_LEVEL[model]
    level = str(ds.QueryRetrieveLevel).upper()
    ds.QueryRetrieveLevel = level
    if return_keys:
        for name in _RETURN_KEYS.get(level, ()):
            if name not in ds:
                _set(ds, name, "")
    return ds


def _set(ds: Dataset, keyword: str, value: Any) -> None:
    try:
        setattr(ds, keyword, "" if value is None else value)
    except (AttributeError, ValueError, TypeError) as exc:
        raise ValueError(f"{keyword}={value!r}: {exc}") from None
    if keyword not in ds:
        raise ValueError(f"{keyword} is not a DICOM keyword")


def dataset_to_dict(ds: Dataset) -> dict[str, Any]:
    """keyword -> JSON-friendly value (sequences as lists of dicts); binary values skipped."""
    out: dict[str, Any] = {}
    for elem in ds:
        keyword = elem.keyword or str(elem.tag)
        if elem.VR == "SQ":
            out[keyword] = [dataset_to_dict(item) for item in elem.value]
        elif isinstance(elem.value, bytes):
            continue
        elif isinstance(elem.value, MultiValue):
            out[keyword] = [_plain(v) for v in elem.value]
        else:
            out[keyword] = _plain(elem.value)
    return out


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (int, float, str)):
        return value
    if isinstance(value, PersonName):
        return str(value)
    return str(value)
