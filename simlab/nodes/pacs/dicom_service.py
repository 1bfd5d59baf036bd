"""The PACS DICOM service: one pynetdicom AE serving Verification, Storage, Query/Retrieve (FIND,
MOVE, GET) and Storage Commitment Push Model.

This module builds the AE and its presentation contexts from the config, starts and stops the
listener, applies config changes live and binds the handler rows; the work is done elsewhere:
association_policy (AE checks, association limit, socket timeouts, association log lines),
storage_scp (C-ECHO, C-STORE), qr_scp (C-FIND, C-MOVE, C-GET) and commitment_scp (N-ACTION,
N-EVENT-REPORT).

`apply_config` updates pynetdicom's ``require_called_aet`` / ``require_calling_aet`` and the
server's supported contexts, so a change applies to the next association. The listener restarts
only when host, port or AE title change.

Every association, C-STORE, query and retrieve leaves one human-readable line in the node log: it
is what a trainee reads to diagnose. pynetdicom's own logger stays at WARNING.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Callable
from typing import Any

import pydicom.config
from pydicom import uid as pydicom_uid
from pydicom.uid import UID
from pynetdicom import (
    AE,
    AllStoragePresentationContexts,
    _config,
    build_context,
    evt,
    sop_class,
)
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import StorageCommitmentPushModel, Verification

from simlab.common.config import ALL_STORAGE, PacsConfig
from simlab.nodes.pacs.archive import Archive
from simlab.nodes.pacs.association_policy import AssociationPolicy
from simlab.nodes.pacs.commitment_scp import StorageCommitmentScp
from simlab.nodes.pacs.qr_scp import QR_ROOTS, QueryRetrieveScp
from simlab.nodes.pacs.scp_common import UNCOMPRESSED
from simlab.nodes.pacs.storage_scp import StorageScp


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


class SupportedContexts(list[PresentationContext]):
    """The listener's presentation contexts, cheap to deep-copy.

    pynetdicom deep-copies the server's contexts for every association it accepts; with ~180
    storage contexts and ~2,200 transfer syntax UIDs that took ~75 ms per association, most of
    a C-FIND's latency. UIDs are immutable strings, so a copy of each context with its own
    transfer syntax list is as independent as a deep copy, for a hundredth of the cost.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> list[PresentationContext]:
        out = []
        for cx in self:
            twin = copy.copy(cx)
            twin._transfer_syntax = list(cx._transfer_syntax)
            out.append(twin)
        return out


def supported_contexts(
    cfg: PacsConfig, warn: Callable[[str], None] | None = None
) -> SupportedContexts:
    """Every presentation context the PACS accepts under `cfg`.

    Storage contexts carry SCU and SCP roles so that a C-GET requestor's role selection (it
    proposes to be the Storage SCP) is accepted on the same association.
    """
    contexts = SupportedContexts([build_context(Verification, UNCOMPRESSED)])
    for uid in QR_ROOTS:
        contexts.append(build_context(uid, UNCOMPRESSED))
    contexts.append(build_context(StorageCommitmentPushModel, UNCOMPRESSED))
    syntaxes = [UID(ts) for ts in cfg.accepted_transfer_syntaxes]
    for uid in storage_sop_classes(cfg, warn):
        cx = build_context(uid, list(syntaxes))
        cx.scu_role = True
        cx.scp_role = True
        contexts.append(cx)
    return contexts


class DicomService:
    """The PACS's DICOM listener and its SCPs."""

    def __init__(
        self, get_config: Callable[[], PacsConfig], archive: Archive, logger: logging.Logger
    ) -> None:
        self._get_config = get_config
        self._archive = archive
        self._logger = logger
        self._ae: AE | None = None
        self._server: Any = None
        self._policy = AssociationPolicy(get_config, self._get_ae, logger, self._association_ended)
        self._storage = StorageScp(archive, logger, self._policy.count_store)
        self._qr = QueryRetrieveScp(
            get_config, archive, logger, self._get_ae, self._policy.on_conn_open
        )
        self._commitments = StorageCommitmentScp(get_config, archive, self._get_ae, logger)
        self.query = self._qr.query

    @property
    def listening(self) -> bool:
        """True while the DICOM listener is up."""
        server = self._server
        return server is not None and server.socket is not None and server.socket.fileno() != -1

    @property
    def ae(self) -> AE | None:
        """The listening AE, None while stopped."""
        return self._ae

    def config(self) -> PacsConfig:
        """The config in force now."""
        return self._get_config()

    @property
    def archive(self) -> Archive:
        """The archive the SCPs store into and retrieve from."""
        return self._archive

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

    def _get_ae(self) -> AE | None:
        return self._ae

    def _association_ended(self, assoc: Any) -> None:
        self._qr.forget(assoc)

    def _start_listener(self) -> None:
        cfg = self._get_config()
        ae = AE(ae_title=cfg.dicom.ae_title)
        ae.implementation_version_name = "SIMLAB_PACS"
        self._ae = ae
        self._policy.apply(ae, cfg)
        self._server = ae.start_server(
            (cfg.dicom.host, cfg.dicom.port),
            block=False,
            evt_handlers=self._handlers(),
            ae_title=cfg.dicom.ae_title,
            contexts=supported_contexts(cfg, self._logger.warning),
        )
        # start_server keeps a plain deep copy; the server's own list must stay cheap to copy.
        self._server.contexts = supported_contexts(cfg)
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
        self._qr.stop()

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
        self._policy.apply(self._ae, new)
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

    def _handlers(self) -> list[tuple[Any, Callable[..., Any]]]:
        return [
            *self._policy.handlers(),
            (evt.EVT_DIMSE_SENT, self._qr.on_dimse_sent),
            (evt.EVT_C_ECHO, self._storage.handle_c_echo),
            (evt.EVT_C_STORE, self._storage.handle_c_store),
            (evt.EVT_C_FIND, self._qr.handle_c_find),
            (evt.EVT_C_MOVE, self._qr.handle_c_move),
            (evt.EVT_C_GET, self._qr.handle_c_get),
            (evt.EVT_N_ACTION, self._commitments.handle_n_action),
        ]


def _quiet_pynetdicom() -> None:
    """pynetdicom's per-PDU/DIMSE debug handlers and identifier dumps cost time and say nothing
    a trainee needs; pydicom must read and write what modalities send, valid or not."""
    _config.LOG_HANDLER_LEVEL = "none"
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
