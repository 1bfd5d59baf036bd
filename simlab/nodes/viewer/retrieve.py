"""Query/Retrieve SCU: how the viewer opens a study (IHE RAD-14 Query Images, RAD-16 Retrieve).

Opening a study is what a radiologist's click does: a C-FIND at STUDY level on the PACS (by
Accession Number or Study Instance UID), then a C-MOVE with the viewer itself as the destination
(or a C-GET, the objects coming back on the same association). The outcome says exactly what
the peer said: the A-ASSOCIATE-RJ result/source/reason, a C-FIND with no match, the final C-MOVE
or C-GET status with its sub-operation counts and the Failed SOP Instance UID List, a TCP error,
or a timeout.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, build_context, build_role, evt
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from simlab.common.dicom_status import (
    REJECT_RESULT_TEXT,
    REJECT_SOURCE_TEXT,
    Status,
    describe,
    hex_status,
    reject_reason_text,
)
from simlab.common.viewer_config import ViewerConfig
from simlab.nodes.viewer.storage_scp import (
    UNCOMPRESSED,
    ReceivedBatch,
    StorageService,
)
from simlab.nodes.viewer.store import ViewerStore

_MODELS = {
    "study_root": (
        StudyRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelMove,
        StudyRootQueryRetrieveInformationModelGet,
    ),
    "patient_root": (
        PatientRootQueryRetrieveInformationModelFind,
        PatientRootQueryRetrieveInformationModelMove,
        PatientRootQueryRetrieveInformationModelGet,
    ),
}
_PENDING = (Status.PENDING, Status.PENDING_OPTIONAL_KEYS_NOT_SUPPORTED)
_MAX_CONTEXTS = 128
"""PS3.8 9.3.2.2: at most 128 presentation contexts (odd IDs 1-255) per association."""


class OpenFailed(Exception):
    """An open that did not deliver the study; `kind` maps to the admin API's HTTP status."""

    def __init__(self, kind: str, outcome: dict[str, Any]) -> None:
        super().__init__(outcome.get("error", kind))
        self.kind = kind
        self.outcome = outcome


