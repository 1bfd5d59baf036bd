"""Association faults: who may talk to whom (PS3.8 9.3.4 A-ASSOCIATE-RJ).

A strict PACS (design.md section 4) checks the called AE title and knows its peers, so a typo on
either side shows as a real rejection: result 1 (permanent), source 1 (service user), reason 7
(called AE not recognised) or 3 (calling AE not recognised); a wrong port shows as a refused TCP
connection.
"""

from __future__ import annotations

from simlab.faults.base import Fault, FaultContext, NodeParams, RevertState, register


class WrongCalledAeParams(NodeParams):
    node: str = "ct-1"
    called_ae: str = "PACS_MAIN"
    """The AE title the modality now calls (a plausible typo or an old PACS's title)."""


@register
class WrongCalledAe(Fault):
    kind = "wrong_called_ae"
    family = "association"
    title = "Modality sends to a wrong Called AE title"
    symptom = (
        "The modality's send queue fails every image with A-ASSOCIATE-RJ result 1 (permanent), "
        "source 1 (service user), reason 7 (called AE title not recognised); the PACS log shows "
        "the rejected association with the wrong called AE."
    )
    root_cause = (
        "The modality's DICOM destination was (re)configured with a called AE title the PACS does "
        "not answer to, e.g. by a field engineer after an upgrade."
    )
    Params = WrongCalledAeParams

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, WrongCalledAeParams)
        inverse = ctx.patch_config(p.node, {"destination": {"ae_title": p.called_ae}})
        return {"inverse": inverse}

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        ctx.restore_config(self.params.node, state["inverse"])  # type: ignore[attr-defined]
