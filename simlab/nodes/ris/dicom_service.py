"""The RIS's DICOM services: Modality Worklist SCP (RAD-5) and MPPS SCP (RAD-6/RAD-7).

Association policy as the PACS's: our own AE title (A-ASSOCIATE-RJ 1/1/7 for another called AE)
and only the modalities of the AE table (1/1/3 for an unknown calling AE), read live from the
config in force.

MWL (PS3.4 K.6, Modality Worklist Information Model - FIND 1.2.840.10008.5.1.4.31): every
SCHEDULED order is one worklist item; the identifier is matched with
`simlab.common.dicom_matching.match_dataset` (sequence matching for the Scheduled Procedure Step
Sequence, wildcards, date/time ranges). A response carries the requested keys only, with names
as stored (Unicode) and Specific Character Set ISO_IR 100 when every value is Latin-1, else
ISO_IR 192 (UTF-8).

MPPS (PS3.4 F.7, 1.2.840.10008.3.1.2.3.3): N-CREATE must say IN PROGRESS and carry the required
attributes (F.7.2.1: missing → 0x0120, empty type 1 → 0x0121, another status → 0x0106, a known
instance → 0x0111); N-SET of an unknown instance → 0x0112, of a COMPLETED/DISCONTINUED one →
0x0110 "Performed Procedure Step Object may no longer be updated", to a status other than
IN PROGRESS/COMPLETED/DISCONTINUED → 0x0106. The linked orders (Scheduled Step Attributes
Sequence: accession, SPS ID, requested procedure ID, Study Instance UID) follow: IN_PROGRESS,
COMPLETED, DISCONTINUED.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    ModalityPerformedProcedureStep,
    ModalityWorklistInformationFind,
    Verification,
)

from simlab.common.dicom_matching import match_dataset
from simlab.common.dicom_status import Status, describe, hex_status
from simlab.common.ris_config import RisConfig
from simlab.nodes.ris.scheduling import Scheduler
from simlab.nodes.ris.store import (
    ORDER_COMPLETED,
    ORDER_DISCONTINUED,
    ORDER_IN_PROGRESS,
    ORDER_SCHEDULED,
    RisStore,
)

IN_PROGRESS, COMPLETED, DISCONTINUED = "IN PROGRESS", "COMPLETED", "DISCONTINUED"
MPPS_STATUSES = (IN_PROGRESS, COMPLETED, DISCONTINUED)
NO_LONGER_UPDATABLE = "Performed Procedure Step Object may no longer be updated"
"""PS3.4 F.7.2.2: the comment of 0x0110 for an N-SET on a COMPLETED/DISCONTINUED step."""

_CREATE_TYPE1 = (
    "ScheduledStepAttributesSequence",
    "PerformedProcedureStepID",
    "PerformedStationAETitle",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "PerformedProcedureStepStatus",
    "Modality",
)
"""N-CREATE attributes that must be present with a value (PS3.4 Table F.7.2-1, type 1)."""
_CREATE_TYPE2 = (
    "PatientName",
    "PatientID",
    "PerformedProcedureStepEndDate",
    "PerformedProcedureStepEndTime",
)
"""N-CREATE attributes that must be present, possibly empty (type 2)."""
_FINAL_REQUIRED = ("PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime")
"""Values a COMPLETED/DISCONTINUED step must have (PS3.4 F.7.2.2.2)."""
_NO_CALLER = "\\NO-AE-ALLOWED\\"
"""Stands in for an empty AE table (pynetdicom treats an empty list as 'anyone')."""


def _status(status: int, comment: str = "") -> Dataset:
    ds = Dataset()
    ds.Status = int(status)
    if comment and status != Status.SUCCESS:
        ds.ErrorComment = comment[:64]
    return ds


def worklist_item(order: dict[str, Any]) -> Dataset:
    """One order as a worklist item (PS3.4 K.6.1.2.2), values in Unicode."""
    ds = Dataset()
    ds.PatientName = order.get("patient_name") or ""
    ds.PatientID = order["patient_id"]
    ds.IssuerOfPatientID = order.get("patient_issuer") or ""
    ds.PatientBirthDate = order.get("patient_birth_date") or ""
    ds.PatientSex = order.get("patient_sex") or ""
    ds.AccessionNumber = order["accession"]
    ds.ReferringPhysicianName = order.get("referring_physician") or ""
    ds.RequestedProcedureID = order["requested_procedure_id"]
    ds.RequestedProcedureDescription = order.get("requested_procedure_description") or ""
    ds.StudyInstanceUID = order["study_uid"]
    code = Dataset()
    code.CodeValue = order.get("procedure_code") or ""
    code.CodingSchemeDesignator = order.get("procedure_scheme") or ""
    code.CodeMeaning = order.get("procedure_meaning") or ""
    ds.RequestedProcedureCodeSequence = Sequence([code] if code.CodeValue else [])
    sps = Dataset()
    sps.ScheduledStationAETitle = order.get("station_ae") or ""
    sps.ScheduledProcedureStepStartDate = order.get("start_date") or ""
    sps.ScheduledProcedureStepStartTime = order.get("start_time") or ""
    sps.Modality = order.get("modality") or ""
    sps.ScheduledPerformingPhysicianName = order.get("performing_physician") or ""
    sps.ScheduledProcedureStepDescription = order.get("sps_description") or ""
    sps.ScheduledProcedureStepID = order["sps_id"]
    sps.ScheduledProcedureStepStatus = "SCHEDULED"
    protocol = Dataset()
    protocol.CodeValue = code.CodeValue
    protocol.CodingSchemeDesignator = code.CodingSchemeDesignator
    protocol.CodeMeaning = code.CodeMeaning
    sps.ScheduledProtocolCodeSequence = Sequence([protocol] if code.CodeValue else [])
    ds.ScheduledProcedureStepSequence = Sequence([sps])
    return ds


def _response(identifier: Dataset, item: Dataset) -> Dataset:
    """The keys of the identifier, filled from the item (sequences recursively)."""
    out = Dataset()
    for elem in identifier:
        if elem.tag == 0x00080005 or elem.tag.element == 0:
            continue
        stored = item.get(elem.tag)
        if elem.VR == "SQ":
            key = elem.value[0] if elem.value else Dataset()
            items = []
            for sub in stored.value if stored is not None else []:
                if len(key) == 0:
                    items.append(sub)
                elif match_dataset(key, sub):
                    items.append(_response(key, sub))
            out.add_new(elem.tag, "SQ", Sequence(items))
        else:
            out.add_new(elem.tag, elem.VR, stored.value if stored is not None else None)
    return out


def _texts(ds: Dataset) -> Iterator[str]:
    for elem in ds:
        if elem.VR == "SQ":
            for sub in elem.value:
                yield from _texts(sub)
        elif elem.value is not None and elem.VR in ("PN", "LO", "SH", "LT", "ST", "UT", "UC"):
            yield str(elem.value)


def character_set(ds: Dataset) -> str:
    """ISO_IR 100 when every text is Latin-1, else ISO_IR 192 (UTF-8)."""
    try:
        for text in _texts(ds):
            text.encode("latin-1")
    except UnicodeEncodeError:
        return "ISO_IR 192"
    return "ISO_IR 100"


def _keys_text(identifier: Dataset) -> str:
    parts = []

    def walk(ds: Dataset, prefix: str = "") -> None:
        for elem in ds:
            if elem.VR == "SQ":
                for sub in elem.value[:1]:
                    walk(sub, prefix)
            elif elem.value not in (None, "") and elem.tag != 0x00080005:
                parts.append(f"{prefix}{elem.keyword}={elem.value}")

    walk(identifier)
    return ", ".join(parts) or "(universal)"


class RisDicomService:
    """Verification, MWL and MPPS SCPs on the RIS's AE (see the module docstring)."""

    def __init__(
        self,
        get_config: Callable[[], RisConfig],
        store: RisStore,
        scheduler: Scheduler,
        logger: logging.Logger,
    ) -> None:
        self._get_config = get_config
        self._store = store
        self._scheduler = scheduler
        self._logger = logger
        self._ae: AE | None = None
        self._server: Any = None
        self._mpps_lock = threading.Lock()

    @property
    def listening(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        cfg = self._get_config()
        ae = AE(ae_title=cfg.dicom.ae_title)
        ae.add_supported_context(Verification)
        ae.add_supported_context(ModalityWorklistInformationFind)
        ae.add_supported_context(ModalityPerformedProcedureStep)
        self._ae = ae
        self._apply_policy(cfg)
        handlers = [
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_RELEASED, self._on_released),
            (evt.EVT_ABORTED, self._on_aborted),
            (evt.EVT_C_ECHO, self.handle_c_echo),
            (evt.EVT_C_FIND, self.handle_c_find),
            (evt.EVT_N_CREATE, self.handle_n_create),
            (evt.EVT_N_SET, self.handle_n_set),
        ]
        self._server = ae.start_server(
            (cfg.dicom.host, cfg.dicom.port), block=False, evt_handlers=handlers
        )

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def apply_config(self, old: RisConfig, new: RisConfig) -> bool:
        if (old.dicom.host, old.dicom.port, old.dicom.ae_title) != (
            new.dicom.host,
            new.dicom.port,
            new.dicom.ae_title,
        ):
            self.stop()
            try:
                self.start()
            except OSError as exc:
                self._logger.error("DICOM listener cannot start: %s", exc)
            return True
        self._apply_policy(new)
        return False

    def _apply_policy(self, cfg: RisConfig) -> None:
        ae = self._ae
        if ae is None:
            return
        d = cfg.dicom
        ae.require_called_aet = d.require_called_ae
        if d.require_known_calling_ae:
            ae.require_calling_aet = [e.ae_title for e in cfg.ae_table] or [_NO_CALLER]
        else:
            ae.require_calling_aet = []
        ae.maximum_associations = d.max_associations
        ae.maximum_pdu_size = d.max_pdu_size
        ae.acse_timeout = d.acse_timeout
        ae.dimse_timeout = d.dimse_timeout
        ae.network_timeout = d.network_timeout

    # -- association log ---------------------------------------------------------------------

    @staticmethod
    def _who(assoc: Any) -> str:
        req = assoc.requestor
        return f"{req.ae_title} ({req.address}:{req.port}) -> {assoc.acceptor.ae_title}"

    def _on_accepted(self, event: Any) -> None:
        self._logger.info("association accepted: %s", self._who(event.assoc))

    def _on_rejected(self, event: Any) -> None:
        assoc = event.assoc
        rj = assoc.acceptor.primitive
        detail = ""
        if rj is not None and getattr(rj, "result", None) is not None:
            detail = f" (result {rj.result}, source {rj.result_source}, reason {rj.diagnostic})"
            reason = {3: "calling AE title not recognised", 7: "called AE title not recognised"}
            detail += f": {reason.get(int(rj.diagnostic), '')}" if rj.diagnostic else ""
        req = assoc.requestor
        self._logger.warning(
            "association rejected: %s (%s:%s) called %s%s",
            req.ae_title,
            req.address,
            req.port,
            req.primitive.called_ae_title if req.primitive else "?",
            detail,
        )

    def _on_released(self, event: Any) -> None:
        self._logger.info("association released: %s", self._who(event.assoc))

    def _on_aborted(self, event: Any) -> None:
        self._logger.warning("association aborted: %s", self._who(event.assoc))

    # -- Verification and MWL ----------------------------------------------------------------

    def handle_c_echo(self, event: Any) -> int:
        self._logger.info("C-ECHO from %s: 0x0000", event.assoc.requestor.ae_title)
        return Status.SUCCESS

    def worklist(self, identifier: Dataset | None = None) -> list[Dataset]:
        """The items the MWL would return for an identifier (every scheduled one for None)."""
        items = [worklist_item(o) for o in self._store.orders(status=ORDER_SCHEDULED)]
        if identifier is None:
            return items
        return [item for item in items if match_dataset(identifier, item)]

    def handle_c_find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        caller = event.assoc.requestor.ae_title
        try:
            identifier = event.identifier
            keys = _keys_text(identifier)
            matches = self.worklist(identifier)
        except Exception as exc:
            self._logger.warning("MWL C-FIND from %s: identifier not understood: %s", caller, exc)
            yield Status.UNABLE_TO_PROCESS, None
            return
        self._logger.info("MWL C-FIND from %s: keys %s; %d match(es)", caller, keys, len(matches))
        for item in matches:
            if event.is_cancelled:
                yield Status.CANCEL, None
                return
            response = _response(identifier, item)
            response.SpecificCharacterSet = character_set(response)
            yield Status.PENDING, response

    # -- MPPS --------------------------------------------------------------------------------

    def _log_mpps(self, op: str, caller: str, uid: str, status: int, text: str) -> None:
        level = logging.INFO if status == Status.SUCCESS else logging.WARNING
        self._logger.log(
            level,
            "MPPS %s from %s uid=%s: %s %s%s",
            op,
            caller,
            uid,
            hex_status(status),
            describe(status),
            f" ({text})" if text else "",
        )

    def handle_n_create(self, event: Any) -> tuple[Dataset, Dataset | None]:
        caller = event.assoc.requestor.ae_title
        given = str(event.request.AffectedSOPInstanceUID or "")
        with self._mpps_lock:
            uid = given or self._new_mpps_uid()
            status, text, attrs = self._create(event, uid)
        self._log_mpps("N-CREATE", caller, uid, status, text)
        if status == Status.SUCCESS and not given and attrs is not None:
            # PS3.4 F.7.2.1: the SCP creates the UID; pynetdicom moves it to the response.
            attrs = Dataset(attrs)
            attrs.AffectedSOPInstanceUID = uid
        return _status(status, text if status != Status.SUCCESS else ""), attrs

    def _new_mpps_uid(self) -> str:
        root = self._get_config().numbering.uid_root
        return f"{root}.2.{self._store.next_number('mpps')}"

    def _create(self, event: Any, uid: str) -> tuple[int, str, Dataset | None]:
        ds = event.attribute_list
        if self._store.mpps(uid) is not None:
            return Status.DUPLICATE_SOP_INSTANCE, "MPPS instance already exists", None
        for keyword in _CREATE_TYPE1 + _CREATE_TYPE2:
            if keyword not in ds:
                return Status.MISSING_ATTRIBUTE, f"{keyword} is missing", None
        for keyword in _CREATE_TYPE1:
            if ds[keyword].VM == 0:
                return Status.MISSING_ATTRIBUTE_VALUE, f"{keyword} has no value", None
        for n, item in enumerate(ds.ScheduledStepAttributesSequence, start=1):
            if not item.get("StudyInstanceUID"):
                return (
                    Status.MISSING_ATTRIBUTE_VALUE,
                    f"Scheduled Step Attributes item {n}: StudyInstanceUID has no value",
                    None,
                )
        state = str(ds.PerformedProcedureStepStatus).strip()
        if state != IN_PROGRESS:
            return (
                Status.INVALID_ATTRIBUTE_VALUE,
                f"PerformedProcedureStepStatus must be IN PROGRESS, not {state!r}",
                None,
            )
        linked = self._linked_orders(ds)
        with self._store.transaction():  # the step and its orders change together
            self._store.save_mpps(
                uid, state, ",".join(linked), event.assoc.requestor.ae_title, ds.to_json_dict()
            )
            for accession in linked:
                order = self._store.order(accession)
                if order and order["status"] == ORDER_SCHEDULED:
                    self._scheduler.order_status_changed(
                        accession, ORDER_IN_PROGRESS, f"MPPS {uid}"
                    )
        text = f"IN PROGRESS, orders {', '.join(linked)}" if linked else "IN PROGRESS, unscheduled"
        self._logger.info("MPPS %s: %s", uid, text)
        return Status.SUCCESS, text, ds

    def _linked_orders(self, ds: Dataset) -> list[str]:
        found: list[str] = []
        for item in ds.get("ScheduledStepAttributesSequence", []):
            order = self._store.find_order_for_step(
                str(item.get("AccessionNumber", "") or ""),
                str(item.get("ScheduledProcedureStepID", "") or ""),
                str(item.get("RequestedProcedureID", "") or ""),
                str(item.get("StudyInstanceUID", "") or ""),
            )
            if order and order["accession"] not in found:
                found.append(order["accession"])
        return found

    def handle_n_set(self, event: Any) -> tuple[Dataset, Dataset | None]:
        caller = event.assoc.requestor.ae_title
        uid = str(event.request.RequestedSOPInstanceUID or "")
        with self._mpps_lock:
            status, text, attrs = self._set(event, uid)
        self._log_mpps("N-SET", caller, uid or "?", status, text)
        return _status(status, text if status != Status.SUCCESS else ""), attrs

    def _set(self, event: Any, uid: str) -> tuple[int, str, Dataset | None]:
        row = self._store.mpps(uid)
        if row is None:
            return Status.NO_SUCH_SOP_INSTANCE, "no such MPPS instance", None
        if row["status"] != IN_PROGRESS:
            return Status.PROCESSING_FAILURE, NO_LONGER_UPDATABLE, None
        mods = event.modification_list
        current = Dataset.from_json(row["attributes"])
        for elem in mods:
            if elem.tag.element != 0:
                current[elem.tag] = elem
        state = str(current.get("PerformedProcedureStepStatus", "") or "").strip()
        if state not in MPPS_STATUSES:
            return (
                Status.INVALID_ATTRIBUTE_VALUE,
                f"PerformedProcedureStepStatus {state!r} is not"
                " IN PROGRESS, COMPLETED or DISCONTINUED",
                None,
            )
        if state != IN_PROGRESS:
            for keyword in _FINAL_REQUIRED:
                if not current.get(keyword):
                    return Status.MISSING_ATTRIBUTE_VALUE, f"{keyword} has no value", None
        accessions = [a for a in row["accession"].split(",") if a]
        with self._store.transaction():  # the step and its orders change together
            self._store.save_mpps(
                uid, state, row["accession"], row["calling_ae"], current.to_json_dict()
            )
            if state != IN_PROGRESS:
                final = ORDER_COMPLETED if state == COMPLETED else ORDER_DISCONTINUED
                for accession in accessions:
                    order = self._store.order(accession)
                    if order and order["status"] in (ORDER_SCHEDULED, ORDER_IN_PROGRESS):
                        self._scheduler.order_status_changed(accession, final, f"MPPS {uid}")
        return Status.SUCCESS, state, current
