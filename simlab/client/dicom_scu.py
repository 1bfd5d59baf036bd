"""DICOM SCU helpers the lab side runs as the administrator's workstation (AE title ADMIN_WS).

What `echoscu`, `findscu`, `movescu`, `getscu` and `storescu` do, from Python, for `simlab
admin`, the TUI and scenario reference solutions. A protocol failure is an answer, not an
exception: every helper returns a DicomResult with the real code (A-ASSOCIATE-RJ result/source/
reason, PS3.8 9.3.4; DIMSE status, PS3.7 Annex C) in its text, and every timer is set so a hung
peer shows as "timeout" instead of a hung tool.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import UID
from pydicom.valuerep import PersonName
from pynetdicom import build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    EnhancedCTImageStorage,
    EnhancedMRImageStorage,
    ModalityWorklistInformationFind,
    MRImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    SecondaryCaptureImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
)

from simlab.common.dicom_association import (
    Timeouts,
    associate,
    new_ae,
    status_text,
    verify,
)
from simlab.common.dicom_status import CONTEXT_RESULT_TEXT, Status
from simlab.common.durable_files import write_durably
from simlab.common.safe_paths import hashed_name
from simlab.common.transfer_syntaxes import COMPRESSED

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
_GET_MODELS = {
    "study": StudyRootQueryRetrieveInformationModelGet,
    "patient": PatientRootQueryRetrieveInformationModelGet,
}
GET_STORAGE_CLASSES: tuple[str, ...] = (
    CTImageStorage,
    EnhancedCTImageStorage,
    MRImageStorage,
    EnhancedMRImageStorage,
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    SecondaryCaptureImageStorage,
)
"""Storage SOP classes a C-GET offers to receive (the SCP role, PS3.4 C.4.3): CT, MR, CR, DX,
US and SC — every class the lab's modalities (CR, CT, MR, US) and test tools produce."""
GET_UNCOMPRESSED = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
)
GET_COMPRESSED = ("1.2.840.10008.1.2.1.99", *COMPRESSED)
"""A retrieved object keeps the transfer syntax it was archived in: each storage class is
proposed uncompressed (one context) and in each compressed syntax (one context each), so the
peer finds a context for whatever it holds without transcoding."""
MAX_CONTEXTS = 128
"""PS3.8 9.3.2.2: at most 128 presentation contexts per association."""
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


def get(
    host: str,
    port: int,
    called_ae: str,
    query: Mapping[str, Any],
    directory: Path | str,
    model: Literal["study", "patient"] = "study",
    calling_ae: str = ADMIN_WS,
    timeout: float = 30.0,
) -> DicomResult:
    """C-GET (`getscu -od directory`): the matches come back on the same association.

    The requester proposes the Q/R GET context and the storage contexts of GET_STORAGE_CLASSES
    with SCP/SCU Role Selection (it is the Storage SCP, PS3.4 C.4.3, PS3.7 D.3.3.4), and writes
    each C-STORE sub-operation durably into `directory` (temp file, fsync, rename; the name is a
    hash of the SOP Instance UID, never the UID) before answering 0x0000 (0xA700 when the write
    fails). details carries the sub-operation counts and the files received.
    """
    if model not in _GET_MODELS:
        return DicomResult(False, None, f"C-GET has no {model!r} model")
    try:
        identifier = build_identifier(query, model, return_keys=False)
    except (ValueError, TypeError) as exc:
        return DicomResult(False, None, f"bad query: {exc}")
    target = Path(directory)
    try:
        (target / ".tmp").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return DicomResult(False, None, f"cannot create {target}: {exc.strerror or exc}")
    get_model = _GET_MODELS[model]
    ae = new_ae(calling_ae, Timeouts.uniform(timeout))
    for cx in get_contexts(get_model):
        ae.add_requested_context(cx[0], list(cx[1]))
    roles = [build_role(uid, scp_role=True) for uid in GET_STORAGE_CLASSES]
    received: list[dict[str, Any]] = []
    handler = _storage_handler(target, received)
    attempt = associate(ae, host, port, called_ae, [(evt.EVT_C_STORE, handler)], roles)
    if not attempt.ok:
        return DicomResult(False, None, attempt.error)
    assoc = attempt.assoc
    final: int | None = None
    counts: dict[str, int] = {}
    comment = ""
    try:
        refused = _refused_context(assoc, get_model)
        if refused:
            return DicomResult(False, None, refused)
        for status, _identifier in assoc.send_c_get(identifier, get_model):
            code = getattr(status, "Status", None)
            if code is None:
                break
            final = int(code)
            comment = str(status.get("ErrorComment", "") or "")
            for key in ("Completed", "Failed", "Warning", "Remaining"):
                value = status.get(f"NumberOf{key}Suboperations")
                if value is not None:
                    counts[key.lower()] = int(value)
    finally:
        if assoc.is_established:
            assoc.release()
    files = list(received)
    details: dict[str, Any] = {"suboperations": counts, "files": files, "directory": str(target)}
    if final is None:
        return DicomResult(
            False, None, "timeout (no C-GET response) or association aborted", details=details
        )
    for key in ("completed", "failed", "warning"):
        counts.setdefault(key, 0)
    counts.pop("remaining", None)
    sub = ", ".join(f"{counts[k]} {k}" for k in ("completed", "failed", "warning"))
    text = f"{status_text(final)} ({sub}); {len(files)} file{'s' if len(files) != 1 else ''} saved"
    if comment and final != 0x0000:
        text += f"; {comment}"
    ok = final == 0x0000 and not counts.get("failed")
    return DicomResult(ok, final, text, details=details)


