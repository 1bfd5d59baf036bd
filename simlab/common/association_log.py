"""The log line every DICOM listener writes when it rejects an association.

PACS and viewer reject for the same reasons (PS3.8 9.3.4) and an administrator reads the same
line on both: who called whom, result/source/reason with their meaning, and a hint at the
setting that decided it.
"""

from __future__ import annotations

from typing import Any

from simlab.common.dicom_status import (
    REJECT_RESULT_TEXT,
    REJECT_SOURCE_TEXT,
    RejectSource,
    UserRejectReason,
    reject_reason_text,
)


def rejection_line(assoc: Any, peer: str, own_ae: str, max_associations: int) -> str:
    """'association REJECTED: CT_1 (127.0.0.1:4242) -> PACS_X: result 1 (rejected-permanent),
    source 1 (service-user), reason 7 (called AE title not recognised) (we are SIMLAB_PACS)'."""
    prim = assoc.acceptor.primitive
    result = getattr(prim, "result", None)
    source = getattr(prim, "result_source", None)
    reason = getattr(prim, "diagnostic", None)
    rq = assoc.requestor.primitive
    called = str(getattr(rq, "called_ae_title", "") or "").strip()
    calling = str(getattr(rq, "calling_ae_title", "") or assoc.requestor.ae_title).strip()
    hints = {
        (RejectSource.SERVICE_USER, UserRejectReason.CALLED_AE_NOT_RECOGNISED): (
            f" (we are {own_ae})"
        ),
        (RejectSource.SERVICE_USER, UserRejectReason.CALLING_AE_NOT_RECOGNISED): (
            " (not in the AE table)"
        ),
        (RejectSource.SERVICE_PROVIDER_PRESENTATION, 2): f" (max_associations={max_associations})",
    }
    return (
        f"association REJECTED: {calling} ({peer}) -> {called}: "
        f"result {result} ({REJECT_RESULT_TEXT.get(result, '?')}), "
        f"source {source} ({REJECT_SOURCE_TEXT.get(source, '?')}), "
        f"reason {reason} ({reject_reason_text(source, reason) if source else '?'})"
        f"{hints.get((source, reason), '')}"
    )
