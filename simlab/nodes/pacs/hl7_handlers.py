"""Reading HL7 segments into records, and the handlers that apply each message kind.

It exists so that what a message means is kept apart from how it arrives and how it is
acknowledged: PID/MRG/ORC/OBR are read into `Patient`, `OrderKey` and `OrderData` (names and
codes mapped to DICOM), and each handler applies one message kind (A01/A04, A08, A40, ORM^O01)
to the registry (hl7_store) and the archive's index. A handler returns the ACK text or raises
Hl7Error; it runs inside the transaction the service opened, so it never commits on its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from simlab.common.hl7_messages import (
    ErrorCode,
    ErrorLocation,
    InboundMessage,
    application_error,
)
from simlab.nodes.pacs.hl7_store import _ORDER_FIELDS, Hl7Store, Patient


class PatientIndex(Protocol):
    """What the HL7 service needs from the archive's index (docs/dev/pacs-contracts.md)."""

    def update_patient_demographics(
        self,
        patient_id: str,
        issuer: str | None = None,
        *,
        name: str | None = None,
        birth_date: str | None = None,
        sex: str | None = None,
    ) -> int: ...

    def merge_patient(
        self,
        prior_patient_id: str,
        target_patient_id: str,
        issuer: str | None = None,
        *,
        target_name: str | None = None,
        target_birth_date: str | None = None,
        target_sex: str | None = None,
    ) -> int: ...

    def list_studies(
        self,
        *,
        patient_id: str | None = None,
        accession: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict]: ...


# --------------------------------------------------------------------------------------------
# Reading message content
# --------------------------------------------------------------------------------------------

_HL7_NULL = '""'
"""HL7 2.5 2.5.3: a field sent as two double quotes means 'delete the stored value'."""
_SEX_TO_DICOM = {"M": "M", "F": "F", "O": "O", "A": "O", "N": "O", "U": ""}
"""HL7 table 0001 to DICOM Patient's Sex (0010,0040): M, F, O, or empty for unknown."""


def _nullable(value: str, present: bool) -> str | None:
    if not present:
        return None
    return "" if value == _HL7_NULL else value


def read_patient(msg: InboundMessage, sequence: int = 1) -> Patient:
    """The patient of the n-th PID segment, with names and codes mapped to DICOM.

    Raises:
        Hl7Error: AE 100 when there is no PID, AE 101 when PID-3 holds no identifier.
    """
    pids = msg.segments("PID")
    if len(pids) < sequence:
        raise application_error(
            ErrorCode.SEGMENT_SEQUENCE_ERROR,
            "required segment PID is missing",
            ErrorLocation("PID", sequence),
        )
    pid = pids[sequence - 1]
    patient_id, issuer = _first_identifier(msg, pid, 3)
    if not patient_id:
        raise application_error(
            ErrorCode.REQUIRED_FIELD_MISSING,
            "PID-3 patient identifier list is empty",
            ErrorLocation("PID", sequence, 3),
        )
    name_parts = msg.components(pid, 5)
    birth = msg.value(pid, 7)
    sex = msg.value(pid, 8).upper()
    return Patient(
        patient_id=patient_id,
        issuer=issuer,
        name=_nullable(_dicom_name(name_parts), bool(name_parts)),
        birth_date=_nullable(birth[:8] if birth != _HL7_NULL else birth, bool(birth)),
        sex=_nullable(_SEX_TO_DICOM.get(sex, "O") if sex != _HL7_NULL else sex, bool(sex)),
    )


def _first_identifier(msg: InboundMessage, segment: Any, field_no: int) -> tuple[str, str]:
    """(ID, assigning authority) of the first CX repetition that has an ID."""
    for repetition in range(msg.repetitions(segment, field_no)):
        value = msg.value(segment, field_no, 1, repetition)
        if value:
            return value, msg.value(segment, field_no, 4, repetition)
    return "", ""


def _dicom_name(xpn: list[str]) -> str:
    """HL7 XPN (family^given^middle^suffix^prefix^...) to DICOM PN (family^given^middle^prefix^
    suffix), trailing empty components dropped. The HL7 null '""' passes through."""
    if xpn[:1] == [_HL7_NULL]:
        return _HL7_NULL

    def part(n: int) -> str:
        return xpn[n].split("&")[0] if n < len(xpn) else ""

    return "^".join([part(0), part(1), part(2), part(4), part(3)]).rstrip("^")


