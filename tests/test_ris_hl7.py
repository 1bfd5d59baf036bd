"""The RIS's inbound HL7 (ADT and ORM from a HIS over MLLP) and garbage on its ports.

Messages are sent with simlab.common.mllp's client and answered with the ACKs of
simlab.common.hl7_messages; the records they create are read back through the admin API.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from simlab.common.hl7_messages import read_ack
from simlab.common.mllp import frame, send_message
from tests.ris_fixtures import RIS_APP, RIS_FACILITY, RunningRis, start_ris


@pytest.fixture(scope="module")
def ris(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRis]:
    node = start_ris(tmp_path_factory.mktemp("ris-hl7"))
    try:
        yield node
    finally:
        node.stop()


def msh(kind: str, ctrl: str, app: str = RIS_APP) -> str:
    return (
        f"MSH|^~\\&|HIS|HOSPITAL|{app}|{RIS_FACILITY}|{time.strftime('%Y%m%d%H%M%S')}||{kind}"
        f"|{ctrl}|P|2.5.1|||AL|NE||UNICODE UTF-8"
    )


def send(ris: RunningRis, *segments: str) -> tuple[str, object]:
    ctrl = "H" + uuid.uuid4().hex[:12].upper()
    text = "\r".join(segments).replace("{CTRL}", ctrl) + "\r"
    ack = read_ack(send_message("127.0.0.1", ris.hl7_port, text.encode("utf-8"), timeout=10))
    assert ack.control_id == ctrl
    return ctrl, ack


def seg(name: str, fields: dict[int, str]) -> str:
    """A segment with fields placed by number (so OBR-24 really is field 24)."""
    return name + "|" + "|".join(fields.get(n, "") for n in range(1, max(fields) + 1))


def pid(patient_id: str, name: str) -> str:
    return f"PID|1||{patient_id}^^^HOSP^MR||{name}||19750203|M"


def test_adt_register_update_merge(ris: RunningRis):
    _, ack = send(
        ris, msh("ADT^A04^ADT_A01", "{CTRL}"), "EVN|A04", pid("H100", "Lefèvre^Zoé"), "PV1|1|O"
    )
    assert ack.ack_code == "AA", ack
    patient = ris.admin.get("/patients/H100")
    assert patient["name"] == "Lefèvre^Zoé" and patient["issuer"] == "HOSP"
    _, ack = send(
        ris, msh("ADT^A08^ADT_A01", "{CTRL}"), "EVN|A08", pid("H100", "Lefèvre^Zoë"), "PV1|1|O"
    )
    assert ack.ack_code == "AA", ack
    assert ris.admin.get("/patients/H100")["name"] == "Lefèvre^Zoë"
    _, ack = send(
        ris, msh("ADT^A01^ADT_A01", "{CTRL}"), "EVN|A01", pid("H101", "Doe^Jane"), "PV1|1|I"
    )
    assert ack.ack_code == "AA", ack
    _, ack = send(
        ris,
        msh("ADT^A40^ADT_A39", "{CTRL}"),
        "EVN|A40",
        pid("H100", "Lefèvre^Zoë"),
        "MRG|H101^^^HOSP^MR",
    )
    assert ack.ack_code == "AA", ack
    assert ris.admin.get("/patients/H101")["status"] == "merged"
    _, ack = send(ris, msh("ADT^A08^ADT_A01", "{CTRL}"), "EVN|A08", pid("NOPE", "X^Y"), "PV1|1|O")
    assert (ack.ack_code, ack.error_code) == ("AE", 204)


def test_orm_new_order_gets_accession_and_is_on_the_worklist(ris: RunningRis):
    orc = "ORC|NW|PLC-77"
    obr = seg(
        "OBR",
        {1: "1", 2: "PLC-77", 4: "MRBRAIN^MR Brain^LOCAL", 16: "^Wilson^James", 24: "MR",
         27: "^^^202611261015"},
    )  # fmt: skip
    header = msh("ORM^O01^ORM_O01", "{CTRL}")
    ctrl, ack = send(ris, header, pid("H200", "Smith^Anna"), "PV1|1|O", orc, obr)
    assert ack.ack_code == "AA", ack
    assert "scheduled" in ack.text
    rows = ris.admin.get("/orders", patient_id="H200")
    assert len(rows) == 1
    row = rows[0]
    assert row["accession"].startswith("ACC") and row["placer_order"] == "PLC-77"
    assert (row["modality"], row["station_ae"], row["start_date"], row["start_time"]) == (
        "MR",
        "MR_1",
        "20261126",
        "1015",
    )
    assert row["referring_physician"] == "Wilson^James"
    assert row["accession"] in [i["accession"] for i in ris.admin.get("/worklist", modality="MR")]
    # The same message again (a resend after a lost ACK) is acknowledged, not applied twice.
    segments = [header.replace("{CTRL}", ctrl), pid("H200", "Smith^Anna"), "PV1|1|O", orc, obr]
    text = "\r".join(segments)
    again = read_ack(send_message("127.0.0.1", ris.hl7_port, (text + "\r").encode(), timeout=10))
    assert again.ack_code == "AA" and "duplicate" in again.text
    assert len(ris.admin.get("/orders", patient_id="H200")) == 1
    log = ris.admin.get("/hl7/messages")
    assert any(m["control_id"] == ctrl and m["ack_code"] == "AA" for m in log)
    # cancel it by HL7
    obr_ca = seg("OBR", {1: "1", 2: "PLC-77", 18: row["accession"]})
    _, ack = send(
        ris, msh("ORM^O01^ORM_O01", "{CTRL}"), pid("H200", "Smith^Anna"), "ORC|CA|PLC-77", obr_ca
    )
    assert ack.ack_code == "AA", ack
    assert ris.admin.get(f"/orders/{row['accession']}")["status"] == "CANCELLED"


def test_wrong_receiver_and_bad_orders_are_refused(ris: RunningRis):
    _, ack = send(
        ris, msh("ADT^A04^ADT_A01", "{CTRL}", app="SIMLAB_PACS"), "EVN|A04", pid("H300", "A^B")
    )
    assert (ack.ack_code, ack.error_code) == ("AR", 103)
    _, ack = send(ris, msh("ADT^A99^ADT_A01", "{CTRL}"), "EVN|A99", pid("H300", "A^B"))
    assert (ack.ack_code, ack.error_code) == ("AR", 201)
    no_modality = seg("OBR", {1: "1", 2: "P1", 4: "X^Y^L", 27: "^^^202611261015"})
    _, ack = send(
        ris, msh("ORM^O01^ORM_O01", "{CTRL}"), pid("H300", "A^B"), "ORC|NW|P1", no_modality
    )
    assert (ack.ack_code, ack.error_code) == ("AE", 101)
    lines = "\n".join(ris.admin.get("/log", contains="HL7 in")["lines"])
    assert "ACK AR 103" in lines and "ACK AE 101" in lines


def test_garbage_on_dicom_and_mllp_ports_does_not_stop_the_node(ris: RunningRis):
    for port in (ris.dicom_port, ris.hl7_port):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"\x00\xffGET / HTTP/1.0\r\n\r\n" + bytes(range(256)))
            sock.shutdown(socket.SHUT_WR)  # the node sees the end of the garbage at once
            sock.settimeout(5)
            try:
                while sock.recv(4096):
                    pass
            except (TimeoutError, ConnectionResetError):
                pass
    with socket.create_connection(("127.0.0.1", ris.hl7_port), timeout=5) as sock:
        sock.sendall(frame(b"this is not HL7"))  # framed, but no MSH
    _, ack = send(ris, msh("ADT^A04^ADT_A01", "{CTRL}"), "EVN|A04", pid("H400", "Still^Here"))
    assert ack.ack_code == "AA"
    ae = AE(ae_title="CT_1")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", ris.dicom_port, ae_title="SIMLAB_RIS")
    assert assoc.is_established
    assert int(assoc.send_c_echo().Status) == 0x0000
    assoc.release()
    assert ris.admin.health()["services"]["hl7"] is True
