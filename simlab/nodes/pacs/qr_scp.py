"""The Query/Retrieve SCP: C-FIND, C-MOVE and C-GET, Patient and Study Root.

Matching is query.py's job; this module turns its answers into DIMSE responses and
sub-operations, probes a move destination before a transfer, works around pynetdicom's C-MOVE
failure status for an unreachable destination (a loopback "sink" peer), and writes one node-log
line per request with its final status exactly as it went out.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_context, evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from simlab.common.config import PacsConfig, RemoteAe
from simlab.common.dicom_status import Status, describe, hex_status, reject_reason_text
from simlab.nodes.pacs.archive import Archive
from simlab.nodes.pacs.query import (
    PATIENT_ROOT,
    STUDY_ROOT,
    ParsedQuery,
    QueryError,
    QueryService,
)
from simlab.nodes.pacs.scp_common import UNCOMPRESSED, status_dataset

QR_ROOTS = {
    PatientRootQueryRetrieveInformationModelFind: PATIENT_ROOT,
    PatientRootQueryRetrieveInformationModelMove: PATIENT_ROOT,
    PatientRootQueryRetrieveInformationModelGet: PATIENT_ROOT,
    StudyRootQueryRetrieveInformationModelFind: STUDY_ROOT,
    StudyRootQueryRetrieveInformationModelMove: STUDY_ROOT,
    StudyRootQueryRetrieveInformationModelGet: STUDY_ROOT,
}
"""The Q/R SOP classes the PACS serves, and the information model each one queries."""


@dataclass
class _Operation:
    """A running FIND/MOVE/GET, kept so the final response can be logged with its context."""

    service: str
    calling_ae: str
    query: ParsedQuery | None
    destination: str = ""
    sub_operations: int = 0


class QueryRetrieveScp:
    """C-FIND, C-MOVE and C-GET handlers.

    Args:
        get_config: the config in force now (the AE table names move destinations).
        archive: the index to query and the files to send.
        logger: the node log.
        get_ae: the listening AE, which associates with move destinations (None while stopped).
        on_conn_open: handler for the connection to a move destination (TCP_NODELAY).
    """

    def __init__(
        self,
        get_config: Callable[[], PacsConfig],
        archive: Archive,
        logger: logging.Logger,
        get_ae: Callable[[], AE | None],
        on_conn_open: Callable[[Any], None],
    ) -> None:
        self._get_config = get_config
        self._archive = archive
        self._logger = logger
        self._get_ae = get_ae
        self._on_conn_open = on_conn_open
        self.query = QueryService(archive.index, get_config)
        self._lock = threading.Lock()
        self._operations: dict[tuple[int, int], _Operation] = {}
        self._sink: Any = None

    def stop(self) -> None:
        """Shut the sink peer down, if it was started."""
        if self._sink is not None:
            self._sink[0].shutdown()
            self._sink = None

    def forget(self, assoc: Any) -> None:
        """Drop the operations of an association that ended."""
        with self._lock:
            for key in [k for k in self._operations if k[0] == id(assoc)]:
                del self._operations[key]

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

    def on_dimse_sent(self, event: Any) -> None:
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
        root = QR_ROOTS[UID(event.request.AffectedSOPClassUID)]
        calling = event.assoc.requestor.ae_title
        op = _Operation("C-FIND", calling, None)
        self._track(event, op)
        try:
            query, responses = self.query.find(self._identifier(event), root)
        except QueryError as exc:
            yield status_dataset(exc.status, exc.comment), None
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
        root = QR_ROOTS[UID(event.request.AffectedSOPClassUID)]
        calling = event.assoc.requestor.ae_title
        op = _Operation("C-GET", calling, None)
        self._track(event, op)
        try:
            query, rows = self.query.retrieve(self._identifier(event), root)
        except QueryError as exc:
            # pynetdicom needs a sub-operation count first; the failure ends the request.
            yield 1
            yield status_dataset(exc.status, exc.comment), None
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
        root = QR_ROOTS[UID(event.request.AffectedSOPClassUID)]
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
            yield status_dataset(refused.status, refused.comment), None
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
                status_dataset(
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
        ae = self._get_ae()
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
                    f"{reject_reason_text(source, reason)}"
                )
            if not connected.is_set():
                return "no TCP connection: nothing listening there, or host unreachable"
            return "association aborted: the destination aborted or timed out"
        finally:
            if assoc.is_established:
                assoc.release()


def _move_contexts(rows: list[dict[str, Any]]) -> list[PresentationContext]:
    """Contexts to propose to a move destination: each SOP class in its stored transfer syntax,
    plus the uncompressed little endian ones when the stored syntax is uncompressed."""
    by_key: dict[tuple[str, tuple[str, ...]], None] = {}
    for row in rows:
        ts = UID(row["transfer_syntax"])
        if ts in UNCOMPRESSED:
            syntaxes = tuple(dict.fromkeys([ts, ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
        else:
            syntaxes = (ts,)
        by_key[(row["sop_class"], syntaxes)] = None
    contexts = [build_context(uid, list(syntaxes)) for uid, syntaxes in by_key]
    return contexts[:128]