@dataclass(frozen=True)
class OrderKey:
    """How an order is found again: accession (+ procedure IDs), or placer/filler number."""

    accession: str
    requested_procedure_id: str = ""
    scheduled_step_id: str = ""
    placer_order: str = ""
    filler_order: str = ""

    def describe(self) -> str:
        if self.accession:
            ids = [i for i in (self.requested_procedure_id, self.scheduled_step_id) if i]
            return f"accession {self.accession}" + (f" ({'/'.join(ids)})" if ids else "")
        return f"placer order {self.placer_order or '-'} / filler order {self.filler_order or '-'}"


@dataclass(frozen=True)
class OrderData:
    """One ORC/OBR pair of an ORM^O01."""

    sequence: int
    control: str
    status_code: str
    key: OrderKey
    has_obr: bool
    requested_procedure_id: str
    scheduled_step_id: str
    placer_order: str
    filler_order: str
    procedure_code: str
    procedure_text: str
    modality: str
    scheduled_at: str


def order_groups(msg: InboundMessage) -> list[tuple[int, Any, Any | None]]:
    """(sequence, ORC, following OBR or None) for every ORC, in message order."""
    groups: list[tuple[int, Any, Any | None]] = []
    for child in msg.message.children:
        if child.name == "ORC":
            groups.append((len(groups) + 1, child, None))
        elif child.name == "OBR" and groups and groups[-1][2] is None:
            sequence, orc, _ = groups[-1]
            groups[-1] = (sequence, orc, child)
    return groups


def read_order(msg: InboundMessage, sequence: int, orc: Any, obr: Any | None) -> OrderData:
    """The fields simlab uses from one ORC/OBR pair (IHE RAD TF-2 4.4 / 4.13)."""
    placer = msg.value(orc, 2) or msg.value(obr, 2)
    filler = msg.value(orc, 3) or msg.value(obr, 3)
    requested = msg.value(obr, 19)
    step = msg.value(obr, 20)
    scheduled = msg.value(obr, 27, 4) or msg.value(orc, 7, 4) or msg.value(msg.segment("TQ1"), 7)
    return OrderData(
        sequence=sequence,
        control=msg.value(orc, 1).upper(),
        status_code=msg.value(orc, 5).upper(),
        key=OrderKey(msg.value(obr, 18), requested, step, placer, filler),
        has_obr=obr is not None,
        requested_procedure_id=requested,
        scheduled_step_id=step,
        placer_order=placer,
        filler_order=filler,
        procedure_code=msg.value(obr, 4, 1),
        procedure_text=msg.value(obr, 4, 2),
        modality=msg.value(obr, 24),
        scheduled_at=scheduled,
    )


_ORDER_STATUS = {
    "SC": "SCHEDULED",
    "IP": "IN_PROGRESS",
    "CM": "COMPLETED",
    "DC": "DISCONTINUED",
    "CA": "CANCELLED",
    "HD": "ON_HOLD",
    "A": "SOME_RESULTS",
    "ER": "ERROR",
    "RP": "REPLACED",
}
"""ORC-5 order status (HL7 table 0038) to the status the PACS shows."""


# --------------------------------------------------------------------------------------------
# Handlers: one per message kind; each returns the ACK text or raises Hl7Error
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HandlerContext:
    """What a handler may touch: the HL7 store (inside the open transaction) and the index."""

    store: Hl7Store
    index: PatientIndex
    logger: logging.Logger


ANY_ISSUER = None
"""Issuer the HL7 service passes to the index: None, i.e. match the patient ID under any issuer.

The lab has one patient-ID domain, and images often lack Issuer of Patient ID (0010,0021) while
the RIS sends an assigning authority in PID-3.4; matching by ID alone is what lets an A08/A40
reach the studies. (The HL7 registration keeps the issuer.)"""


def _known_to_index(ctx: HandlerContext, patient_id: str) -> bool:
    return bool(ctx.index.list_studies(patient_id=patient_id, limit=1))


def handle_adt_a01(msg: InboundMessage, ctx: HandlerContext) -> str:
    """RAD-1 (A01 admit, A04 register): register the patient or refresh its registration.

    Only the registration changes: studies already stored are updated by A08 (RAD-12), which is
    the transaction meant for it.
    """
    patient = read_patient(msg)
    created = ctx.store.save_patient(patient, msg.header.type_label, msg.header.control_id)
    verb = "registered" if created else "already registered, registration refreshed"
    return f"patient {patient.patient_id} {verb}"


