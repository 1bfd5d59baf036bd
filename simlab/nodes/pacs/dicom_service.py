"""The PACS DICOM service: Verification, Storage, Query/Retrieve (FIND, MOVE, GET) and Storage
Commitment Push Model, on one pynetdicom AE.

The association policy and the presentation contexts follow the live config: `apply_config`
updates pynetdicom's ``require_called_aet`` / ``require_calling_aet`` / ``maximum_associations``
(which answer A-ASSOCIATE-RJ 1/1/7, 1/1/3 and 2/3/2) and the server's supported contexts, so a
change applies to the next association. The listener restarts only when host, port or AE title
change.

Every association, C-STORE, query and retrieve leaves one human-readable line in the node log: it
is what a trainee reads to diagnose. pynetdicom's own logger stays at WARNING.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pydicom.config
from pydicom import uid as pydicom_uid
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import (
    AE,
    AllStoragePresentationContexts,
    _config,
    build_context,
    build_role,
    evt,
    sop_class,
)
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StorageCommitmentPushModel,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from simlab.common.config import ALL_STORAGE, PacsConfig, RemoteAe
from simlab.common.dicom_status import (
    ContextResult,
    RejectResult,
    RejectSource,
    Status,
    UserRejectReason,
    describe,
    hex_status,
)
from simlab.nodes.pacs.archive import Archive
from simlab.nodes.pacs.query import (
    PATIENT_ROOT,
    STUDY_ROOT,
    ParsedQuery,
    QueryError,
    QueryService,
)

STORAGE_COMMITMENT_INSTANCE = UID("1.2.840.10008.1.20.1.1")
"""Well-known SOP Instance of the Storage Commitment Push Model (PS3.4 J.3.5)."""
_UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian]
_ROOTS = {
    PatientRootQueryRetrieveInformationModelFind: PATIENT_ROOT,
    PatientRootQueryRetrieveInformationModelMove: PATIENT_ROOT,
    PatientRootQueryRetrieveInformationModelGet: PATIENT_ROOT,
    StudyRootQueryRetrieveInformationModelFind: STUDY_ROOT,
    StudyRootQueryRetrieveInformationModelMove: STUDY_ROOT,
    StudyRootQueryRetrieveInformationModelGet: STUDY_ROOT,
}
_PRE_ASSOCIATION_STALL = 3.0
"""Seconds a peer may stall in the middle of a PDU before its association is negotiated."""
_LOCAL_LIMIT_EXCEEDED = 2
"""A-ASSOCIATE-RJ reason 2 when the source is the presentation service provider (PS3.8 9.3.4)."""
_THREAD_CEILING = 1024
"""pynetdicom's own limit on acceptor threads, a last resort above max_associations."""
_NO_KNOWN_CALLER = "!EMPTY-AE-TABLE!"
"""Stands in for an empty AE table: pynetdicom treats an empty require_calling_aet as 'anyone'."""
_RESULT_TEXT = {
    RejectResult.PERMANENT: "rejected-permanent",
    RejectResult.TRANSIENT: "rejected-transient",
}
_SOURCE_TEXT = {
    RejectSource.SERVICE_USER: "service-user",
    RejectSource.SERVICE_PROVIDER_ACSE: "service-provider (ACSE)",
    RejectSource.SERVICE_PROVIDER_PRESENTATION: "service-provider (presentation)",
}
_REASON_TEXT = {
    (1, UserRejectReason.NO_REASON): "no reason given",
    (1, UserRejectReason.APPLICATION_CONTEXT_NOT_SUPPORTED): "application context not supported",
    (1, UserRejectReason.CALLING_AE_NOT_RECOGNISED): "calling AE title not recognised",
    (1, UserRejectReason.CALLED_AE_NOT_RECOGNISED): "called AE title not recognised",
    (2, 1): "no reason given",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}
_CONTEXT_RESULT_TEXT = {
    ContextResult.USER_REJECTION: "user rejection",
    ContextResult.NO_REASON: "no reason",
    ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED: "abstract syntax not supported",
    ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED: "transfer syntaxes not supported",
}


