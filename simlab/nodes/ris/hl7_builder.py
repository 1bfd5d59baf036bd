"""The HL7 v2.5.1 messages the RIS sends: ADT^A04/A08/A40 (RAD-1, RAD-12) and ORM^O01
NW/CA/SC (RAD-4, RAD-13), field by field as IHE RAD TF-2 and the PACS's reader expect them.

Messages are built as text, UTF-8 (MSH-18 ``UNICODE UTF-8``), with every value escaped by
`simlab.common.hl7_messages.escape`; the control ID (MSH-10) comes from the caller, who numbers it
in the database so it is never reused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simlab.common.hl7_messages import escape, hl7_timestamp

CHARSET = "UNICODE UTF-8"
VERSION = "2.5.1"


@dataclass(frozen=True)
class Addressing:
    """MSH-3..6: who sends, who receives."""

    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str


def _seg(name: str, fields: dict[int, str]) -> str:
    """A segment with fields placed by number (values already escaped)."""
    last = max(fields) if fields else 0
    return "|".join([name, *(fields.get(n, "") for n in range(1, last + 1))])


def _msh(to: Addressing, kind: str, control_id: str) -> str:
    return (
        f"MSH|^~\\&|{escape(to.sending_application)}|{escape(to.sending_facility)}"
        f"|{escape(to.receiving_application)}|{escape(to.receiving_facility)}"
        f"|{hl7_timestamp()}||{kind}|{escape(control_id)}|P|{VERSION}|||AL|NE||{CHARSET}"
    )


def _pid(patient: dict[str, Any]) -> str:
    issuer = escape(patient.get("issuer") or "")
    return _seg(
        "PID",
        {
            1: "1",
            3: f"{escape(patient['patient_id'])}^^^{issuer}^MR",
            5: _name(patient.get("name") or ""),
            7: escape(patient.get("birth_date") or ""),
            8: escape(patient.get("sex") or ""),
        },
    )


def _name(dicom_pn: str) -> str:
    """A DICOM PN (Family^Given^Middle^Prefix^Suffix) as an HL7 XPN (same component order)."""
    return "^".join(escape(part) for part in dicom_pn.split("=")[0].split("^"))


def _pv1(order: dict[str, Any] | None = None) -> str:
    fields = {1: "1", 2: "O"}
    if order and order.get("referring_physician"):
        fields[8] = "^" + _name(order["referring_physician"])
    return _seg("PV1", fields)


def build_adt(
    to: Addressing, control_id: str, event: str, patient: dict[str, Any], prior_id: str = ""
) -> str:
    """ADT^A04 (register), ADT^A08 (update) or ADT^A40 (merge prior_id into patient)."""
    structure = "ADT_A39" if event == "A40" else "ADT_A01"
    segments = [
        _msh(to, f"ADT^{event}^{structure}", control_id),
        _seg("EVN", {1: event, 2: hl7_timestamp()}),
        _pid(patient),
    ]
    if event == "A40":
        segments.append(
            _seg("MRG", {1: f"{escape(prior_id)}^^^{escape(patient.get('issuer') or '')}^MR"})
        )
    else:
        segments.append(_pv1())
    return "\r".join(segments) + "\r"


ORDER_STATUS_CODES = {
    "SCHEDULED": "SC",
    "IN_PROGRESS": "IP",
    "COMPLETED": "CM",
    "DISCONTINUED": "DC",
    "CANCELLED": "CA",
}
"""Order status to ORC-5 (HL7 table 0038)."""


def build_orm(to: Addressing, control_id: str, control: str, order: dict[str, Any]) -> str:
    """ORM^O01 for one order: ORC-1 NW (new), CA (cancel) or SC (status changed)."""
    patient = {
        "patient_id": order["patient_id"],
        "issuer": order.get("patient_issuer") or "",
        "name": order.get("patient_name") or "",
        "birth_date": order.get("patient_birth_date") or "",
        "sex": order.get("patient_sex") or "",
    }
    accession = escape(order["accession"])
    placer = escape(order.get("placer_order") or order["accession"])
    status = ORDER_STATUS_CODES.get(order["status"], "SC")
    start = (order.get("start_date") or "") + (order.get("start_time") or "")
    procedure = "^".join(
        escape(order.get(k) or "")
        for k in ("procedure_code", "procedure_meaning", "procedure_scheme")
    )
    orc = _seg(
        "ORC",
        {1: control, 2: placer, 3: accession, 5: status, 7: f"^^^{escape(start)}" if start else ""},
    )
    obr_fields = {
        1: "1",
        2: placer,
        3: accession,
        4: procedure,
        18: accession,
        19: escape(order["requested_procedure_id"]),
        20: escape(order["sps_id"]),
        21: escape(order.get("station_ae") or ""),
        24: escape(order.get("modality") or ""),
        27: f"^^^{escape(start)}" if start else "",
    }
    if order.get("referring_physician"):
        obr_fields[16] = "^" + _name(order["referring_physician"])
    segments = [
        _msh(to, "ORM^O01^ORM_O01", control_id),
        _pid(patient),
        _pv1(order),
        orc,
        _seg("OBR", obr_fields),
        # IHE RAD TF-2 4.4.4.1.2.2: ZDS-1 carries the Study Instance UID the RIS assigned.
        _seg("ZDS", {1: f"{escape(order['study_uid'])}^SIMLAB^Application^DICOM"}),
    ]
    return "\r".join(segments) + "\r"