def handle_adt_a08(msg: InboundMessage, ctx: HandlerContext) -> str:
    """RAD-12 update: change the registration and the demographics of every stored study.

    An A08 for a patient the PACS has neither registered nor stored images of is answered AE 204
    (unknown key identifier) instead of silently creating the patient: in a department the usual
    cause is that the A01 never arrived (rejected, lost in a stuck queue), and the AE makes the
    RIS show that at once instead of leaving two systems that disagree.
    """
    patient = read_patient(msg)
    registered = ctx.store.patient(patient.patient_id, patient.issuer) is not None
    updated = ctx.index.update_patient_demographics(
        patient.patient_id,
        ANY_ISSUER,
        name=patient.name,
        birth_date=patient.birth_date,
        sex=patient.sex,
    )
    if not registered and updated == 0:
        raise application_error(
            ErrorCode.UNKNOWN_KEY_IDENTIFIER,
            f"PID-3 patient '{patient.patient_id}' is unknown (never registered, no studies)",
            ErrorLocation("PID", 1, 3),
        )
    ctx.store.save_patient(patient, "ADT^A08", msg.header.control_id)
    return f"patient {patient.patient_id} updated; {updated} stored stud{_ies(updated)} updated"


def handle_adt_a40(msg: InboundMessage, ctx: HandlerContext) -> str:
    """RAD-12 merge: every PID/MRG pair moves the prior patient's studies and orders to the
    surviving patient (PID-3). A prior ID the PACS knows nothing of is AE 204."""
    mrgs = msg.segments("MRG")
    if not mrgs:
        raise application_error(
            ErrorCode.SEGMENT_SEQUENCE_ERROR,
            "required segment MRG is missing",
            ErrorLocation("MRG"),
        )
    results = [_merge_one(msg, ctx, n, mrg) for n, mrg in enumerate(mrgs, start=1)]
    return "; ".join(results)


def _merge_one(msg: InboundMessage, ctx: HandlerContext, sequence: int, mrg: Any) -> str:
    target = read_patient(msg, sequence)
    prior_id = msg.value(mrg, 1, 1)
    prior_issuer = msg.value(mrg, 1, 4) or target.issuer
    where = ErrorLocation("MRG", sequence, 1)
    if not prior_id:
        raise application_error(
            ErrorCode.REQUIRED_FIELD_MISSING, "MRG-1 prior patient ID is empty", where
        )
    if (prior_id, prior_issuer) == (target.patient_id, target.issuer):
        raise application_error(
            ErrorCode.DUPLICATE_KEY_IDENTIFIER,
            f"MRG-1 prior patient '{prior_id}' is the surviving patient PID-3 itself",
            where,
        )
    prior = ctx.store.patient(prior_id, prior_issuer)
    known = prior is not None and prior["status"] == "active"
    if not known and not _known_to_index(ctx, prior_id):
        raise application_error(
            ErrorCode.UNKNOWN_KEY_IDENTIFIER,
            f"MRG-1 prior patient '{prior_id}' is unknown (never registered, no studies)",
            where,
        )
    moved = ctx.index.merge_patient(
        prior_id,
        target.patient_id,
        ANY_ISSUER,
        target_name=target.name,
        target_birth_date=target.birth_date,
        target_sex=target.sex,
    )
    ctx.store.save_patient(target, "ADT^A40", msg.header.control_id)
    orders = ctx.store.mark_merged(prior_id, prior_issuer, target.patient_id, msg.header.control_id)
    return (
        f"patient {prior_id} merged into {target.patient_id}:"
        f" {moved} stud{_ies(moved)} and {orders} order(s) moved"
    )


def handle_orm_o01(msg: InboundMessage, ctx: HandlerContext) -> str:
    """RAD-4/RAD-13: new (NW), changed (XO), cancelled (CA) or status-changed (SC) orders.

    An order's patient is registered from the ORM's PID when the PACS has not seen it yet (a
    RIS may schedule before the ADT arrives); an accession already used for another patient is
    AE 205, an XO/CA/SC for an unknown order AE 204.
    """
    patient = read_patient(msg)
    groups = order_groups(msg)
    if not groups:
        raise application_error(
            ErrorCode.SEGMENT_SEQUENCE_ERROR,
            "required segment ORC is missing",
            ErrorLocation("ORC"),
        )
    if ctx.store.patient(patient.patient_id, patient.issuer) is None:
        ctx.store.save_patient(patient, "ORM^O01", msg.header.control_id)
    results = [
        _apply_order(msg, ctx, patient, read_order(msg, seq, orc, obr)) for seq, orc, obr in groups
    ]
    return "; ".join(results)


