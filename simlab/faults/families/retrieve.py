"""Retrieve faults: the study is in the PACS, but it does not reach the reading workstation.

A C-MOVE names its destination by AE title only; the PACS looks the title up in its own AE table
for the host and port to open a new association to (PS3.4 C.4.2). So a destination missing from
that table is refused at once with 0xA801 (Refused: Move Destination unknown), and a row with a
wrong port makes every C-STORE sub-operation fail: the PACS cannot reach the destination and
answers 0xA702 (Refused: Out of resources, unable to perform sub-operations) with every instance
in the Failed SOP Instance UID List (0xB000 when only some fail). On the viewer's side, a wrong
called AE title for the PACS is rejected before any query: A-ASSOCIATE-RJ 1/1/7.
"""

from __future__ import annotations

from simlab.common.viewer_config import VIEWER_AE_TITLE
from simlab.faults.base import Fault, FaultContext, FaultError, NodeParams, RevertState, register
from simlab.runtime.ports import free_ports


class _AeRowParams(NodeParams):
    node: str = "pacs"
    destination_ae: str = VIEWER_AE_TITLE
    """The move destination whose AE-table row the fault changes (the viewer by default)."""


def _row(ctx: FaultContext, node: str, ae_title: str) -> dict:
    row = ctx.ae_entry(node, ae_title)
    if row is None:
        raise FaultError(f"{node}: {ae_title} is not in the AE table; nothing to break")
    return row


@register
class MoveDestinationUnknown(Fault):
    kind = "move_destination_unknown"
    family = "retrieve"
    title = "The viewer's AE title is missing from the PACS AE table"
    symptom = (
        "A C-MOVE to the viewer (`movescu -aem SIMLAB_VIEWER` from ADMIN_WS) fails at once "
        "with status 0xA801 (Refused: Move Destination unknown). The strict PACS no longer "
        "knows the viewer as a caller either, so the radiologist's own open is rejected "
        "A-ASSOCIATE-RJ 1/1/3 before any C-FIND; the PACS log names both."
    )
    root_cause = (
        "The reading workstation's row was deleted from the PACS AE table (a clean-up of "
        "'unused' AEs, a workstation renamed), so the PACS does not know where to send."
    )
    Params = _AeRowParams

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, _AeRowParams)
        row = _row(ctx, p.node, p.destination_ae)
        ctx.delete_ae(p.node, p.destination_ae)
        return {"row": row}

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        ctx.put_ae(self.params.node, state["row"])  # type: ignore[attr-defined]


class WrongPortParams(_AeRowParams):
    port: int | None = None
    """The wrong port written into the row; None: a free port, where nothing listens."""


@register
class MoveDestinationWrongPort(Fault):
    kind = "move_destination_wrong_port"
    family = "retrieve"
    title = "The viewer's row in the PACS AE table has a wrong port"
    symptom = (
        "C-FIND works and the C-MOVE is accepted, but no image arrives: the PACS cannot open "
        "the association to the destination (no TCP connection) and ends the C-MOVE with "
        "0xA702 (unable to perform sub-operations), every instance counted failed (0xB000 "
        "when some got through)."
    )
    root_cause = (
        "The destination's port in the PACS AE table is wrong (a typo, or the workstation's "
        "listener moved), so the PACS sends the images where nothing listens."
    )
    Params = WrongPortParams

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, WrongPortParams)
        row = _row(ctx, p.node, p.destination_ae)
        wrong = p.port if p.port is not None else free_ports(1, avoid=[int(row["port"])])[0]
        ctx.put_ae(p.node, {**row, "port": wrong})
        return {"row": row}

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        ctx.put_ae(self.params.node, state["row"])  # type: ignore[attr-defined]


class ViewerWrongPacsAeParams(NodeParams):
    node: str = "viewer"
    called_ae: str = "PACS"
    """The called AE title the viewer now uses for the PACS (a plausible wrong title)."""


@register
class ViewerWrongPacsAe(Fault):
    kind = "viewer_wrong_pacs_ae"
    family = "retrieve"
    title = "The viewer calls the PACS by a wrong AE title"
    symptom = (
        "Every study open fails before any query: the PACS rejects the viewer's association "
        "with A-ASSOCIATE-RJ result 1 (permanent), source 1, reason 7 (called AE title not "
        "recognised); the viewer's open result shows 1/1/7."
    )
    root_cause = (
        "The viewer's Q/R provider (retrieve.provider.ae_title) names a called AE title the "
        "PACS does not answer to, e.g. after a PACS migration."
    )
    Params = ViewerWrongPacsAeParams

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, ViewerWrongPacsAeParams)
        patch = {"retrieve": {"provider": {"ae_title": p.called_ae}}}
        return {"inverse": ctx.patch_config(p.node, patch)}

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        ctx.restore_config(self.params.node, state["inverse"])  # type: ignore[attr-defined]
