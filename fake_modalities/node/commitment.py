"""Storage Commitment Push Model SCU (IHE RAD-10, PS3.4 J) and the modality's DICOM listener.

After a procedure is completed and its images are sent, the modality sends N-ACTION (Action
Type 1) to the PACS and keeps the association open for the N-EVENT-REPORT. The PACS may instead
report later on a new association to the modality's own listener, proposing the SCP role by
SCP/SCU Role Selection (PS3.7 D.3.3.4); both paths end in `record_report`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import StorageCommitmentPushModel, Verification

from fake_modalities.images import derive_uid
from fake_modalities.node.scu import associate
from fake_modalities.node.store import FAILED, SENT, ModalityStore
from simlab.common.dicom_status import Status, describe, hex_status
from simlab.common.modality_config import ModalityConfig

STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
"""Well-known SOP Instance UID of Storage Commitment Push Model (PS3.4 J.3.5)."""


def transaction_uid(cfg: ModalityConfig, proc_id: str, number: int) -> str:
    """The Transaction UID of a commitment request: decided by the seed, and unique in the
    department. Procedure ids repeat across modalities (each has its P0001), and so does the
    seed, so the station's AE title is part of it: two modalities asking at once with one UID
    get 0x0131 Duplicate Transaction UID from the PACS (PS3.7 Annex C), as a real one would."""
    return str(derive_uid(cfg.seed, "commitment", cfg.dicom.ae_title, proc_id, number))


class Commitments:
    """Requests commitment for procedures and records the reports, however they arrive."""

    def __init__(
        self,
        store: ModalityStore,
        get_config: Callable[[], ModalityConfig],
        logger: logging.Logger,
    ) -> None:
        self._store = store
        self._config = get_config
        self._logger = logger
        self._lock = threading.Lock()
        self._arrived: dict[str, threading.Event] = {}
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def request_later(self, proc_id: str, wake_sender: Callable[[], None]) -> None:
        """Ask for commitment in a thread, once the procedure's images are sent."""
        thread = threading.Thread(
            target=self._request,
            args=(proc_id, wake_sender),
            name=f"commit-{proc_id}",
            daemon=True,
        )
        thread.start()

    def _request(self, proc_id: str, wake_sender: Callable[[], None]) -> None:
        try:
            cfg = self._config()
            deadline = time.monotonic() + cfg.storage_commitment.wait_for_send
            while not self._stop.is_set():
                items = self._store.queue(procedure_id=proc_id)
                open_items = [
                    i
                    for i in items
                    if i["state"] not in (SENT, FAILED)
                    or (i["state"] == FAILED and i["next_attempt"] >= 0)
                ]
                if not open_items or time.monotonic() > deadline:
                    break
                wake_sender()
                self._stop.wait(0.2)
            refs = [(i["sop_class"], i["sop_instance"]) for i in items if i["state"] == SENT]
            self.request(proc_id, refs)
        except Exception:
            self._logger.exception("storage commitment request for %s failed", proc_id)

    def request(self, proc_id: str, refs: list[tuple[str, str]]) -> dict[str, Any]:
        """Send the N-ACTION for `refs`; wait a while for the report on this association."""
        cfg = self._config()
        number = self._store.next_counter(f"commit:{proc_id}")
        transaction = transaction_uid(cfg, proc_id, number)
        detail: dict[str, Any] = {
            "instances": {uid: "pending" for _cls, uid in refs},
            "failures": {},
            "how": "",
            "error": "",
        }
        self._store.add_commitment(transaction, proc_id, detail)
        if not refs:
            detail["error"] = "no image of the procedure was sent; nothing to commit"
            self._store.update_commitment(transaction, "not requested", detail)
            self._logger.warning("storage commitment for %s: %s", proc_id, detail["error"])
            return detail
        arrived = threading.Event()
        with self._lock:
            self._arrived[transaction] = arrived
        ae = AE(ae_title=cfg.dicom.ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = cfg.association_timeout
        ae.add_requested_context(StorageCommitmentPushModel)
        rsp_sent = threading.Event()

        def on_sent(event: Any) -> None:
            # Release only after our N-EVENT-REPORT-RSP has gone out, or the PACS counts the
            # report as undelivered and sends it again on a new association.
            if type(event.message).__name__ == "N_EVENT_REPORT_RSP":
                rsp_sent.set()

        handlers = [
            (evt.EVT_N_EVENT_REPORT, self._on_report_same),
            (evt.EVT_DIMSE_SENT, on_sent),
        ]
        opened = associate(
            ae, cfg.destination, self._logger, "Storage Commitment N-ACTION", evt_handlers=handlers
        )
        if not opened.ok:
            detail["error"] = opened.error
            self._store.update_commitment(transaction, "request failed", detail)
            return detail
        request = Dataset()
        request.TransactionUID = transaction
        items = []
        for class_uid, instance_uid in refs:
            item = Dataset()
            item.ReferencedSOPClassUID = class_uid
            item.ReferencedSOPInstanceUID = instance_uid
            items.append(item)
        request.ReferencedSOPSequence = items
        try:
            status, _reply = opened.assoc.send_n_action(
                request, 1, StorageCommitmentPushModel, STORAGE_COMMITMENT_INSTANCE
            )
            code = int(status.Status) if status else None
            if code is None or code != Status.SUCCESS:
                text = (
                    "no N-ACTION response (DIMSE timeout or A-ABORT)"
                    if code is None
                    else f"{hex_status(code)} {describe(code)}"
                )
                detail["error"] = f"N-ACTION refused: {text}"
                self._store.update_commitment(transaction, "request failed", detail)
                self._logger.warning("storage commitment %s: %s", transaction, detail["error"])
                return detail
            self._logger.info(
                "storage commitment %s requested for %d instances of %s",
                transaction,
                len(refs),
                proc_id,
            )
            if arrived.wait(cfg.storage_commitment.report_timeout):
                rsp_sent.wait(5.0)
        finally:
            if opened.assoc.is_established:
                opened.assoc.release()
        if not arrived.is_set():
            self._logger.info(
                "storage commitment %s: no report on the request association within %.0f s; "
                "waiting for it on the listener",
                transaction,
                cfg.storage_commitment.report_timeout,
            )
            current = self._store.commitment(transaction) or {}
            if current.get("state") == "requested":
                self._store.update_commitment(transaction, "waiting", {**detail})
        return self._store.commitment(transaction) or detail

    def _on_report_same(self, event: Any) -> tuple[int, Dataset | None]:
        return self.record_report(event, "same association")

    def on_report_new(self, event: Any) -> tuple[int, Dataset | None]:
        return self.record_report(event, "new association")

    def record_report(self, event: Any, how: str) -> tuple[int, Dataset | None]:
        """Handle an N-EVENT-REPORT: record committed/failed per instance."""
        info = event.event_information
        transaction = str(info.get("TransactionUID", ""))
        current = self._store.commitment(transaction)
        if current is None:
            self._logger.warning(
                "storage commitment report for unknown transaction %s from %s",
                transaction,
                event.assoc.requestor.ae_title,
            )
            return Status.NO_SUCH_SOP_INSTANCE, None
        if current["state"] in ("committed", "failures"):
            self._logger.info(
                "storage commitment %s: report repeated on a %s (already recorded from the %s)",
                transaction,
                how,
                current.get("how"),
            )
            return Status.SUCCESS, None
        instances = dict(current.get("instances", {}))
        failures: dict[str, str] = {}
        for item in info.get("ReferencedSOPSequence", []) or []:
            instances[str(item.ReferencedSOPInstanceUID)] = "committed"
        for item in info.get("FailedSOPSequence", []) or []:
            uid = str(item.ReferencedSOPInstanceUID)
            reason = int(item.get("FailureReason", 0x0110))
            instances[uid] = "failed"
            failures[uid] = f"{hex_status(reason)} {describe(reason)}"
        committed = sum(1 for v in instances.values() if v == "committed")
        failed = len(failures)
        state = "committed" if event.event_type == 1 and not failed else "failures"
        detail = {
            "instances": instances,
            "failures": failures,
            "how": how,
            "event_type": int(event.event_type),
            "error": "",
        }
        self._store.update_commitment(transaction, state, detail)
        level = logging.INFO if state == "committed" else logging.WARNING
        self._logger.log(
            level,
            "storage commitment %s: %d committed, %d failed%s (event type %d, %s)",
            transaction,
            committed,
            failed,
            (": " + "; ".join(sorted(set(failures.values())))) if failures else "",
            event.event_type,
            how,
        )
        with self._lock:
            arrived = self._arrived.pop(transaction, None)
        if arrived is not None:
            arrived.set()
        return Status.SUCCESS, None


class DicomListener:
    """The modality's own DICOM service: C-ECHO and Storage Commitment reports."""

    def __init__(
        self,
        get_config: Callable[[], ModalityConfig],
        commitments: Commitments,
        logger: logging.Logger,
    ) -> None:
        self._config = get_config
        self._commitments = commitments
        self._logger = logger
        self._server: Any = None

    @property
    def listening(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        cfg = self._config()
        ae = AE(ae_title=cfg.dicom.ae_title)
        ae.acse_timeout = cfg.dicom.acse_timeout
        ae.dimse_timeout = cfg.dicom.dimse_timeout
        ae.network_timeout = cfg.dicom.network_timeout
        ae.maximum_associations = cfg.dicom.max_associations
        ae.maximum_pdu_size = cfg.dicom.max_pdu_size
        ae.require_called_aet = cfg.dicom.require_called_ae
        if cfg.dicom.require_known_calling_ae:
            ae.require_calling_aet = [cfg.destination.ae_title]
        ae.add_supported_context(Verification)
        ae.add_supported_context(StorageCommitmentPushModel, scu_role=False, scp_role=True)
        handlers = [
            (evt.EVT_N_EVENT_REPORT, self._commitments.on_report_new),
            (evt.EVT_C_ECHO, lambda _e: Status.SUCCESS),
            (evt.EVT_ESTABLISHED, self._on_established),
            (evt.EVT_REJECTED, self._on_rejected),
        ]
        self._server = ae.start_server(
            (cfg.dicom.host, cfg.dicom.port), block=False, evt_handlers=handlers
        )

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _on_established(self, event: Any) -> None:
        req = event.assoc.requestor
        self._logger.info("association from %s@%s:%d accepted", req.ae_title, req.address, req.port)

    def _on_rejected(self, event: Any) -> None:
        req = event.assoc.requestor
        self._logger.warning(
            "association from %s@%s:%d rejected (called AE %s)",
            req.ae_title,
            req.address,
            req.port,
            event.assoc.acceptor.ae_title,
        )