def _apply_order(
    msg: InboundMessage, ctx: HandlerContext, patient: Patient, order: OrderData
) -> str:
    control_id = msg.header.control_id
    if not order.control:
        raise application_error(
            ErrorCode.REQUIRED_FIELD_MISSING,
            "ORC-1 order control is empty",
            ErrorLocation("ORC", order.sequence, 1),
        )
    if order.control == "NW":
        return _new_order(ctx, patient, order, control_id)
    if order.control not in ("XO", "CA", "SC"):
        raise application_error(
            ErrorCode.TABLE_VALUE_NOT_FOUND,
            f"ORC-1 order control '{order.control}' is not supported (NW, XO, CA, SC)",
            ErrorLocation("ORC", order.sequence, 1),
        )
    rows = _existing_orders(ctx, order)
    changes = _order_changes(order, patient)
    for row in rows:
        ctx.store.update_order(row["id"], changes, order.control, control_id)
    verb = {"XO": "changed", "CA": "cancelled", "SC": f"status {changes.get('status', '')}"}
    return f"order {order.key.describe()} {verb[order.control]}"


def _new_order(ctx: HandlerContext, patient: Patient, order: OrderData, control_id: str) -> str:
    if not order.has_obr:
        raise application_error(
            ErrorCode.SEGMENT_SEQUENCE_ERROR,
            "required segment OBR is missing after ORC",
            ErrorLocation("OBR", order.sequence),
        )
    if not order.key.accession:
        raise application_error(
            ErrorCode.REQUIRED_FIELD_MISSING,
            "OBR-18 accession number is empty",
            ErrorLocation("OBR", order.sequence, 18),
        )
    rows = ctx.store.find_orders(order.key)
    for row in rows:
        if row["patient_id"] != patient.patient_id:
            raise application_error(
                ErrorCode.DUPLICATE_KEY_IDENTIFIER,
                f"OBR-18 accession {order.key.accession} already belongs to patient"
                f" {row['patient_id']}",
                ErrorLocation("OBR", order.sequence, 18),
            )
    exact = [
        row
        for row in rows
        if (row["requested_procedure_id"], row["scheduled_step_id"])
        == (order.requested_procedure_id, order.scheduled_step_id)
    ]
    if exact:
        changes = {**_order_changes(order, patient), "status": "SCHEDULED"}
        ctx.store.update_order(exact[0]["id"], changes, "NW", control_id)
        return f"order {order.key.describe()} already known, scheduled again"
    ctx.store.insert_order(order, patient, control_id)
    return f"order {order.key.describe()} scheduled ({order.modality or 'no modality'})"


def _existing_orders(ctx: HandlerContext, order: OrderData) -> list[dict[str, Any]]:
    key = order.key
    if not (key.accession or key.placer_order or key.filler_order):
        raise application_error(
            ErrorCode.REQUIRED_FIELD_MISSING,
            "OBR-18 accession number (or ORC-2/ORC-3 order number) is empty",
            ErrorLocation("OBR", order.sequence, 18),
        )
    rows = ctx.store.find_orders(key)
    if not rows:
        raise application_error(
            ErrorCode.UNKNOWN_KEY_IDENTIFIER,
            f"ORC-1 {order.control} for an unknown order: {key.describe()}",
            ErrorLocation("OBR", order.sequence, 18)
            if key.accession
            else ErrorLocation("ORC", order.sequence, 2),
        )
    return rows


def _order_changes(order: OrderData, patient: Patient) -> dict[str, str]:
    """Columns an XO/CA/SC (or a repeated NW) sets; fields the message left empty are kept."""
    changes = {name: getattr(order, name) for name in _ORDER_FIELDS if getattr(order, name)}
    if patient.name:
        changes["patient_name"] = patient.name
    if order.control == "CA":
        changes["status"] = "CANCELLED"
    elif order.control == "SC":
        changes["status"] = _status_from(order)
    return changes


def _status_from(order: OrderData) -> str:
    where = ErrorLocation("ORC", order.sequence, 5)
    if not order.status_code:
        raise application_error(
            ErrorCode.REQUIRED_FIELD_MISSING, "ORC-5 order status is empty for SC", where
        )
    status = _ORDER_STATUS.get(order.status_code)
    if status is None:
        raise application_error(
            ErrorCode.TABLE_VALUE_NOT_FOUND,
            f"ORC-5 order status '{order.status_code}' is not in HL7 table 0038",
            where,
        )
    return status


def _ies(count: int) -> str:
    return "y" if count == 1 else "ies"
