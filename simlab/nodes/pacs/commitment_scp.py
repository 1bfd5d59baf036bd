"""The Storage Commitment Push Model SCP (PS3.4 J.3): N-ACTION in, N-EVENT-REPORT out.

The N-ACTION is answered at once and the report sent later from a background thread, on the
requester's association or on a new one; that lifecycle (delay, retries, giving up at stop) is
unlike any other SCP's, hence its own module. Its settings are ``storage_commitment`` in the
config: report_delay, report_association ('same' or new), report_retries, retry_interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import AE, build_context, build_role
from pynetdicom.sop_class import StorageCommitmentPushModel

from simlab.common.config import PacsConfig
from simlab.common.dicom_status import Status, describe, hex_status
from simlab.nodes.pacs.archive import Archive
from simlab.nodes.pacs.scp_common import UNCOMPRESSED, status_dataset

STORAGE_COMMITMENT_INSTANCE = UID("1.2.840.10008.1.20.1.1")
"""Well-known SOP Instance of the Storage Commitment Push Model (PS3.4 J.3.5)."""


class StorageCommitmentScp:
    """Storage Commitment Push Model SCP (PS3.4 J.3): N-ACTION in, N-EVENT-REPORT out.

    The N-ACTION is answered at once; the report is built and sent from a background thread,
    after the N-ACTION response has gone out (pynetdicom pauses the association's reactor for a
    send from another thread only between two messages). It goes on the requester's association
    while that is still established (``report_association='same'``), else on a new association
    to the requester's AE from the AE table, proposing the SCP role by role selection.
    """

    def __init__(
        self,
        get_config: Callable[[], PacsConfig],
        archive: Archive,
        get_ae: Callable[[], AE | None],
        logger: logging.Logger,
    ) -> None:
        self._get_config = get_config
        self._archive = archive
        self._get_ae = get_ae
        self._logger = logger
        self._stop = threading.Event()
        self._pending: set[str] = set()
        self._lock = threading.Lock()

    def stop(self) -> None:
        """Give up pending reports (their threads end at their next wait)."""
        self._stop.set()

    def reset(self) -> None:
        """Allow reports again after a stop."""
        self._stop.clear()

    def handle_n_action(self, event: Any) -> tuple[Any, Dataset | None]:
        """N-ACTION Request Storage Commitment: checked and answered now, reported later."""
        calling = event.assoc.requestor.ae_title
        if int(event.action_type or 0) != 1:
            self._logger.warning(
                "N-ACTION Storage Commitment from %s: action type %s unknown: 0x0123",
                calling,
                event.action_type,
            )
            return Status.NO_SUCH_ACTION_TYPE, None
        try:
            info = event.action_information
            transaction = str(info.get("TransactionUID", "") or "").strip()
            refs = [
                (str(item.ReferencedSOPClassUID), str(item.ReferencedSOPInstanceUID))
                for item in info.get("ReferencedSOPSequence", [])
            ]
        except Exception as exc:
            self._logger.warning(
                "N-ACTION Storage Commitment from %s: unreadable action information: %s",
                calling,
                exc,
            )
            return status_dataset(Status.PROCESSING_FAILURE, "unreadable action information"), None
        if not transaction or not refs:
            missing = "Transaction UID" if not transaction else "Referenced SOP Sequence items"
            self._logger.warning(
                "N-ACTION Storage Commitment from %s: %s missing: 0x0120", calling, missing
            )
            return status_dataset(Status.MISSING_ATTRIBUTE, f"{missing} missing"), None
        with self._lock:
            if transaction in self._pending:
                return status_dataset(
                    Status.DUPLICATE_TRANSACTION_UID, "transaction already in progress"
                ), None
            self._pending.add(transaction)
        self._logger.info(
            "N-ACTION Storage Commitment from %s: transaction %s, %d object(s): 0x0000 Success",
            calling,
            transaction,
            len(refs),
        )
        thread = threading.Thread(
            target=self._report,
            args=(event.assoc, calling, transaction, refs),
            name=f"commitment-{transaction[-12:]}",
            daemon=True,
        )
        thread.start()
        return Status.SUCCESS, None

    def _report(
        self, assoc: Any, calling: str, transaction: str, refs: list[tuple[str, str]]
    ) -> None:
        try:
            cfg = self._get_config().storage_commitment
            if cfg.report_delay and self._stop.wait(cfg.report_delay):
                return
            event_type, report, failed = self._evaluate(transaction, refs)
            summary = (
                f"transaction {transaction}: {len(refs) - failed} committed, {failed} failed, "
                f"event type {event_type}"
            )
            if (
                self._get_config().storage_commitment.report_association == "same"
                and assoc.is_established
                and self._send(assoc, event_type, report, calling, "same association", summary)
            ):
                return
            self._send_on_new_association(calling, event_type, report, summary)
        except Exception:
            self._logger.exception("storage commitment report for %s failed", transaction)
        finally:
            with self._lock:
                self._pending.discard(transaction)

    def _evaluate(self, transaction: str, refs: list[tuple[str, str]]) -> tuple[int, Dataset, int]:
        archive = self._archive
        committed, failures = [], []
        for class_uid, instance_uid in refs:
            row = archive.index.instance(instance_uid)
            if row is None or archive.file_of(instance_uid) is None:
                failures.append((class_uid, instance_uid, Status.NO_SUCH_SOP_INSTANCE))
            elif row["sop_class"] != class_uid:
                failures.append((class_uid, instance_uid, Status.CLASS_INSTANCE_CONFLICT))
            else:
                committed.append((class_uid, instance_uid))
        report = Dataset()
        report.TransactionUID = transaction
        report.RetrieveAETitle = self._get_config().dicom.ae_title
        if committed:
            report.ReferencedSOPSequence = [
                _ref_item(class_uid, instance_uid) for class_uid, instance_uid in committed
            ]
        if failures:
            items = []
            for class_uid, instance_uid, reason in failures:
                item = _ref_item(class_uid, instance_uid)
                item.FailureReason = int(reason)
                items.append(item)
                self._logger.warning(
                    "storage commitment %s: %s not committed: %s %s",
                    transaction,
                    instance_uid,
                    hex_status(reason),
                    describe(reason),
                )
            report.FailedSOPSequence = items
        return (2 if failures else 1), report, len(failures)

    def _send(
        self, assoc: Any, event_type: int, report: Dataset, calling: str, how: str, summary: str
    ) -> bool:
        try:
            # pynetdicom 3 answers (status dataset, event reply) - PS3.7 10.1.1 N-EVENT-REPORT-RSP
            status, _reply = assoc.send_n_event_report(
                report, event_type, StorageCommitmentPushModel, STORAGE_COMMITMENT_INSTANCE
            )
        except Exception as exc:
            self._logger.warning(
                "N-EVENT-REPORT Storage Commitment to %s on %s failed: %s", calling, how, exc
            )
            return False
        value = int(status.Status) if status is not None and "Status" in status else None
        if value is None:
            self._logger.warning(
                "N-EVENT-REPORT Storage Commitment to %s on %s: no response (%s)",
                calling,
                how,
                summary,
            )
            return False
        self._logger.info(
            "N-EVENT-REPORT Storage Commitment to %s on %s (%s): response %s %s",
            calling,
            how,
            summary,
            hex_status(value),
            describe(value),
        )
        return True

    def _send_on_new_association(
        self, calling: str, event_type: int, report: Dataset, summary: str
    ) -> None:
        cfg = self._get_config()
        attempts = cfg.storage_commitment.report_retries + 1
        for attempt in range(1, attempts + 1):
            ae = self._get_ae()
            entry = self._get_config().ae_entry(calling)
            if ae is None or self._stop.is_set():
                return
            if entry is None:
                self._logger.error(
                    "storage commitment report to %s cannot be sent: %s is not in the AE table "
                    "(%s)",
                    calling,
                    calling,
                    summary,
                )
                return
            assoc = ae.associate(
                entry.host,
                entry.port,
                contexts=[build_context(StorageCommitmentPushModel, UNCOMPRESSED)],
                ae_title=entry.ae_title,
                ext_neg=[build_role(StorageCommitmentPushModel, scu_role=False, scp_role=True)],
            )
            if assoc.is_established:
                try:
                    if self._send(assoc, event_type, report, calling, "new association", summary):
                        return
                finally:
                    if assoc.is_established:
                        assoc.release()
            else:
                self._logger.warning(
                    "storage commitment report: cannot associate with %s at %s:%d "
                    "(attempt %d of %d)",
                    entry.ae_title,
                    entry.host,
                    entry.port,
                    attempt,
                    attempts,
                )
            if attempt < attempts and self._stop.wait(cfg.storage_commitment.retry_interval):
                return
        self._logger.error("storage commitment report to %s given up (%s)", calling, summary)


def _ref_item(class_uid: str, instance_uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = class_uid
    item.ReferencedSOPInstanceUID = instance_uid
    return item
