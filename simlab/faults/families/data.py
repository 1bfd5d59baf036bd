"""Data faults: the images arrive, but what they say about the patient and the study is wrong.

Nothing is refused: every C-STORE answers 0x0000 Success, so the modality's send queue is green.
The damage shows at the PACS, where the study does not reconcile with the RIS order: a study
under a wrong or empty Patient ID (a split patient record), a study with a wrong or no Accession
Number (the radiologist cannot find it from the worklist or the order), one Study Instance UID
holding two patients (a mixed record: the PACS keeps the study under its first patient, logs a
DATA CONFLICT and flags it ``mixed_patients``), or names garbled by a wrong Specific Character
Set (MÃ¼ller, and name matching breaks).

Each fault sets what the real misconfiguration would: the modality's service settings
``acquisition.tag_overrides`` (a field engineer's template that writes a fixed value) or
``acquisition.character_set_mode`` (PS3.5 6.1: the declared character set and the bytes
disagree). Reverting restores the setting; images already sent stay wrong, as in a hospital:
the administrator fixes them with the PACS study edit (``PATCH /studies/{uid}``) or split
(``POST /studies/{uid}/split``).
"""

from __future__ import annotations

from typing import Any

from simlab.common.modality_config import CharacterSetMode
from simlab.faults.base import Fault, FaultContext, NodeParams, RevertState, register


def _override(ctx: FaultContext, node: str, keyword: str, value: str) -> RevertState:
    inverse = ctx.patch_config(node, {"acquisition": {"tag_overrides": {keyword: value}}})
    return {"inverse": inverse}


class _ModalitySettingFault(Fault):
    """A fault that is one change of the modality's acquisition settings."""

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        ctx.restore_config(self.params.node, state["inverse"])  # type: ignore[attr-defined]


class PatientIdCorruptedParams(NodeParams):
    node: str = "ct-1"
    patient_id: str = ""
    """The Patient ID the modality writes into every image ('' writes it empty: a Type 2
    attribute present with no value, as a console that lost its worklist mapping does)."""


@register
class PatientIdCorrupted(_ModalitySettingFault):
    kind = "patient_id_corrupted"
    family = "data"
    title = "Modality writes a wrong or empty Patient ID"
    symptom = (
        "The modality sends every image successfully (0x0000), but at the PACS the study sits "
        "under a wrong or empty Patient ID: it does not reconcile with the RIS order, the "
        "patient's record is split and the study is missing from the patient's history."
    )
    root_cause = (
        "A service setting of the modality (a tag template after an upgrade) overrides Patient "
        "ID (0010,0020) in every image instead of copying it from the worklist."
    )
    Params = PatientIdCorruptedParams

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, PatientIdCorruptedParams)
        return _override(ctx, p.node, "PatientID", p.patient_id)


class AccessionCorruptedParams(NodeParams):
    node: str = "ct-1"
    accession_number: str = ""
    """The Accession Number the modality writes into every image ('' writes it empty)."""


@register
class AccessionCorrupted(_ModalitySettingFault):
    kind = "accession_corrupted"
    family = "data"
    title = "Modality writes a wrong or empty Accession Number"
    symptom = (
        "The images are stored (0x0000), but the PACS study carries a wrong or no Accession "
        "Number: it matches no order, the RIS order stays unread, and the radiologist cannot "
        "open the study from the order (a search by accession finds nothing)."
    )
    root_cause = (
        "A service setting of the modality overrides Accession Number (0008,0050) in every "
        "image instead of copying it from the worklist item."
    )
    Params = AccessionCorruptedParams

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, AccessionCorruptedParams)
        return _override(ctx, p.node, "AccessionNumber", p.accession_number)


class StudyUidReusedParams(NodeParams):
    node: str = "ct-1"
    study_instance_uid: str | None = None
    """The Study Instance UID written into every image; None: one the fault makes up (seeded),
    so every patient scanned while the fault is active lands in the same study."""


@register
class StudyUidReused(_ModalitySettingFault):
    kind = "study_uid_reused"
    family = "data"
    title = "Modality reuses one Study Instance UID for different patients"
    symptom = (
        "Every image is stored (0x0000), but the second patient's images join the first "
        "patient's study: the PACS keeps the study under the first patient, logs 'DATA "
        "CONFLICT: study ... belongs to patient ...' and its study view shows "
        "mixed_patients true with two Patient IDs in the files; the second patient has no study."
    )
    root_cause = (
        "The modality's Study Instance UID (0020,000D) comes from a fixed template (a cloned "
        "configuration, a UID counter that restarts) instead of the worklist item, so unrelated "
        "patients share one study."
    )
    Params = StudyUidReusedParams

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, StudyUidReusedParams)
        uid = p.study_instance_uid or f"2.25.{ctx.rng.getrandbits(127)}"  # PS3.5 B.2
        state = _override(ctx, p.node, "StudyInstanceUID", uid)
        return {**state, "study_instance_uid": uid}


class WrongCharacterSetParams(NodeParams):
    node: str = "ct-1"
    mode: CharacterSetMode = "utf8_as_latin1"
    """The modality's character set mode: 'utf8_as_latin1' (declares ISO_IR 100, writes UTF-8:
    MÃ¼ller), 'latin1_as_utf8' (declares ISO_IR 192, writes Latin-1: M�ller) or
    'latin1_undeclared' (no Specific Character Set, Latin-1 bytes)."""


@register
class WrongCharacterSet(_ModalitySettingFault):
    kind = "wrong_character_set"
    family = "data"
    title = "Modality declares one character set and writes another"
    symptom = (
        "Images are stored (0x0000), but names with accents arrive garbled at the PACS "
        "('Müller^Anna' shows as 'MÃ¼ller^Anna'): the study does not match the patient "
        "by name, and a search for the right name finds nothing."
    )
    root_cause = (
        "The modality's Specific Character Set (0008,0005) does not describe the bytes it "
        "writes (PS3.5 6.1): it declares ISO_IR 100 (Latin-1) but encodes UTF-8, after a "
        "console language/locale change."
    )
    Params = WrongCharacterSetParams

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, WrongCharacterSetParams)
        patch: dict[str, Any] = {"acquisition": {"character_set_mode": p.mode}}
        return {"inverse": ctx.patch_config(p.node, patch)}
