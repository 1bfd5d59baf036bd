"""Who may associate with the PACS, how many at once, and what each association leaves in the log.

pynetdicom answers the AE title checks itself (``require_called_aet`` / ``require_calling_aet``:
A-ASSOCIATE-RJ 1/1/7 and 1/1/3); this module sets them from the live config, counts established
and negotiating associations against ``max_associations`` (A-ASSOCIATE-RJ 2/3/2, local limit
exceeded), puts socket timeouts on accepted connections, and writes the association lines a
trainee reads to diagnose: accepted (with rejected presentation contexts), REJECTED (result,
source, reason and a hint), released or aborted (with objects stored), and connections that
never sent an A-ASSOCIATE-RQ.

It is separate from the SCPs because it concerns the association, never a DIMSE message.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pynetdicom import AE, evt

from simlab.common.association_log import rejection_line
from simlab.common.config import PacsConfig
from simlab.common.dicom_status import (
    CONTEXT_RESULT_TEXT,
    RejectResult,
    RejectSource,
)
from simlab.nodes.pacs.scp_common import uid_name

_PRE_ASSOCIATION_STALL = 3.0
"""Seconds a peer may stall in the middle of a PDU before its association is negotiated."""
_LOCAL_LIMIT_EXCEEDED = 2
"""A-ASSOCIATE-RJ reason 2 when the source is the presentation service provider (PS3.8 9.3.4)."""
_THREAD_CEILING = 1024
"""pynetdicom's own limit on acceptor threads, a last resort above max_associations."""
_NO_KNOWN_CALLER = "!EMPTY-AE-TABLE!"
"""Stands in for an empty AE table: pynetdicom treats an empty require_calling_aet as 'anyone'."""


@dataclass
class _AssociationStats:
    calling_ae: str
    peer: str
    started: float = field(default_factory=time.monotonic)
    stored: int = 0
    failed: int = 0


class AssociationPolicy:
    """AE checks, the association limit, socket timeouts and the association log lines.

    Args:
        get_config: the config in force now.
        get_ae: the listening AE (None while the service is stopped).
        logger: the node log.
        on_association_end: called with the association once it is released, aborted or closed.
    """

    def __init__(
        self,
        get_config: Callable[[], PacsConfig],
        get_ae: Callable[[], AE | None],
        logger: logging.Logger,
        on_association_end: Callable[[Any], None],
    ) -> None:
        self._get_config = get_config
        self._get_ae = get_ae
        self._logger = logger
        self._on_association_end = on_association_end
        self._lock = threading.Lock()
        self._associations: dict[Any, _AssociationStats] = {}
        self._unnegotiated: dict[Any, float] = {}

    def apply(self, ae: AE | None, cfg: PacsConfig) -> None:
        """Set the AE title checks, PDU size and timeouts of `ae` from `cfg`."""
        if ae is None:
            return
        d = cfg.dicom
        ae.require_called_aet = d.require_called_ae
        if d.require_known_calling_ae:
            ae.require_calling_aet = [e.ae_title for e in cfg.ae_table] or [_NO_KNOWN_CALLER]
        else:
            ae.require_calling_aet = []
        # max_associations is enforced in on_requested, counting associations only: pynetdicom
        # would also count connections that never sent an A-ASSOCIATE-RQ (a port scan, a health
        # probe), whose threads linger until ARTIM expires and would lock modalities out.
        ae.maximum_associations = _THREAD_CEILING
        ae.maximum_pdu_size = d.max_pdu_size
        ae.acse_timeout = d.acse_timeout
        ae.dimse_timeout = d.dimse_timeout
        ae.network_timeout = d.network_timeout
        ae.connection_timeout = min(d.acse_timeout, 10.0)

    def handlers(self) -> list[tuple[Any, Callable[..., Any]]]:
        """The association event rows for ``start_server``."""
        return [
            (evt.EVT_CONN_OPEN, self.on_conn_open),
            (evt.EVT_CONN_CLOSE, self._on_conn_close),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_RELEASED, self._on_released),
            (evt.EVT_ABORTED, self._on_aborted),
        ]

    def count_store(self, assoc: Any, success: bool) -> None:
        """Count a C-STORE for the association's closing line."""
        with self._lock:
            stats = self._associations.get(assoc)
            if stats is not None:
                if success:
                    stats.stored += 1
                else:
                    stats.failed += 1

    @staticmethod
    def peer(assoc: Any) -> str:
        """The requestor's address:port."""
        req = assoc.requestor
        return f"{req.address}:{req.port}"

    # -- association events ------------------------------------------------------------------

    def on_conn_open(self, event: Any) -> None:
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
            self.peer(event.assoc),
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
        ae = self._get_ae()
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
            self._associations[assoc] = _AssociationStats(calling, self.peer(assoc))
        rejected = [
            f"{uid_name(cx.abstract_syntax)} ({cx.result} "
            f"{CONTEXT_RESULT_TEXT.get(cx.result, 'rejected')})"
            for cx in assoc.rejected_contexts
        ]
        accepted = len(assoc.accepted_contexts)
        line = (
            f"association accepted: {calling} ({self.peer(assoc)}) -> {called}, "
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
        dicom = self._get_config().dicom
        self._logger.warning(
            "%s", rejection_line(assoc, self.peer(assoc), dicom.ae_title, dicom.max_associations)
        )

    def _association_done(self, assoc: Any, how: str) -> None:
        with self._lock:
            stats = self._associations.pop(assoc, None)
        self._on_association_end(assoc)
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


def _raw_socket(assoc: Any) -> socket.socket | None:
    """The TCP socket under an association (AssociationSocket.socket), or None once closed."""
    return getattr(getattr(assoc.dul, "socket", None), "socket", None)
