"""The viewer's DICOM listener: Verification and a Storage SCP for every storage SOP class.

It is the PACS's C-MOVE destination. The association policy is the PACS's: a wrong Called AE
title is rejected with A-ASSOCIATE-RJ 1/1/7, a Calling AE title missing from the AE table with
1/1/3 (PS3.8 9.3.4). Every association and every batch of received instances leaves one line in
the node log.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pydicom.config
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, AllStoragePresentationContexts, _config, build_context, evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import Verification

from simlab.common.association_log import rejection_line
from simlab.common.dicom_status import (
    Status,
    describe,
    hex_status,
)
from simlab.common.viewer_config import ViewerConfig
from simlab.nodes.viewer.store import StoreResult, ViewerStore

UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian]
_NO_KNOWN_CALLER = "!EMPTY-AE-TABLE!"
"""Stands in for an empty AE table: pynetdicom treats an empty require_calling_aet as 'anyone'."""
_PRE_ASSOCIATION_STALL = 3.0
"""Seconds a peer may stall inside a PDU before its association is negotiated."""


def uid_name(uid: str) -> str:
    name = UID(uid).name
    return name if name and name != uid else uid


def status_dataset(status: int, comment: str = "") -> Dataset:
    ds = Dataset()
    ds.Status = int(status)
    if comment and status != Status.SUCCESS:
        ds.ErrorComment = comment[:64]
    return ds


def storage_contexts(cfg: ViewerConfig) -> list[PresentationContext]:
    """Verification plus every storage SOP class with the configured transfer syntaxes."""
    syntaxes = [UID(ts) for ts in cfg.accepted_transfer_syntaxes]
    contexts = [build_context(Verification, UNCOMPRESSED)]
    for cx in AllStoragePresentationContexts:
        contexts.append(build_context(cx.abstract_syntax, list(syntaxes)))
    return contexts


def quiet_pynetdicom() -> None:
    _config.LOG_HANDLER_LEVEL = "none"
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE


@dataclass
class ReceivedBatch:
    """What one association (or one C-GET) delivered."""

    source_ae: str
    stored: int = 0
    failed: int = 0
    studies: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)

    def add(self, result: StoreResult) -> None:
        if result.status == Status.SUCCESS:
            self.stored += 1
            self.studies[result.study_uid] += 1
        else:
            self.failed += 1

    def describe(self) -> str:
        studies = ", ".join(f"{uid} ({n})" for uid, n in self.studies.items()) or "none"
        return (
            f"{self.stored} instance(s) stored, {self.failed} refused, from {self.source_ae} "
            f"in {time.monotonic() - self.started:.1f} s; studies: {studies}"
        )


class StorageService:
    """The viewer's DICOM listener, following the live config."""

    def __init__(
        self, get_config: Callable[[], ViewerConfig], store: ViewerStore, logger: logging.Logger
    ) -> None:
        self._get_config = get_config
        self._store = store
        self._logger = logger
        self._ae: AE | None = None
        self._server: Any = None
        self._lock = threading.Lock()
        self._batches: dict[Any, ReceivedBatch] = {}
        self._unnegotiated: dict[Any, float] = {}
        self.counters: Counter[str] = Counter()

    @property
    def listening(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        quiet_pynetdicom()
        cfg = self._get_config()
        ae = AE(ae_title=cfg.dicom.ae_title)
        ae.implementation_version_name = "SIMLAB_VIEWER"
        self._ae = ae
        self._apply_policy(cfg)
        self._server = ae.start_server(
            (cfg.dicom.host, cfg.dicom.port),
            block=False,
            evt_handlers=self._handlers(),
            ae_title=cfg.dicom.ae_title,
            contexts=storage_contexts(cfg),
        )
        self._logger.info(
            "DICOM listener %s on %s:%d (Storage SCP, %d storage SOP classes)",
            cfg.dicom.ae_title,
            cfg.dicom.host,
            cfg.dicom.port,
            len(AllStoragePresentationContexts),
        )

    def stop(self) -> None:
        if self._ae is not None:
            self._ae.shutdown()
        self._ae = None
        self._server = None

    def apply_config(self, old: ViewerConfig, new: ViewerConfig) -> bool:
        """Apply a change; restart the listener only when host, port or AE title changed."""
        address = lambda c: (c.dicom.host, c.dicom.port, c.dicom.ae_title)  # noqa: E731
        if address(old) != address(new):
            self._logger.info(
                "DICOM listener moves from %s@%s:%d to %s@%s:%d",
                old.dicom.ae_title,
                old.dicom.host,
                old.dicom.port,
                new.dicom.ae_title,
                new.dicom.host,
                new.dicom.port,
            )
            self.stop()
            try:
                self.start()
            except OSError as exc:
                self._logger.error(
                    "DICOM listener cannot bind %s:%d (%s): the DICOM service is DOWN until the "
                    "address is fixed",
                    new.dicom.host,
                    new.dicom.port,
                    exc.strerror or exc,
                )
                raise
            return True
        self._apply_policy(new)
        if self._server is not None:
            self._server.contexts = storage_contexts(new)
        return False

    def _apply_policy(self, cfg: ViewerConfig) -> None:
        ae = self._ae
        if ae is None:
            return
        d = cfg.dicom
        ae.require_called_aet = d.require_called_ae
        if d.require_known_calling_ae:
            ae.require_calling_aet = [e.ae_title for e in cfg.ae_table] or [_NO_KNOWN_CALLER]
        else:
            ae.require_calling_aet = []
        ae.maximum_associations = d.max_associations
        ae.maximum_pdu_size = d.max_pdu_size
        ae.acse_timeout = d.acse_timeout
        ae.dimse_timeout = d.dimse_timeout
        ae.network_timeout = d.network_timeout

    def _handlers(self) -> list[tuple[Any, Callable[..., Any]]]:
        return [
            (evt.EVT_CONN_OPEN, self._on_conn_open),
            (evt.EVT_CONN_CLOSE, self._on_conn_close),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_RELEASED, lambda e: self._done(e.assoc, "released")),
            (evt.EVT_ABORTED, lambda e: self._done(e.assoc, "aborted")),
            (evt.EVT_C_ECHO, self.handle_c_echo),
            (evt.EVT_C_STORE, self.handle_c_store),
        ]

    # -- association events ----------------------------------------------------------------------

    @staticmethod
    def _peer(assoc: Any) -> str:
        return f"{assoc.requestor.address}:{assoc.requestor.port}"

    def _on_conn_open(self, event: Any) -> None:
        sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                stall = min(self._get_config().dicom.acse_timeout, _PRE_ASSOCIATION_STALL)
                sock.settimeout(stall)
        with self._lock:
            self._unnegotiated[event.assoc] = time.monotonic()

    def _on_requested(self, event: Any) -> None:
        with self._lock:
            self._unnegotiated.pop(event.assoc, None)
        sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.settimeout(self._get_config().dicom.network_timeout)

    def _on_conn_close(self, event: Any) -> None:
        with self._lock:
            opened = self._unnegotiated.pop(event.assoc, None)
        if opened is None:
            self._done(event.assoc, "ended (connection closed)")
            return
        self.counters["connections_without_association"] += 1
        self._logger.warning(
            "connection from %s closed after %.1f s without an association (no valid "
            "A-ASSOCIATE-RQ received: not a DICOM peer, a broken PDU, or a timeout)",
            self._peer(event.assoc),
            time.monotonic() - opened,
        )

    def _on_accepted(self, event: Any) -> None:
        assoc = event.assoc
        calling = assoc.requestor.ae_title
        with self._lock:
            self._unnegotiated.pop(assoc, None)
            self._batches[assoc] = ReceivedBatch(calling)
        self.counters["associations_accepted"] += 1
        self._logger.info(
            "association accepted: %s (%s) -> %s, %d presentation context(s) accepted, %d rejected",
            calling,
            self._peer(assoc),
            assoc.acceptor.ae_title,
            len(assoc.accepted_contexts),
            len(assoc.rejected_contexts),
        )

    def _on_rejected(self, event: Any) -> None:
        assoc = event.assoc
        with self._lock:
            self._unnegotiated.pop(assoc, None)
        self.counters["associations_rejected"] += 1
        dicom = self._get_config().dicom
        self._logger.warning(
            "%s", rejection_line(assoc, self._peer(assoc), dicom.ae_title, dicom.max_associations)
        )

    def _done(self, assoc: Any, how: str) -> None:
        with self._lock:
            batch = self._batches.pop(assoc, None)
        if batch is None:
            return
        level = logging.INFO if how == "released" else logging.WARNING
        self._logger.log(level, "association %s: %s (%s)", how, batch.source_ae, self._peer(assoc))
        if batch.stored or batch.failed:
            self._logger.log(
                logging.INFO if not batch.failed else logging.WARNING,
                "received batch: %s",
                batch.describe(),
            )

    # -- services --------------------------------------------------------------------------------

    def handle_c_echo(self, event: Any) -> int:
        self._logger.info("C-ECHO from %s: 0x0000 Success", event.assoc.requestor.ae_title)
        return Status.SUCCESS

    def handle_c_store(self, event: Any, batch: ReceivedBatch | None = None) -> Dataset:
        """Store one object durably, then answer (also used for C-GET sub-operations)."""
        req = event.request
        source = (
            event.assoc.acceptor.ae_title
            if event.assoc.is_requestor
            else event.assoc.requestor.ae_title
        )
        sop_class = str(req.AffectedSOPClassUID or "")
        sop_uid = str(req.AffectedSOPInstanceUID or "")
        try:
            result = self._store.store(
                req.DataSet.getvalue(),
                str(event.context.transfer_syntax),
                sop_class,
                sop_uid,
                source,
            )
        except Exception as exc:  # never let a bug abort the sender's association
            self._logger.exception("C-STORE %s: internal error", sop_uid)
            result = StoreResult(Status.PROCESSING_FAILURE, f"internal error: {exc}")
        if batch is None:
            with self._lock:
                batch = self._batches.get(event.assoc)
        if batch is not None:
            batch.add(result)
        self.counters["instances_received" if result.status == 0 else "instances_refused"] += 1
        if result.status != Status.SUCCESS:
            self._logger.warning(
                "C-STORE %s %s from %s: %s %s (%s)",
                uid_name(sop_class),
                sop_uid,
                source,
                hex_status(result.status),
                describe(result.status),
                result.comment,
            )
        return status_dataset(result.status, result.comment)