class Retriever:
    """Opens studies from the configured Q/R provider."""

    def __init__(
        self,
        get_config: Callable[[], ViewerConfig],
        store: ViewerStore,
        storage: StorageService,
        logger: logging.Logger,
    ) -> None:
        self._get_config = get_config
        self._store = store
        self._storage = storage
        self._logger = logger

    # -- public --------------------------------------------------------------------------------

    def open_study(
        self, *, accession: str | None, study_uid: str | None, method: str | None = None
    ) -> dict[str, Any]:
        """Find and retrieve a study; returns the outcome, raises OpenFailed with it."""
        cfg = self._get_config()
        provider = cfg.retrieve.provider
        method = method or cfg.retrieve.method
        started = time.time()
        outcome: dict[str, Any] = {
            "ok": False,
            "request": {"accession": accession, "study_uid": study_uid},
            "method": method,
            "query_model": cfg.retrieve.query_model,
            "provider": {
                "ae_title": provider.ae_title,
                "host": provider.host,
                "port": provider.port,
            },
            "started_at": started,
            "stage": "find",
            "error": None,
            "studies": [],
        }
        what = f"accession {accession}" if accession else f"Study Instance UID {study_uid}"
        try:
            matches = self._find(cfg, accession, study_uid, outcome)
            if not matches:
                outcome["error"] = f"no study with {what} on {provider.ae_title}"
                raise OpenFailed("not_found", outcome)
            outcome["stage"] = "retrieve"
            for match in matches:
                outcome["studies"].append(self._retrieve(cfg, method, match, outcome))
            failures = [s for s in outcome["studies"] if not s["ok"]]
            if failures:
                first = failures[0]["retrieve"]
                outcome["error"] = (
                    f"{method.upper()} of {what} from {provider.ae_title}: {first['summary']}"
                )
                raise OpenFailed(first.get("kind", "retrieve"), outcome)
            outcome["ok"] = True
            outcome["stage"] = "done"
            return outcome
        except OpenFailed as exc:
            self._logger.warning("open %s failed: %s", what, exc.outcome.get("error"))
            raise
        finally:
            outcome["finished_at"] = time.time()
            outcome["duration_s"] = round(outcome["finished_at"] - started, 3)
            outcome["instances"] = sum(s["held"]["instances"] for s in outcome["studies"])
            self._store.record_open(outcome, cfg.retrieve.history)

    # -- association -----------------------------------------------------------------------------

    def _associate(
        self,
        cfg: ViewerConfig,
        contexts: list[Any],
        outcome: dict[str, Any],
        ext_neg: list[Any] | None = None,
        handlers: list[Any] | None = None,
    ) -> Any:
        provider = cfg.retrieve.provider
        ae = AE(ae_title=cfg.dicom.ae_title)
        ae.acse_timeout = cfg.retrieve.connect_timeout
        ae.connection_timeout = cfg.retrieve.connect_timeout
        ae.dimse_timeout = cfg.retrieve.dimse_timeout
        ae.network_timeout = cfg.retrieve.dimse_timeout
        ae.maximum_pdu_size = cfg.dicom.max_pdu_size
        connected = threading.Event()
        handlers = [*(handlers or []), (evt.EVT_CONN_OPEN, lambda _e: connected.set())]
        assoc = ae.associate(
            provider.host,
            provider.port,
            contexts=contexts,
            ae_title=provider.ae_title,
            ext_neg=ext_neg,
            evt_handlers=handlers,
        )
        if assoc.is_established:
            if not assoc.accepted_contexts:
                assoc.release()
                outcome["error"] = (
                    f"{provider.ae_title} accepted the association but no presentation context "
                    "(the Q/R SOP class is not supported)"
                )
                raise OpenFailed("negotiation", outcome)
            return assoc
        where = f"{provider.ae_title} at {provider.host}:{provider.port}"
        if assoc.is_rejected:
            prim = assoc.acceptor.primitive
            result = getattr(prim, "result", None)
            source = getattr(prim, "result_source", None)
            reason = getattr(prim, "diagnostic", None)
            outcome["association"] = {
                "result": result,
                "result_text": REJECT_RESULT_TEXT.get(result, "?"),
                "source": source,
                "source_text": REJECT_SOURCE_TEXT.get(source, "?"),
                "reason": reason,
                "reason_text": reject_reason_text(source, reason),
            }
            outcome["stage"] = "associate"
            outcome["error"] = (
                f"association rejected by {where}: result {result} "
                f"({REJECT_RESULT_TEXT.get(result, '?')}), source {source} "
                f"({REJECT_SOURCE_TEXT.get(source, '?')}), reason {reason} "
                f"({reject_reason_text(source, reason)})"
            )
            raise OpenFailed("rejected", outcome)
        outcome["stage"] = "connect"
        if not connected.is_set():
            outcome["error"] = (
                f"cannot connect to {where}: {_tcp_error(provider.host, provider.port)}"
            )
            raise OpenFailed("connection", outcome)
        outcome["error"] = (
            f"association with {where} aborted or timed out during negotiation "
            f"(ARTIM {cfg.retrieve.connect_timeout:g} s)"
        )
        raise OpenFailed("timeout", outcome)

    # -- C-FIND ------------------------------------------------------------------------------------

    def _find(
        self,
        cfg: ViewerConfig,
        accession: str | None,
        study_uid: str | None,
        outcome: dict[str, Any],
    ) -> list[dict[str, Any]]:
        find_model = _MODELS[cfg.retrieve.query_model][0]
        assoc = self._associate(cfg, [build_context(find_model, UNCOMPRESSED)], outcome)
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = study_uid or ""
        query.AccessionNumber = accession or ""
        for keyword in (
            "PatientID",
            "PatientName",
            "StudyDate",
            "StudyDescription",
            "ModalitiesInStudy",
            "SOPClassesInStudy",
            "NumberOfStudyRelatedSeries",
            "NumberOfStudyRelatedInstances",
        ):
            setattr(query, keyword, "")
        matches: list[dict[str, Any]] = []
        final: int | None = None
        comment = ""
        started = time.monotonic()
        try:
            for status, identifier in assoc.send_c_find(query, find_model):
                if "Status" not in status:
                    break
                value = int(status.Status)
                if value in _PENDING and identifier is not None:
                    matches.append(_match(identifier))
                    continue
                final = value
                comment = str(status.get("ErrorComment", "") or "")
        finally:
            if assoc.is_established:
                assoc.release()
        provider = cfg.retrieve.provider.ae_title
        if final is None:
            outcome["error"] = _no_response(provider, "C-FIND", cfg, started)
            raise OpenFailed("timeout", outcome)
        outcome["find"] = {
            "status": hex_status(final),
            "status_text": describe(final),
            "matches": len(matches),
        }
        if final != Status.SUCCESS:
            outcome["error"] = (
                f"C-FIND on {provider} failed: {hex_status(final)} {describe(final)}"
                + (f" ({comment})" if comment else "")
            )
            raise OpenFailed("find", outcome)
        self._logger.info(
            "C-FIND STUDY (%s) on %s for %s: %d match(es), final 0x0000 Success",
            cfg.retrieve.query_model.replace("_", " ").title(),
            provider,
            f"accession {accession}" if accession else f"Study Instance UID {study_uid}",
            len(matches),
        )
        if study_uid:  # a PACS may ignore a key; keep only what was asked for
            matches = [m for m in matches if m["study_uid"] == study_uid]
        if accession:
            matches = [m for m in matches if m["accession"] in ("", accession)]
        return [m for m in matches if m["study_uid"]]

    # -- C-MOVE / C-GET ----------------------------------------------------------------------------

    def _retrieve(
        self, cfg: ViewerConfig, method: str, match: dict[str, Any], outcome: dict[str, Any]
    ) -> dict[str, Any]:
        _find_model, move_model, get_model = _MODELS[cfg.retrieve.query_model]
        provider = cfg.retrieve.provider.ae_title
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        if cfg.retrieve.query_model == "patient_root":
            identifier.PatientID = match["patient_id"]
        identifier.StudyInstanceUID = match["study_uid"]
        batch = ReceivedBatch(provider)
        since = time.time()
        if method == "c-get":
            contexts = [build_context(get_model, UNCOMPRESSED), *_get_contexts(cfg, match)]
            roles = [build_role(cx.abstract_syntax, scp_role=True) for cx in contexts[1:]]
            store_handler = (
                evt.EVT_C_STORE,
                lambda event: self._storage.handle_c_store(event, batch),
            )
            assoc = self._associate(cfg, contexts, outcome, roles, [store_handler])
            responses = assoc.send_c_get(identifier, get_model)
        else:
            assoc = self._associate(cfg, [build_context(move_model, UNCOMPRESSED)], outcome)
            responses = assoc.send_c_move(identifier, cfg.dicom.ae_title, move_model)
        final: Dataset | None = None
        failed_uids: list[str] = []
        started = time.monotonic()
        try:
            for status, ident in responses:
                if "Status" not in status:
                    break
                if int(status.Status) in _PENDING:
                    continue
                final = status
                if ident is not None and "FailedSOPInstanceUIDList" in ident:
                    value = ident.FailedSOPInstanceUIDList
                    failed_uids = [value] if isinstance(value, str) else [str(v) for v in value]
        finally:
            if assoc.is_established:
                assoc.release()
        service = method.upper()
        held = self._store.study_summary(match["study_uid"], since=since)
        result: dict[str, Any] = {
            "study_uid": match["study_uid"],
            "accession": match["accession"],
            "patient_id": match["patient_id"],
            "patient_name": match["patient_name"],
            "expected_instances": match["instances"],
            "held": held,
        }
        if final is None:
            summary = _no_response(provider, service, cfg, started)
            result["ok"] = False
            result["retrieve"] = {"status": None, "summary": summary, "kind": "timeout"}
            self._logger.warning("retrieve %s study %s: %s", service, match["study_uid"], summary)
            return result
        value = int(final.Status)
        completed = int(final.get("NumberOfCompletedSuboperations", 0) or 0)
        failed = int(final.get("NumberOfFailedSuboperations", 0) or 0)
        warning = int(final.get("NumberOfWarningSuboperations", 0) or 0)
        comment = str(final.get("ErrorComment", "") or "")
        summary = (
            f"final {hex_status(value)} {describe(value)}"
            + (f" ({comment})" if comment else "")
            + f", {completed} completed, {failed} failed, {warning} warning(s)"
        )
        result["ok"] = value == Status.SUCCESS and failed == 0
        result["retrieve"] = {
            "status": hex_status(value),
            "status_value": value,
            "status_text": describe(value),
            "error_comment": comment,
            "completed": completed,
            "failed": failed,
            "warning": warning,
            "failed_sop_uids": failed_uids,
            "summary": summary,
            "kind": "retrieve",
        }
        if method == "c-get" and (batch.stored or batch.failed):
            self._logger.info("received batch (C-GET): %s", batch.describe())
        self._logger.log(
            logging.INFO if result["ok"] else logging.WARNING,
            "retrieve %s study %s (accession %s) from %s to %s: %s; %d instance(s) arrived, "
            "viewer holds %d in %d series",
            service,
            match["study_uid"],
            match["accession"] or "-",
            provider,
            cfg.dicom.ae_title if method == "c-move" else "same association",
            summary,
            held["arrived"],
            held["instances"],
            len(held["series"]),
        )
        return result


