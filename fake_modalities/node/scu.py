"""Opening an association as SCU and saying why one failed, the way a modality console does.

The texts carry the codes an administrator looks up: A-ASSOCIATE-RJ result/source/reason
(PS3.8 9.3.4), presentation context results (PS3.8 9.3.3.2), DIMSE statuses (PS3.7 Annex C).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.uid import UID
from pynetdicom import AE
from pynetdicom.presentation import PresentationContext

from simlab.common.config import RemoteAe
from simlab.common.dicom_status import CONTEXT_RESULT_TEXT, reject_reason_text


def sop_name(uid: str) -> str:
    """'CT Image Storage' for a UID pydicom knows, else the UID itself."""
    name = UID(uid).name
    return name if name and name != uid else uid


def reject_text(result: int, source: int, reason: int) -> str:
    """'association rejected: called AE title not recognised (1/1/7)'."""
    why = reject_reason_text(source, reason)
    kind = "" if result == 1 else " (transient)"
    return f"association rejected{kind}: {why} ({result}/{source}/{reason})"


def context_text(rejected: Sequence[PresentationContext], abstract_syntax: str) -> str:
    """'no presentation context accepted for CT Image Storage (abstract syntax not supported)'."""
    results = [cx.result for cx in rejected if cx.abstract_syntax == abstract_syntax]
    why = CONTEXT_RESULT_TEXT.get(results[0], f"result {results[0]}") if results else "not proposed"
    return f"no presentation context accepted for {sop_name(abstract_syntax)} ({why})"


@dataclass
class Opened:
    """An association attempt: the association when established, else why not."""

    assoc: Any
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def associate(
    ae: AE,
    peer: RemoteAe,
    logger: logging.Logger,
    purpose: str,
    evt_handlers: list[Any] | None = None,
    ext_neg: list[Any] | None = None,
) -> Opened:
    """Associate with `peer`; log one line with the result; on failure say why."""
    assoc = ae.associate(
        peer.host, peer.port, ae_title=peer.ae_title, evt_handlers=evt_handlers, ext_neg=ext_neg
    )
    where = f"{ae.ae_title} -> {peer.ae_title}@{peer.host}:{peer.port}"
    if assoc.is_established:
        logger.info("association %s (%s) accepted", where, purpose)
        return Opened(assoc)
    error = failure_text(assoc, peer) or "association failed"
    logger.warning("association %s (%s) failed: %s", where, purpose, error)
    return Opened(None, error)


def failure_text(assoc: Any, peer: RemoteAe) -> str:
    """Why an association did not come up, with its codes."""
    primitive = getattr(assoc.acceptor, "primitive", None)
    if assoc.is_rejected and primitive is not None:
        return reject_text(
            int(primitive.result), int(primitive.result_source), int(primitive.diagnostic)
        )
    rejected = list(getattr(assoc, "rejected_contexts", []) or [])
    if rejected:
        names = sorted({cx.abstract_syntax for cx in rejected})
        return "; ".join(context_text(rejected, n) for n in names)
    if primitive is not None:
        return "association aborted by the peer (A-ABORT)"
    error = _connect_error(peer)
    if error:
        return f"cannot connect to {peer.host}:{peer.port}: {error}"
    return "no A-ASSOCIATE response from the peer (ARTIM timeout or A-ABORT)"


def _connect_error(peer: RemoteAe) -> str:
    try:
        with socket.create_connection((peer.host, peer.port), timeout=3):
            return ""
    except OSError as exc:
        return exc.strerror or str(exc)
