"""Negotiation faults: the association comes up, the presentation contexts do not (PS3.8 9.3.3.2).

Each presentation context an SCU proposes (one SOP class, its transfer syntaxes) gets a result in
the A-ASSOCIATE-AC: 0 acceptance, 3 abstract syntax not supported, 4 transfer syntaxes not
supported. When none is accepted nothing can be sent: the modality's send queue fails the images
with 'no presentation context accepted for <SOP class> (<why>)' and the PACS log lists the
rejected contexts with their result. The PACS's accepted_sop_classes, rejected_sop_classes and
accepted_transfer_syntaxes decide the answers; these faults change them (or what a modality
proposes) through the admin API, as a colleague or a vendor upgrade would.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator
from pydicom.uid import UID_dictionary
from pynetdicom import sop_class as pynetdicom_sop_class

from simlab.common.modality_config import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    RLE_LOSSLESS,
    SENDABLE_TRANSFER_SYNTAXES,
)
from simlab.faults.base import (
    Fault,
    FaultContext,
    FaultError,
    NodeParams,
    RevertState,
    register,
)

_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def _known_sop_class(value: str) -> str:
    """A SOP class UID or a keyword the PACS resolves (pynetdicom's or pydicom's names)."""
    value = value.strip()
    if _UID_RE.match(value) or isinstance(getattr(pynetdicom_sop_class, value, None), str):
        return value
    if any(len(info) > 4 and info[4] == value for info in UID_dictionary.values()):
        return value
    raise ValueError(f"{value!r} is neither a UID nor a known SOP class keyword")


class SopClassNotAcceptedParams(NodeParams):
    node: str = "pacs"
    sop_class: str = "CTImageStorage"
    """The Storage SOP class the PACS stops accepting (UID or keyword, e.g.
    EnhancedCTImageStorage, BreastTomosynthesisImageStorage)."""

    _check = field_validator("sop_class")(lambda cls, v: _known_sop_class(v))


@register
class SopClassNotAccepted(Fault):
    kind = "sop_class_not_accepted"
    family = "negotiation"
    title = "PACS does not accept a Storage SOP class"
    symptom = (
        "The association is accepted but its presentation context for the SOP class gets result "
        "3 (abstract syntax not supported): the modality's queue fails the images with 'no "
        "presentation context accepted for CT Image Storage (abstract syntax not supported)'; "
        "C-ECHO works, so the link looks fine."
    )
    root_cause = (
        "The SOP class is in the PACS's rejected_sop_classes (or missing from "
        "accepted_sop_classes), e.g. after an upgrade that reset the storage SCP's SOP class list "
        "or a new modality sending an object type the archive was never configured for."
    )
    Params = SopClassNotAcceptedParams

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, SopClassNotAcceptedParams)
        rejected = list(ctx.config(p.node)["rejected_sop_classes"])
        if p.sop_class in rejected:
            raise FaultError(f"{p.node} already rejects {p.sop_class}")
        ctx.client(p.node).patch("/config", {"rejected_sop_classes": [*rejected, p.sop_class]})
        return {"sop_class": p.sop_class}

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        node = self.params.node  # type: ignore[attr-defined]
        rejected = ctx.config(node)["rejected_sop_classes"]
        if state["sop_class"] in rejected:
            kept = [s for s in rejected if s != state["sop_class"]]
            ctx.client(node).patch("/config", {"rejected_sop_classes": kept})


class TransferSyntaxNotAcceptedParams(NodeParams):
    node: str = "pacs"
    refused: list[str] = Field(default_factory=lambda: [EXPLICIT_VR_LITTLE_ENDIAN], min_length=1)
    """Transfer syntax UIDs removed from the PACS's accepted list (default: Explicit VR Little
    Endian, what the default modalities send)."""


@register
class TransferSyntaxNotAccepted(Fault):
    kind = "transfer_syntax_not_accepted"
    family = "negotiation"
    title = "PACS no longer accepts the transfer syntax modalities send"
    symptom = (
        "The presentation contexts for the modality's images get result 4 (transfer syntaxes not "
        "supported): its queue fails them with 'no presentation context accepted for CT Image "
        "Storage (transfer syntaxes not supported)'; the PACS log lists the context rejected "
        "with result 4. C-ECHO still works."
    )
    root_cause = (
        "The transfer syntax was removed from the PACS's accepted_transfer_syntaxes (e.g. a "
        "'compressed only' storage policy), and the modality proposes nothing else."
    )
    Params = TransferSyntaxNotAcceptedParams

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, TransferSyntaxNotAcceptedParams)
        before = list(ctx.config(p.node)["accepted_transfer_syntaxes"])
        after = [ts for ts in before if ts not in p.refused]
        if after == before:
            raise FaultError(f"{p.node} accepts none of {', '.join(p.refused)} already")
        if not after:
            raise FaultError(f"{p.node} would accept no transfer syntax at all")
        ctx.client(p.node).patch("/config", {"accepted_transfer_syntaxes": after})
        return {"before": before, "after": after}

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        node = self.params.node  # type: ignore[attr-defined]
        now = ctx.config(node)["accepted_transfer_syntaxes"]
        if now == state["after"]:
            restored = state["before"]
        else:  # the trainee changed the list: only add back what we removed and is missing
            restored = now + [ts for ts in state["before"] if ts not in state["after"] + now]
        if restored != now:
            ctx.client(node).patch("/config", {"accepted_transfer_syntaxes": restored})


class ModalityProposesUnacceptedTsParams(NodeParams):
    node: str = "ct-1"
    transfer_syntax: str = RLE_LOSSLESS
    """What the modality now encodes and proposes (one it can encode: RLE Lossless by default)."""
    pacs: str = "pacs"
    """The PACS the modality sends to; it is made to refuse the syntax if it accepts it."""

    @field_validator("transfer_syntax")
    @classmethod
    def _sendable(cls, value: str) -> str:
        if value not in SENDABLE_TRANSFER_SYNTAXES:
            raise ValueError(
                f"the modality can encode only {', '.join(SENDABLE_TRANSFER_SYNTAXES)}"
            )
        return value


@register
class ModalityProposesUnacceptedTs(Fault):
    """The modality's side of a transfer syntax mismatch.

    The fake modalities encode Explicit/Implicit VR LE and RLE Lossless, not JPEG 2000; so the
    real version of 'the modality now sends compressed' here is RLE Lossless to a PACS that was
    never configured to accept RLE (the fault removes RLE from the PACS's list if it is there:
    that is this site's archive configuration, part of the situation).
    """

    kind = "modality_proposes_unaccepted_ts"
    family = "negotiation"
    title = "Modality switched to a compressed transfer syntax the PACS does not accept"
    symptom = (
        "Only this modality fails: its queue shows 'no presentation context accepted for CT "
        "Image Storage (transfer syntaxes not supported)' (presentation context result 4), "
        "while other modalities store fine and C-ECHO works."
    )
    root_cause = (
        "A service engineer enabled lossless compression (RLE Lossless) on the modality; it "
        "proposes only that transfer syntax and the PACS's accepted_transfer_syntaxes lack it."
    )
    Params = ModalityProposesUnacceptedTsParams

    def nodes(self) -> list[str]:
        p = self.params
        assert isinstance(p, ModalityProposesUnacceptedTsParams)
        return [p.node, p.pacs]

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, ModalityProposesUnacceptedTsParams)
        old_ts = ctx.config(p.node)["acquisition"]["transfer_syntax"]
        if old_ts == p.transfer_syntax:
            raise FaultError(f"{p.node} already sends {p.transfer_syntax}")
        accepted = list(ctx.config(p.pacs)["accepted_transfer_syntaxes"])
        removed_at = accepted.index(p.transfer_syntax) if p.transfer_syntax in accepted else None
        if removed_at is not None:
            remaining = [ts for ts in accepted if ts != p.transfer_syntax]
            ctx.client(p.pacs).patch("/config", {"accepted_transfer_syntaxes": remaining})
        ctx.client(p.node).patch("/config", {"acquisition": {"transfer_syntax": p.transfer_syntax}})
        return {"old_ts": old_ts, "pacs_removed_at": removed_at}

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        p = self.params
        assert isinstance(p, ModalityProposesUnacceptedTsParams)
        if ctx.config(p.node)["acquisition"]["transfer_syntax"] == p.transfer_syntax:
            ctx.client(p.node).patch(
                "/config", {"acquisition": {"transfer_syntax": state["old_ts"]}}
            )
        at = state["pacs_removed_at"]
        accepted = list(ctx.config(p.pacs)["accepted_transfer_syntaxes"])
        if at is not None and p.transfer_syntax not in accepted:
            accepted.insert(min(at, len(accepted)), p.transfer_syntax)
            ctx.client(p.pacs).patch("/config", {"accepted_transfer_syntaxes": accepted})