def _match(identifier: Dataset) -> dict[str, Any]:
    def text(keyword: str) -> str:
        try:
            value = identifier.get(keyword)
        except Exception:
            return ""
        if value is None:
            return ""
        if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
            return "\\".join(str(v) for v in value)
        return str(value).strip()

    instances = text("NumberOfStudyRelatedInstances")
    classes = text("SOPClassesInStudy")
    return {
        "study_uid": text("StudyInstanceUID"),
        "accession": text("AccessionNumber"),
        "patient_id": text("PatientID"),
        "patient_name": text("PatientName"),
        "study_date": text("StudyDate"),
        "study_description": text("StudyDescription"),
        "modalities": text("ModalitiesInStudy"),
        "sop_classes": [c for c in classes.split("\\") if c],
        "instances": int(instances) if instances.isdigit() else None,
    }


def _get_contexts(cfg: ViewerConfig, match: dict[str, Any]) -> list[Any]:
    """Storage contexts to propose with the SCP role for a C-GET: the SOP classes the C-FIND
    said the study holds (each uncompressed, and in every configured compressed syntax), else
    the common storage SOP classes uncompressed."""
    classes = match["sop_classes"]
    if not classes:
        return [
            build_context(cx.abstract_syntax, UNCOMPRESSED)
            for cx in StoragePresentationContexts[: _MAX_CONTEXTS - 1]
        ]
    compressed = [ts for ts in cfg.accepted_transfer_syntaxes if ts not in UNCOMPRESSED]
    contexts = [build_context(uid, UNCOMPRESSED) for uid in classes]
    for uid in classes:
        for ts in compressed:
            contexts.append(build_context(uid, ts))
    return contexts[: _MAX_CONTEXTS - 1]


def _no_response(provider: str, service: str, cfg: ViewerConfig, started: float) -> str:
    waited = time.monotonic() - started
    if waited >= cfg.retrieve.dimse_timeout * 0.9:
        return (
            f"timeout: no {service} response from {provider} within "
            f"{cfg.retrieve.dimse_timeout:g} s (DIMSE timeout); association aborted"
        )
    return f"association aborted by {provider} (or the network) before the final {service} response"


def _tcp_error(host: str, port: int) -> str:
    """The operating system's words for why a TCP connection fails (refused, unreachable)."""
    try:
        with socket.create_connection((host, port), timeout=2.0):
            return "TCP connected now, but the first attempt failed"
    except OSError as exc:
        return exc.strerror or str(exc)