def get_contexts(get_model: str) -> list[tuple[str, tuple[str, ...]]]:
    """(abstract syntax, transfer syntaxes) a C-GET proposes: the GET model, then each storage
    class uncompressed and in each compressed syntax; never more than MAX_CONTEXTS."""
    contexts: list[tuple[str, tuple[str, ...]]] = [(get_model, GET_UNCOMPRESSED)]
    for uid in GET_STORAGE_CLASSES:
        contexts.append((uid, GET_UNCOMPRESSED))
    for uid in GET_STORAGE_CLASSES:
        contexts.extend((uid, (ts,)) for ts in GET_COMPRESSED)
    if len(contexts) > MAX_CONTEXTS:  # pragma: no cover - a wrong edit of the lists above
        raise AssertionError(f"{len(contexts)} presentation contexts > {MAX_CONTEXTS}")
    return contexts


def _refused_context(assoc: Any, abstract_syntax: str) -> str:
    """The PS3.8 9.3.3.2 text when the peer accepted the association but not this context."""
    if any(cx.abstract_syntax == abstract_syntax for cx in assoc.accepted_contexts):
        return ""
    results = sorted(
        {
            f"{cx.abstract_syntax.name}: {CONTEXT_RESULT_TEXT.get(cx.result, cx.result)}"
            for cx in assoc.rejected_contexts
            if cx.abstract_syntax == abstract_syntax
        }
    )
    return (
        "no presentation context accepted ("
        + "; ".join(results or [f"{UID(abstract_syntax).name}: not accepted"])
        + ")"
    )


def _storage_handler(directory: Path, received: list[dict[str, Any]]) -> Callable[[Any], int]:
    """EVT_C_STORE handler of a C-GET: write durably first, then answer (PS3.4 B.2.3)."""
    lock = threading.Lock()

    def handle(event: Any) -> int:
        request = event.request
        sop_class = str(request.AffectedSOPClassUID or "")
        sop_instance = str(request.AffectedSOPInstanceUID or "")
        try:
            data = event.encoded_dataset(include_meta=True)
        except (AttributeError, ValueError, KeyError):
            return int(Status.CANNOT_UNDERSTAND)
        final = directory / hashed_name(sop_instance, ".dcm")
        try:
            size = write_durably(directory / ".tmp", final, [data], directory)
        except OSError:
            return int(Status.OUT_OF_RESOURCES)
        with lock:
            received.append(
                {
                    "file": str(final),
                    "sop_class": sop_class,
                    "sop_class_name": UID(sop_class).name if sop_class else "",
                    "sop_instance": sop_instance,
                    "transfer_syntax": str(event.context.transfer_syntax),
                    "size": size,
                }
            )
        return int(Status.SUCCESS)

    return handle


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