def resolve_sop_class(entry: str) -> str | None:
    """A SOP Class UID from a config entry: a UID, or a pynetdicom/pydicom keyword."""
    entry = entry.strip()
    if re.fullmatch(r"[0-9]+(\.[0-9]+)*", entry):
        return entry
    found = getattr(sop_class, entry, None)
    if isinstance(found, str):
        return str(found)
    for uid, info in pydicom_uid.UID_dictionary.items():
        if len(info) > 4 and info[4] == entry:
            return str(uid)
    return None


def storage_sop_classes(cfg: PacsConfig, warn: Callable[[str], None] | None = None) -> list[str]:
    """Storage SOP classes the SCP accepts: accepted_sop_classes ('*': all) minus rejected."""
    every = [str(cx.abstract_syntax) for cx in AllStoragePresentationContexts]

    def resolve_all(entries: list[str]) -> list[str]:
        out = []
        for entry in entries:
            if entry.strip() == ALL_STORAGE:
                out.extend(every)
                continue
            uid = resolve_sop_class(entry)
            if uid is None:
                if warn:
                    warn(f"config names an unknown SOP class {entry!r}; ignored")
                continue
            out.append(uid)
        return out

    accepted = resolve_all(cfg.accepted_sop_classes)
    rejected = set(resolve_all(cfg.rejected_sop_classes))
    seen: set[str] = set()
    result = []
    for uid in accepted:
        if uid not in rejected and uid not in seen:
            seen.add(uid)
            result.append(uid)
    return result


def supported_contexts(
    cfg: PacsConfig, warn: Callable[[str], None] | None = None
) -> list[PresentationContext]:
    """Every presentation context the PACS accepts under `cfg`.

    Storage contexts carry SCU and SCP roles so that a C-GET requestor's role selection (it
    proposes to be the Storage SCP) is accepted on the same association.
    """
    contexts = [build_context(Verification, _UNCOMPRESSED)]
    for uid in _ROOTS:
        contexts.append(build_context(uid, _UNCOMPRESSED))
    contexts.append(build_context(StorageCommitmentPushModel, _UNCOMPRESSED))
    syntaxes = [UID(ts) for ts in cfg.accepted_transfer_syntaxes]
    for uid in storage_sop_classes(cfg, warn):
        cx = build_context(uid, list(syntaxes))
        cx.scu_role = True
        cx.scp_role = True
        contexts.append(cx)
    return contexts


def _uid_name(uid: str) -> str:
    name = UID(uid).name
    return name if name and name != uid else uid


def _status_dataset(status: int, comment: str = "") -> Dataset:
    ds = Dataset()
    ds.Status = int(status)
    if comment and status != Status.SUCCESS:
        ds.ErrorComment = comment[:64]
    return ds


@dataclass
class _AssociationStats:
    calling_ae: str
    peer: str
    started: float = field(default_factory=time.monotonic)
    stored: int = 0
    failed: int = 0


@dataclass
class _Operation:
    """A running FIND/MOVE/GET, kept so the final response can be logged with its context."""

    service: str
    calling_ae: str
    query: ParsedQuery | None
    destination: str = ""
    sub_operations: int = 0


class DicomService:
    """The PACS's DICOM listener and its SCPs."""

    def __init__(
        self, get_config: Callable[[], PacsConfig], archive: Archive, logger: logging.Logger
    ) -> None:
        self._get_config = get_config
        self._archive = archive
        self._logger = logger
        self.query = QueryService(archive.index, get_config)
        self._ae: AE | None = None
        self._server: Any = None
        self._sink: Any = None
        self._lock = threading.Lock()
        self._associations: dict[Any, _AssociationStats] = {}
        self._unnegotiated: dict[Any, float] = {}
        self._operations: dict[tuple[int, int], _Operation] = {}
        self._commitments = _CommitmentReporter(self, logger)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Bind the listener (raises OSError, e.g. EADDRINUSE) and start serving."""
        _quiet_pynetdicom()
        self._commitments.reset()
        self._start_listener()

    def stop(self) -> None:
        """Stop the listener, abort open associations and pending commitment reports."""
        self._commitments.stop()
        self._stop_listener()

    def _start_listener(self) -> None:
        cfg = self._get_config()
        ae = AE(ae_title=cfg.dicom.ae_title)
        ae.implementation_version_name = "SIMLAB_PACS"
        self._ae = ae
        self._apply_policy(cfg)
        self._server = ae.start_server(
            (cfg.dicom.host, cfg.dicom.port),
            block=False,
            evt_handlers=self._handlers(),
            ae_title=cfg.dicom.ae_title,
            contexts=supported_contexts(cfg, self._logger.warning),
        )
        self._logger.info(
            "DICOM listener %s on %s:%d (%d storage SOP classes, %d transfer syntaxes)",
            cfg.dicom.ae_title,
            cfg.dicom.host,
            cfg.dicom.port,
            len(storage_sop_classes(cfg)),
            len(cfg.accepted_transfer_syntaxes),
        )

    def _stop_listener(self) -> None:
        if self._ae is not None:
            self._ae.shutdown()
            self._ae = None
            self._server = None
        if self._sink is not None:
            self._sink[0].shutdown()
            self._sink = None

    def apply_config(self, old: PacsConfig, new: PacsConfig) -> bool:
        """Apply a config change; restart the listener only if host/port/AE title changed."""
        if self._ae is None:
            return False
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
            self._stop_listener()
            try:
                self._start_listener()
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
            self._server.contexts = supported_contexts(new, self._logger.warning)
        if (
            old.accepted_sop_classes != new.accepted_sop_classes
            or old.rejected_sop_classes != new.rejected_sop_classes
            or old.accepted_transfer_syntaxes != new.accepted_transfer_syntaxes
        ):
            self._logger.info(
                "Storage SCP now accepts %d SOP classes with %d transfer syntaxes "
                "(rejected classes: %s)",
                len(storage_sop_classes(new)),
                len(new.accepted_transfer_syntaxes),
                ", ".join(new.rejected_sop_classes) or "none",
            )
        return False

    def _apply_policy(self, cfg: PacsConfig) -> None:
        ae = self._ae
        if ae is None:
            return
        d = cfg.dicom
        ae.require_called_aet = d.require_called_ae
        if d.require_known_calling_ae:
            ae.require_calling_aet = [e.ae_title for e in cfg.ae_table] or [_NO_KNOWN_CALLER]
        else:
            ae.require_calling_aet = []
        # max_associations is enforced in _on_requested, counting associations only: pynetdicom
        # would also count connections that never sent an A-ASSOCIATE-RQ (a port scan, a health
        # probe), whose threads linger until ARTIM expires and would lock modalities out.
        ae.maximum_associations = _THREAD_CEILING
        ae.maximum_pdu_size = d.max_pdu_size
        ae.acse_timeout = d.acse_timeout
        ae.dimse_timeout = d.dimse_timeout
        ae.network_timeout = d.network_timeout
        ae.connection_timeout = min(d.acse_timeout, 10.0)

    def _start_sink(self) -> None:
        """A loopback peer that accepts any association and serves nothing.

        pynetdicom's C-MOVE SCP associates with whatever the handler yields first and answers
        0xA801 when that fails. When the destination is known but unreachable (or the
        identifier is refused) the PACS must answer 0xA702 (or 0xA900) instead, so the handler
        yields this peer, then its final failure status with the Failed SOP Instance UID List;
        pynetdicom releases the idle association and sends that status with the failed count.
        """
        sink = AE(ae_title="SIMLAB-NOWHERE")
        sink.add_supported_context(Verification)
        server = sink.start_server(("127.0.0.1", 0), block=False)
        self._sink = (sink, server.server_address[0], server.server_address[1])

    def _sink_destination(self) -> tuple[str, int, dict[str, Any]]:
        with self._lock:
            if self._sink is None:
                self._start_sink()
        assert self._sink is not None
        _ae, host, port = self._sink
        return host, port, {"ae_title": "SIMLAB-NOWHERE", "contexts": [build_context(Verification)]}

    def _handlers(self) -> list[tuple[Any, Callable[..., Any]]]:
        return [
            (evt.EVT_CONN_OPEN, self._on_conn_open),
            (evt.EVT_CONN_CLOSE, self._on_conn_close),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_RELEASED, self._on_released),
            (evt.EVT_ABORTED, self._on_aborted),
            (evt.EVT_DIMSE_SENT, self._on_dimse_sent),
            (evt.EVT_C_ECHO, self.handle_c_echo),
            (evt.EVT_C_STORE, self.handle_c_store),
            (evt.EVT_C_FIND, self.handle_c_find),
            (evt.EVT_C_MOVE, self.handle_c_move),
            (evt.EVT_C_GET, self.handle_c_get),
            (evt.EVT_N_ACTION, self.handle_n_action),
        ]

    # -- association events ------------------------------------------------------------------

    @staticmethod
    def _peer(assoc: Any) -> str:
        req = assoc.requestor
        return f"{req.address}:{req.port}"

    def _on_conn_open(self, event: Any) -> None:
        """Disable Nagle (a C-STORE response must not wait for a delayed ACK) and remember the
        connection until it negotiates an association."""
        sock = _raw_socket(event.assoc)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if event.assoc.is_acceptor:
                    # pynetdicom reads a PDU with blocking recv() once select() says data is
                    # there, on a socket without timeout: a peer stalled inside a PDU header
                    # would pin the connection (and delay the A-ABORT for a bad PDU, PS3.8
                    # Table 9-10 Sta2+Evt19) forever. Silent peers are ARTIM's job.
                    stall = min(self._get_config().dicom.acse_timeout, _PRE_ASSOCIATION_STALL)
                    sock.settimeout(stall)
        if event.assoc.is_acceptor:
            with self._lock:
                self._unnegotiated[event.assoc] = time.monotonic()

    def _on_conn_close(self, event: Any) -> None:
        """A connection that closes without ever sending a valid A-ASSOCIATE-RQ: a port scan, a
        load-balancer probe, or a peer that does not speak DICOM (or speaks TLS to a plain port)."""
        with self._lock:
            opened = self._unnegotiated.pop(event.assoc, None)
        if opened is None:
            self._association_done(event.assoc, "ended (connection closed)")
            return
        self._logger.warning(
            "connection from %s closed after %.1f s without an association (no valid "
            "A-ASSOCIATE-RQ received: not a DICOM peer, a broken PDU, or a timeout)",
            self._peer(event.assoc),
            time.monotonic() - opened,
        )

    def _on_requested(self, event: Any) -> None:
        """A-ASSOCIATE-RQ received: refuse it (A-ASSOCIATE-RJ 2/3/2, local limit exceeded, PS3.8
        9.3.4) when max_associations associations are already established or negotiating."""
        assoc = event.assoc
        with self._lock:
            self._unnegotiated.pop(assoc, None)
        sock = _raw_socket(assoc)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.settimeout(self._get_config().dicom.network_timeout)
        limit = self._get_config().dicom.max_associations
        ae = self._ae
        if ae is None:
            return
        active = [
            a
            for a in ae.active_associations
            if a.is_acceptor
            and a.is_alive()
            and (
                a.is_established
                or (
                    a.requestor.primitive is not None
                    and not (a.is_rejected or a.is_aborted or a.is_released)
                )
            )
        ]
        if len(active) <= limit:
            return
        assoc.acse.send_reject(
            RejectResult.TRANSIENT,
            RejectSource.SERVICE_PROVIDER_PRESENTATION,
            _LOCAL_LIMIT_EXCEEDED,
        )
        self._on_rejected(event)
        assoc.kill()

    def _on_accepted(self, event: Any) -> None:
        assoc = event.assoc
        calling = assoc.requestor.ae_title
        called = assoc.acceptor.ae_title
        with self._lock:
            self._unnegotiated.pop(assoc, None)
            self._associations[assoc] = _AssociationStats(calling, self._peer(assoc))
        rejected = [
            f"{_uid_name(cx.abstract_syntax)} ({cx.result} "
            f"{_CONTEXT_RESULT_TEXT.get(cx.result, 'rejected')})"
            for cx in assoc.rejected_contexts
        ]
        accepted = len(assoc.accepted_contexts)
        line = (
            f"association accepted: {calling} ({self._peer(assoc)}) -> {called}, "
            f"{accepted} presentation context(s) accepted"
        )
        if rejected:
            shown = "; ".join(rejected[:8])
            more = f"; and {len(rejected) - 8} more" if len(rejected) > 8 else ""
            line += f", {len(rejected)} rejected: {shown}{more}"
        if not accepted:
            line += " - no presentation context accepted, the peer cannot send anything"
        self._logger.info(line)

    def _on_rejected(self, event: Any) -> None:
        assoc = event.assoc
        with self._lock:
            self._unnegotiated.pop(assoc, None)
        prim = assoc.acceptor.primitive
        result = getattr(prim, "result", None)
        source = getattr(prim, "result_source", None)
        reason = getattr(prim, "diagnostic", None)
        rq = assoc.requestor.primitive
        called = str(getattr(rq, "called_ae_title", "") or "").strip()
        calling = str(getattr(rq, "calling_ae_title", "") or assoc.requestor.ae_title).strip()
        text = _REASON_TEXT.get((source, reason), "")
        hint = ""
        if (source, reason) == (1, UserRejectReason.CALLED_AE_NOT_RECOGNISED):
            hint = f" (we are {self._get_config().dicom.ae_title})"
        elif (source, reason) == (1, UserRejectReason.CALLING_AE_NOT_RECOGNISED):
            hint = " (not in the AE table)"
        elif (source, reason) == (3, 2):
            hint = f" (max_associations={self._get_config().dicom.max_associations})"
        self._logger.warning(
            "association REJECTED: %s (%s) -> %s: result %s (%s), source %s (%s), reason %s (%s)%s",
            calling,
            self._peer(assoc),
            called,
            result,
            _RESULT_TEXT.get(result, "?"),
            source,
            _SOURCE_TEXT.get(source, "?"),
            reason,
            text or "?",
            hint,
        )

    def _association_done(self, assoc: Any, how: str) -> None:
        with self._lock:
            stats = self._associations.pop(assoc, None)
            for key in [k for k in self._operations if k[0] == id(assoc)]:
                del self._operations[key]
        if stats is None:
            return
        summary = ""
        if stats.stored or stats.failed:
            summary = f": {stats.stored} object(s) stored, {stats.failed} refused"
        level = logging.INFO if how == "released" else logging.WARNING
        self._logger.log(
            level,
            "association %s: %s (%s) after %.1f s%s",
            how,
            stats.calling_ae,
            stats.peer,
            time.monotonic() - stats.started,
            summary,
        )

    def _on_released(self, event: Any) -> None:
        self._association_done(event.assoc, "released")

    def _on_aborted(self, event: Any) -> None:
        self._association_done(event.assoc, "aborted")

    def _on_dimse_sent(self, event: Any) -> None:
        """Log the final response of a FIND/MOVE/GET exactly as it went out."""
        name = type(event.message).__name__
        if name not in ("C_FIND_RSP", "C_MOVE_RSP", "C_GET_RSP"):
            return
        cs = event.message.command_set
        status = int(cs.Status)
        if status in (Status.PENDING, Status.PENDING_OPTIONAL_KEYS_NOT_SUPPORTED):
            return
        key = (id(event.assoc), int(cs.MessageIDBeingRespondedTo))
        with self._lock:
            op = self._operations.pop(key, None)
        if op is None:
            return
        what = op.query.describe() if op.query is not None else "(identifier not understood)"
        line = f"{op.service} {what} from {op.calling_ae}"
        if op.destination:
            line += f" to {op.destination}"
        if name == "C_FIND_RSP":
            line += f": {op.sub_operations} match(es)"
        else:
            completed = cs.get("NumberOfCompletedSuboperations", 0)
            failed = cs.get("NumberOfFailedSuboperations", 0)
            warning = cs.get("NumberOfWarningSuboperations", 0)
            line += f": {completed} sent, {failed} failed, {warning} warning(s)"
        line += f", final {hex_status(status)} {describe(status)}"
        comment = cs.get("ErrorComment")
        if comment:
            line += f" ({comment})"
        level = logging.INFO if status == Status.SUCCESS else logging.WARNING
        self._logger.log(level, line)

    def _track(self, event: Any, op: _Operation) -> None:
        with self._lock:
            self._operations[(id(event.assoc), int(event.request.MessageID))] = op

    # -- Verification and Storage ------------------------------------------------------------

    def handle_c_echo(self, event: Any) -> int:
        """Verification SCP."""
        self._logger.info("C-ECHO from %s: 0x0000 Success", event.assoc.requestor.ae_title)
        return Status.SUCCESS

    def handle_c_store(self, event: Any) -> Dataset:
        """Archive the data set as received (never decoded beyond its header)."""
        req = event.request
        calling = event.assoc.requestor.ae_title
        sop_class_uid = str(req.AffectedSOPClassUID or "")
        sop_instance_uid = str(req.AffectedSOPInstanceUID or "")
        try:
            status, comment = self._archive.store(
                req.DataSet.getvalue(),
                str(event.context.transfer_syntax),
                sop_class_uid,
                sop_instance_uid,
                calling,
            )
        except Exception as exc:  # never let a bug abort a modality's association
            self._logger.exception("C-STORE %s: internal error", sop_instance_uid)
            status, comment = Status.PROCESSING_FAILURE, f"internal error: {exc}"
        with self._lock:
            stats = self._associations.get(event.assoc)
            if stats is not None:
                if status == Status.SUCCESS:
                    stats.stored += 1
                else:
                    stats.failed += 1
        self._logger.log(
            logging.INFO if status == Status.SUCCESS else logging.WARNING,
            "C-STORE %s %s from %s: %s",
            _uid_name(sop_class_uid),
            sop_instance_uid,
            calling,
            Archive.describe_result(status, comment),
        )
        return _status_dataset(status, comment)

    # -- Query/Retrieve ----------------------------------------------------------------------

    def _identifier(self, event: Any) -> Dataset:
        try:
            identifier = event.identifier
            _ = list(identifier)  # force the deferred decode now
        except Exception as exc:
            raise QueryError(Status.CANNOT_UNDERSTAND, f"identifier unreadable: {exc}") from exc
        return identifier

    def handle_c_find(self, event: Any) -> Iterator[tuple[Any, Dataset | None]]:
        """C-FIND SCP, Patient and Study Root: one pending response per match (0xFF01 when a
        key could not be matched), or 0xA900/0xC000 for an identifier the model refuses."""
        root = _ROOTS[UID(event.request.AffectedSOPClassUID)]
        calling = event.assoc.requestor.ae_title
        op = _Operation("C-FIND", calling, None)
        self._track(event, op)
        try:
            query, responses = self.query.find(self._identifier(event), root)
        except QueryError as exc:
            yield _status_dataset(exc.status, exc.comment), None
            return
        op.query = query
        op.sub_operations = len(responses)
        pending = (
            Status.PENDING_OPTIONAL_KEYS_NOT_SUPPORTED if query.unsupported else Status.PENDING
        )
        for ds in responses:
            if event.is_cancelled:
                yield Status.CANCEL, None
                return
            yield pending, ds

    def handle_c_get(self, event: Any) -> Iterator[Any]:
        """C-GET SCP: the matching instances go back as C-STORE sub-operations on the same
        association, under the storage contexts the requestor proposed with the SCP role."""
        root = _ROOTS[UID(event.request.AffectedSOPClassUID)]
        calling = event.assoc.requestor.ae_title
        op = _Operation("C-GET", calling, None)
        self._track(event, op)
        try:
            query, rows = self.query.retrieve(self._identifier(event), root)
        except QueryError as exc:
            # pynetdicom needs a sub-operation count first; the failure ends the request.
            yield 1
            yield _status_dataset(exc.status, exc.comment), None
            return
        op.query = query
        op.sub_operations = len(rows)
        yield len(rows)
        yield from self._sub_operations(event, rows)

    def handle_c_move(self, event: Any) -> Iterator[Any]:
        """C-MOVE SCP: destination from the live AE table (unknown: 0xA801), probed before the
        transfer (unreachable: 0xA702 with every instance failed), then one C-STORE
        sub-operation per instance; failures end in 0xB000 with the Failed SOP Instance UID
        List (pynetdicom counts them)."""
        root = _ROOTS[UID(event.request.AffectedSOPClassUID)]
        calling = event.assoc.requestor.ae_title
        destination = str(event.move_destination or "").strip()
        op = _Operation("C-MOVE", calling, None, destination=destination)
        self._track(event, op)
        refused: QueryError | None = None
        rows: list[dict[str, Any]] = []
        try:
            op.query, rows = self.query.retrieve(self._identifier(event), root)
        except QueryError as exc:
            refused = exc
        entry = self._get_config().ae_entry(destination)
        if entry is None:
            self._logger.warning(
                "C-MOVE from %s: move destination %r is not in the AE table", calling, destination
            )
            yield None, None
            return
        if refused is not None:
            yield self._sink_destination()
            yield 1
            yield _status_dataset(refused.status, refused.comment), None
            return
        op.sub_operations = len(rows)
        if not rows:
            yield entry.host, entry.port
            yield 0
            return
        contexts = _move_contexts(rows)
        problem = self._probe(entry, contexts)
        if problem is not None:
            self._logger.warning(
                "C-MOVE from %s: destination %s at %s:%d unreachable (%s); %d sub-operation(s) "
                "cannot be performed",
                calling,
                entry.ae_title,
                entry.host,
                entry.port,
                problem,
                len(rows),
            )
            yield self._sink_destination()
            yield len(rows)
            failed = Dataset()
            failed.FailedSOPInstanceUIDList = [r["sop_uid"] for r in rows]
            yield (
                _status_dataset(
                    Status.UNABLE_TO_PERFORM_SUBOPERATIONS,
                    f"{entry.ae_title} unreachable: {problem.split(':')[0]}",
                ),
                failed,
            )
            return
        yield (
            entry.host,
            entry.port,
            {
                "ae_title": entry.ae_title,
                "contexts": contexts,
                "evt_handlers": [
                    (evt.EVT_CONN_OPEN, self._on_conn_open),
                    (evt.EVT_DIMSE_RECV, self._on_sub_operation_response),
                ],
            },
        )
        yield len(rows)
        yield from self._sub_operations(event, rows)

    def _sub_operations(self, event: Any, rows: list[dict[str, Any]]) -> Iterator[Any]:
        for position, row in enumerate(rows):
            if event.is_cancelled:
                cancelled = Dataset()
                cancelled.FailedSOPInstanceUIDList = [r["sop_uid"] for r in rows[position:]]
                yield Status.CANCEL, cancelled
                return
            try:
                ds = self._archive.read_for_retrieve(row)
            except Exception as exc:
                self._logger.error("retrieve: cannot read %s: %s", row["sop_uid"], exc)
                # A data set without file meta cannot be sent: pynetdicom counts it as a failed
                # sub-operation and lists its SOP Instance UID.
                ds = Dataset()
                ds.SOPClassUID = row["sop_class"]
                ds.SOPInstanceUID = row["sop_uid"]
            yield Status.PENDING, ds

    def _on_sub_operation_response(self, event: Any) -> None:
        if type(event.message).__name__ != "C_STORE_RSP":
            return
        cs = event.message.command_set
        status = int(cs.Status)
        if status != Status.SUCCESS:
            self._logger.warning(
                "C-MOVE sub-operation C-STORE %s to %s: %s %s%s",
                cs.get("AffectedSOPInstanceUID", "?"),
                event.assoc.acceptor.ae_title,
                hex_status(status),
                describe(status),
                f" ({cs.ErrorComment})" if cs.get("ErrorComment") else "",
            )

    def _probe(self, entry: RemoteAe, contexts: list[PresentationContext]) -> str | None:
        """Associate with a move destination; None when it accepts, else what went wrong."""
        ae = self._ae
        if ae is None:
            return "service stopping"
        connected = threading.Event()
        assoc = ae.associate(
            entry.host,
            entry.port,
            contexts=contexts,
            ae_title=entry.ae_title,
            evt_handlers=[(evt.EVT_CONN_OPEN, lambda _event: connected.set())],
        )
        try:
            if assoc.is_established:
                if not assoc.accepted_contexts:
                    return "no presentation context accepted"
                return None
            if assoc.is_rejected:
                rsp = assoc.acceptor.primitive
                source = getattr(rsp, "result_source", None)
                reason = getattr(rsp, "diagnostic", None)
                return (
                    f"association rejected {getattr(rsp, 'result', '?')}/{source}/{reason}: "
                    f"{_REASON_TEXT.get((source, reason), '?')}"
                )
            if not connected.is_set():
                return "no TCP connection: nothing listening there, or host unreachable"
            return "association aborted: the destination aborted or timed out"
        finally:
            if assoc.is_established:
                assoc.release()

    # -- Storage Commitment ------------------------------------------------------------------

    def handle_n_action(self, event: Any) -> tuple[Any, Dataset | None]:
        return self._commitments.handle_n_action(event)

    @property
    def ae(self) -> AE | None:
        return self._ae

    def config(self) -> PacsConfig:
        return self._get_config()

    @property
    def archive(self) -> Archive:
        return self._archive


def _raw_socket(assoc: Any) -> socket.socket | None:
    """The TCP socket under an association (AssociationSocket.socket), or None once closed."""
    return getattr(getattr(assoc.dul, "socket", None), "socket", None)


def _move_contexts(rows: list[dict[str, Any]]) -> list[PresentationContext]:
    """Contexts to propose to a move destination: each SOP class in its stored transfer syntax,
    plus the uncompressed little endian ones when the stored syntax is uncompressed."""
    by_key: dict[tuple[str, tuple[str, ...]], None] = {}
    for row in rows:
        ts = UID(row["transfer_syntax"])
        if ts in _UNCOMPRESSED:
            syntaxes = tuple(dict.fromkeys([ts, ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
        else:
            syntaxes = (ts,)
        by_key[(row["sop_class"], syntaxes)] = None
    contexts = [build_context(uid, list(syntaxes)) for uid, syntaxes in by_key]
    return contexts[:128]


def _quiet_pynetdicom() -> None:
    """pynetdicom's per-PDU/DIMSE debug handlers and identifier dumps cost time and say nothing
    a trainee needs; pydicom must read and write what modalities send, valid or not."""
    _config.LOG_HANDLER_LEVEL = "none"
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE


class _CommitmentReporter:
    """Storage Commitment Push Model SCP (PS3.4 J.3): N-ACTION in, N-EVENT-REPORT out.

    The N-ACTION is answered at once; the report is built and sent from a background thread,
    after the N-ACTION response has gone out (pynetdicom pauses the association's reactor for a
    send from another thread only between two messages). It goes on the requester's association
    while that is still established (``report_association='same'``), else on a new association
    to the requester's AE from the AE table, proposing the SCP role by role selection.
    """

    def __init__(self, service: DicomService, logger: logging.Logger) -> None:
        self._service = service
        self._logger = logger
        self._stop = threading.Event()
        self._pending: set[str] = set()
        self._lock = threading.Lock()

    def stop(self) -> None:
        self._stop.set()

    def reset(self) -> None:
        self._stop.clear()

    def handle_n_action(self, event: Any) -> tuple[Any, Dataset | None]:
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
            return _status_dataset(Status.PROCESSING_FAILURE, "unreadable action information"), None
        if not transaction or not refs:
            missing = "Transaction UID" if not transaction else "Referenced SOP Sequence items"
            self._logger.warning(
                "N-ACTION Storage Commitment from %s: %s missing: 0x0120", calling, missing
            )
            return _status_dataset(Status.MISSING_ATTRIBUTE, f"{missing} missing"), None
        with self._lock:
            if transaction in self._pending:
                return _status_dataset(
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
            cfg = self._service.config().storage_commitment
            if cfg.report_delay and self._stop.wait(cfg.report_delay):
                return
            event_type, report, failed = self._evaluate(transaction, refs)
            summary = (
                f"transaction {transaction}: {len(refs) - failed} committed, {failed} failed, "
                f"event type {event_type}"
            )
            if (
                self._service.config().storage_commitment.report_association == "same"
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
        archive = self._service.archive
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
        report.RetrieveAETitle = self._service.config().dicom.ae_title
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
            status = assoc.send_n_event_report(
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
        cfg = self._service.config()
        attempts = cfg.storage_commitment.report_retries + 1
        for attempt in range(1, attempts + 1):
            ae = self._service.ae
            entry = self._service.config().ae_entry(calling)
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
                contexts=[build_context(StorageCommitmentPushModel, _UNCOMPRESSED)],
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
