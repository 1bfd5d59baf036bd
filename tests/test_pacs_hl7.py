"""The PACS's HL7 receiver against a real PACS process, over real MLLP connections.

Covers IHE RAD-1/RAD-12/RAD-4/RAD-13 messages (A01, A04, A08, A40, ORM^O01 NW/XO/CA), every
ACK code path (AA; AE 101, 204, 206, 207; AR 103, 200, 201, 202, 203), broken framing that must
cost nothing already acknowledged, character sets, and the effect of A08/A40 on stored studies.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE

from simlab.common.hl7_messages import AckSummary, read_ack, read_header
from simlab.common.mllp import frame, send_message
from simlab.runtime.ports import free_ports
from tests.conftest import RunningNode, start_pacs

APP, FACILITY = "SIMLAB_PACS", "RADIOLOGY"
"""What the lab's PACS answers to (runtime.topology.pacs_config)."""
TIMEOUT = 10.0
UID_ROOT = "2.25.4417730018"


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    """One PACS for the tests that only add their own patients and orders (distinct IDs)."""
    node = start_pacs(tmp_path_factory.mktemp("pacs-hl7"))
    try:
        yield node
    finally:
        node.stop()


# -- building messages -------------------------------------------------------------------------


def new_ctrl() -> str:
    return "T" + uuid.uuid4().hex[:15].upper()


def seg(name: str, fields: dict[int, str]) -> str:
    """A segment with fields placed by number (so OBR-18 really is field 18)."""
    return name + "|" + "|".join(fields.get(n, "") for n in range(1, max(fields) + 1))


def msh(
    msg_type: str,
    ctrl: str,
    *,
    app: str = APP,
    facility: str = FACILITY,
    processing: str = "P",
    version: str = "2.5.1",
    charset: str = "UNICODE UTF-8",
) -> str:
    return (
        f"MSH|^~\\&|RIS|HOSPITAL|{app}|{facility}|{time.strftime('%Y%m%d%H%M%S')}||{msg_type}"
        f"|{ctrl}|{processing}|{version}|||AL|NE||{charset}"
    )


def message(header: str, *segments: str) -> str:
    return "\r".join([header, *segments]) + "\r"


def pid(patient_id: str, name: str = "Doe^John", birth: str = "19700101", sex: str = "M") -> str:
    fields = {1: "1", 5: name, 7: birth, 8: sex}
    if patient_id:
        fields[3] = f"{patient_id}^^^HOSP^MR"
    return seg("PID", fields)


def adt(event: str, ctrl: str, patient: str, *extra: str, **header: str) -> str:
    structure = {"A40": "ADT_A39"}.get(event, "ADT_A01")
    segments = [pid(patient) if "|" not in patient else patient, *extra]
    if event != "A40":
        segments.append("PV1|1|O")
    return message(msh(f"ADT^{event}^{structure}", ctrl, **header), f"EVN|{event}", *segments)


def orm(
    ctrl: str,
    control: str,
    patient: str,
    accession: str,
    *,
    procedure: str = "CT123^CT Head^L",
    modality: str = "CT",
    name: str = "Doe^John",
    **header: str,
) -> str:
    placer, filler = f"PL-{accession}", f"FL-{accession}"
    orc = seg("ORC", {1: control, 2: placer, 3: filler, 5: "SC"})
    obr = seg(
        "OBR",
        {
            1: "1",
            2: placer,
            3: filler,
            4: procedure,
            18: accession,
            19: f"RP-{accession}",
            20: f"SPS-{accession}",
            24: modality,
        },
    )
    return message(msh("ORM^O01^ORM_O01", ctrl, **header), pid(patient, name), "PV1|1|O", orc, obr)


def send(node: RunningNode, text: str, encoding: str = "utf-8") -> AckSummary:
    raw = send_message("127.0.0.1", node.hl7_port, text.encode(encoding), timeout=TIMEOUT)
    return read_ack(raw)


def assert_aa(ack: AckSummary, ctrl: str) -> None:
    assert (ack.ack_code, ack.control_id, ack.error_code) == ("AA", ctrl, None), ack


def logged(node: RunningNode, ctrl: str) -> dict[str, Any]:
    rows = [r for r in node.admin.get("/hl7/messages", limit=10_000) if r["control_id"] == ctrl]
    assert len(rows) == 1, rows
    return rows[0]


def order(node: RunningNode, accession: str) -> dict[str, Any]:
    rows = [r for r in node.admin.get("/orders", limit=10_000) if r["accession"] == accession]
    assert len(rows) == 1, rows
    return rows[0]


# -- accepted messages -------------------------------------------------------------------------


@pytest.mark.parametrize("event", ["A01", "A04"])
def test_registration_is_accepted_and_logged(pacs: RunningNode, event: str) -> None:
    ctrl = new_ctrl()
    ack = send(pacs, adt(event, ctrl, f"REG-{event}"))
    assert_aa(ack, ctrl)
    assert ack.message_type == f"ACK^{event}"
    row = logged(pacs, ctrl)
    assert (row["type"], row["ack_code"], row["sender"]) == (f"ADT^{event}", "AA", "RIS/HOSPITAL")
    assert f"REG-{event}" in row["message"]
    assert f"HL7 ADT^{event} ctrl={ctrl} from RIS/HOSPITAL: ACK AA" in pacs.log_text()


def test_ack_header_answers_the_sender(pacs: RunningNode) -> None:
    ctrl = new_ctrl()
    raw = send_message(
        "127.0.0.1",
        pacs.hl7_port,
        adt("A01", ctrl, "ACK-HDR", version="2.4").encode(),
        timeout=TIMEOUT,
    )
    header = read_header(raw.decode("utf-8"))
    assert (header.sending_application, header.sending_facility) == (APP, FACILITY)
    assert (header.receiving_application, header.receiving_facility) == ("RIS", "HOSPITAL")
    assert (header.message_type, header.trigger_event, header.message_structure) == (
        "ACK",
        "A01",
        "ACK",
    )
    assert header.control_id and header.control_id != ctrl
    assert (header.processing_id, header.version, header.charset) == ("P", "2.4", "UNICODE UTF-8")
    assert "\rMSA|AA|" + ctrl in raw.decode()


def test_a08_for_a_registered_patient_is_accepted(pacs: RunningNode) -> None:
    assert_aa(send(pacs, adt("A01", c1 := new_ctrl(), "UPD-1")), c1)
    ack = send(pacs, adt("A08", c2 := new_ctrl(), pid("UPD-1", "Doe^Jane", sex="F")))
    assert_aa(ack, c2)
    assert "UPD-1 updated" in ack.text


def test_orders_new_change_cancel(pacs: RunningNode) -> None:
    assert_aa(send(pacs, orm(c := new_ctrl(), "NW", "ORD-1", "ACC-NW-1")), c)
    assert_aa(send(pacs, orm(c := new_ctrl(), "NW", "ORD-1", "ACC-NW-2", modality="MR")), c)
    first = order(pacs, "ACC-NW-1")
    assert first["status"] == "SCHEDULED"
    expected = {
        "patient_id": "ORD-1",
        "requested_procedure_id": "RP-ACC-NW-1",
        "scheduled_step_id": "SPS-ACC-NW-1",
        "procedure_code": "CT123",
        "modality": "CT",
    }
    assert {k: first[k] for k in expected} == expected

    change = orm(c := new_ctrl(), "XO", "ORD-1", "ACC-NW-1", procedure="CT200^CT Chest^L")
    assert_aa(send(pacs, change), c)
    assert order(pacs, "ACC-NW-1")["procedure_code"] == "CT200"

    assert_aa(send(pacs, orm(c := new_ctrl(), "CA", "ORD-1", "ACC-NW-2")), c)
    assert order(pacs, "ACC-NW-2")["status"] == "CANCELLED"
    assert order(pacs, "ACC-NW-1")["status"] == "SCHEDULED"


def test_resent_message_is_acknowledged_but_applied_once(pacs: RunningNode) -> None:
    assert_aa(send(pacs, adt("A01", c := new_ctrl(), "DUP-TARGET")), c)
    assert_aa(send(pacs, adt("A01", c := new_ctrl(), "DUP-PRIOR")), c)
    merge = adt("A40", c := new_ctrl(), pid("DUP-TARGET"), "MRG|DUP-PRIOR^^^HOSP^MR")
    assert_aa(send(pacs, merge), c)
    again = send(pacs, merge)  # the RIS lost the first ACK and sends the same message again
    assert_aa(again, c)
    assert "not applied again" in again.text


# -- rejected (AR) and errors (AE) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "code", "location", "text"),
    [
        (
            lambda c: adt("A01", c, "AR-1", app="WRONGAPP"),
            103,
            "MSH^1^5",
            f"MSH-5 'WRONGAPP' is not this system ({APP})",
        ),
        (lambda c: adt("A01", c, "AR-2", facility="CARDIO"), 103, "MSH^1^6", "MSH-6 'CARDIO'"),
        (
            lambda c: message(msh("ORU^R01^ORU_R01", c), pid("AR-3")),
            200,
            "MSH^1^9",
            "message type 'ORU'",
        ),
        (lambda c: adt("A02", c, "AR-4"), 201, "MSH^1^9", "event 'ADT^A02'"),
        (lambda c: adt("A01", c, "AR-5", processing="X"), 202, "MSH^1^11", "MSH-11"),
        (lambda c: adt("A01", c, "AR-6", version="2.7"), 203, "MSH^1^12", "version '2.7'"),
    ],
    ids=["msh5", "msh6", "type", "event", "processing-id", "version"],
)
def test_header_problems_are_rejected(
    pacs: RunningNode, build: Any, code: int, location: str, text: str
) -> None:
    ctrl = new_ctrl()
    ack = send(pacs, build(ctrl))
    assert (ack.ack_code, ack.control_id, ack.error_code, ack.error_location) == (
        "AR",
        ctrl,
        code,
        location,
    )
    assert text in ack.text
    row = logged(pacs, ctrl)
    assert (row["ack_code"], row["error_code"]) == ("AR", code)
    assert f"ctrl={ctrl} from RIS/HOSPITAL: ACK AR {code} " in pacs.log_text()


def test_wrong_msh5_log_line_reads_as_documented(pacs: RunningNode) -> None:
    ctrl = new_ctrl()
    send(pacs, adt("A08", ctrl, "AR-LOG", app="WRONGAPP"))
    line = (
        f"HL7 ADT^A08 ctrl={ctrl} from RIS/HOSPITAL: ACK AR 103 MSH-5 'WRONGAPP' is not this"
        f" system ({APP})"
    )
    assert line in pacs.log_text()


@pytest.mark.parametrize(
    ("build", "code", "location", "text"),
    [
        (lambda c: adt("A01", c, pid("")), 101, "PID^1^3", "PID-3"),
        (lambda c: adt("A08", c, "NEVER-SEEN"), 204, "PID^1^3", "'NEVER-SEEN' is unknown"),
        (
            lambda c: adt("A40", c, pid("AE-TARGET"), "MRG|GHOST^^^HOSP^MR"),
            204,
            "MRG^1^1",
            "'GHOST' is unknown",
        ),
        (lambda c: adt("A40", c, pid("AE-TARGET")), 100, "MRG^1", "MRG is missing"),
        (lambda c: orm(c, "XO", "AE-ORD", "ACC-UNKNOWN"), 204, "OBR^1^18", "unknown order"),
        (lambda c: orm(c, "NW", "AE-ORD", ""), 101, "OBR^1^18", "OBR-18"),
        (lambda c: orm(c, "ZZ", "AE-ORD", "ACC-ZZ"), 103, "ORC^1^1", "ORC-1"),
    ],
    ids=[
        "no-pid3",
        "a08-unknown",
        "a40-unknown-prior",
        "a40-no-mrg",
        "xo-unknown",
        "nw-no-acc",
        "bad-control",
    ],
)
def test_content_problems_get_application_errors(
    pacs: RunningNode, build: Any, code: int, location: str, text: str
) -> None:
    ctrl = new_ctrl()
    ack = send(pacs, build(ctrl))
    assert (ack.ack_code, ack.control_id, ack.error_code, ack.error_location) == (
        "AE",
        ctrl,
        code,
        location,
    )
    assert text in ack.text
    assert logged(pacs, ctrl)["ack_code"] == "AE"


def test_an_error_rolls_back_the_whole_message(pacs: RunningNode) -> None:
    """An ORM whose second order is bad is refused whole: the first order is not kept."""
    ctrl = new_ctrl()
    good = orm(ctrl, "NW", "ROLL-1", "ACC-ROLL-1")
    bad_pair = "\r".join(orm(ctrl, "NW", "ROLL-1", "").split("\r")[3:5])
    ack = send(pacs, good + bad_pair + "\r")
    assert (ack.ack_code, ack.error_code, ack.error_location) == ("AE", 101, "OBR^2^18")
    assert all(o["accession"] != "ACC-ROLL-1" for o in pacs.admin.get("/orders", limit=10_000))


# -- broken framing costs nothing acknowledged -------------------------------------------------


def _raw_connection(node: RunningNode) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", node.hl7_port), timeout=TIMEOUT)
    sock.settimeout(TIMEOUT)
    return sock


def _assert_closed(sock: socket.socket) -> None:
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return
    except ConnectionResetError:
        return
    pytest.fail("the PACS kept the connection open")


def _read_frame(sock: socket.socket) -> bytes:
    """One framed reply's content, read from a raw socket."""
    data = b""
    deadline = time.monotonic() + TIMEOUT
    while not data.endswith(b"\x1c\x0d"):
        assert time.monotonic() < deadline, data
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    assert data.startswith(b"\x0b"), data
    return data[1:-2]


def wait_for_log(node: RunningNode, text: str, timeout: float = TIMEOUT) -> bool:
    """Poll the node log (a connection thread writes its closing line asynchronously)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in node.log_text():
            return True
        time.sleep(0.05)
    return text in node.log_text()


def _send_and_expect_close(node: RunningNode, data: bytes) -> None:
    with _raw_connection(node) as sock:
        # The PACS may close while we are still sending: that is the expected outcome.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        _assert_closed(sock)


def test_broken_framing_is_dropped_and_nothing_acknowledged_is_lost(pacs: RunningNode) -> None:
    accepted: list[str] = []

    def good(accession: str) -> None:
        ack = send(pacs, orm(c := new_ctrl(), "NW", "FRAME-1", accession))
        assert_aa(ack, c)
        accepted.append(c)

    good("ACC-FRAME-1")
    _send_and_expect_close(pacs, os.urandom(256).replace(b"\x0b", b"\x00"))
    good("ACC-FRAME-2")
    _send_and_expect_close(pacs, orm(new_ctrl(), "NW", "FRAME-1", "ACC-UNFRAMED").encode())
    oversize = orm(new_ctrl(), "NW", "FRAME-1", "ACC-BIG") + "NTE|1||" + "x" * 1_100_000 + "\r"
    _send_and_expect_close(pacs, frame(oversize.encode()))
    cut_ctrl = new_ctrl()
    with _raw_connection(pacs) as sock:  # a message cut off by the network, then a good one
        sock.sendall(b"\x0b" + orm(cut_ctrl, "NW", "FRAME-1", "ACC-CUT").encode()[:80])
    good("ACC-FRAME-3")
    with _raw_connection(pacs) as sock:  # garbage after an accepted message, same connection
        c = new_ctrl()
        sock.sendall(frame(orm(c, "NW", "FRAME-1", "ACC-FRAME-4").encode()))
        assert_aa(read_ack(_read_frame(sock)), c)
        accepted.append(c)
        sock.sendall(b"garbage\r\n")
        _assert_closed(sock)
    good("ACC-FRAME-5")

    log = {r["control_id"]: r for r in pacs.admin.get("/hl7/messages", limit=10_000)}
    assert all(log[c]["ack_code"] == "AA" for c in accepted)
    assert cut_ctrl not in log
    accessions = {o["accession"] for o in pacs.admin.get("/orders", limit=10_000)}
    assert {f"ACC-FRAME-{n}" for n in range(1, 6)} <= accessions
    assert not accessions & {"ACC-UNFRAMED", "ACC-BIG", "ACC-CUT"}
    for reason in ("before the start block", "max_message_bytes", "in the middle of a message"):
        assert wait_for_log(pacs, reason), reason


# -- character sets ----------------------------------------------------------------------------


def test_utf8_and_latin1_names_survive(pacs: RunningNode) -> None:
    utf8 = orm(c1 := new_ctrl(), "NW", "CS-UTF8", "ACC-CS-1", name="Müller^Hans")
    assert_aa(send(pacs, utf8, "utf-8"), c1)
    latin1 = orm(
        c2 := new_ctrl(),
        "NW",
        "CS-L1",
        "ACC-CS-2",
        name="Groß^Jürgen",
        charset="8859/1",
        version="2.3",
    )
    raw_ack = send_message("127.0.0.1", pacs.hl7_port, latin1.encode("latin-1"), timeout=TIMEOUT)
    assert_aa(read_ack(raw_ack), c2)
    assert b"|8859/1" in raw_ack  # the ACK declares the set it is written in
    assert order(pacs, "ACC-CS-1")["patient_name"] == "Müller^Hans"
    assert order(pacs, "ACC-CS-2")["patient_name"] == "Groß^Jürgen"
    assert "Müller^Hans" in logged(pacs, c1)["message"]
    assert "Groß^Jürgen" in logged(pacs, c2)["message"]


def test_declared_latin1_with_utf8_bytes_garbles_as_in_a_hospital(pacs: RunningNode) -> None:
    """A charset mismatch is a data fault, not a rejection: the name arrives garbled."""
    text = orm(c := new_ctrl(), "NW", "CS-BAD", "ACC-CS-3", name="Müller^Hans", charset="8859/1")
    assert_aa(send(pacs, text, "utf-8"), c)
    assert order(pacs, "ACC-CS-3")["patient_name"] == "MÃ¼ller^Hans"


# -- effect on stored studies ------------------------------------------------------------------


def _ct_instance(patient_id: str, name: str, study: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = f"{UID_ROOT}.{study}.1.1"
    ds.StudyInstanceUID = f"{UID_ROOT}.{study}"
    ds.SeriesInstanceUID = f"{UID_ROOT}.{study}.1"
    ds.PatientID = patient_id
    ds.PatientName = name
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "O"
    ds.StudyDate, ds.StudyTime = "20240102", "101500"
    ds.AccessionNumber = f"A{study[-12:]}"
    ds.Modality = "CT"
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = bytes(32)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def store_study(node: RunningNode, patient_id: str, name: str) -> str:
    """C-STORE one CT image as DCMTK's storescu would (calling AE STORESCU); its study UID."""
    study = str(int(time.time() * 1e6))
    ds = _ct_instance(patient_id, name, study)
    ae = AE(ae_title="STORESCU")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title=node.ae_title)
    assert assoc.is_established, "the PACS refused the association"
    try:
        status = assoc.send_c_store(ds)
    finally:
        assoc.release()
    assert status is not None and status.Status == 0x0000, status
    return str(ds.StudyInstanceUID)


def studies_of(node: RunningNode, patient_id: str) -> list[dict[str, Any]]:
    return node.admin.get("/studies", patient_id=patient_id)


def test_a08_changes_the_patient_of_stored_studies(pacs: RunningNode) -> None:
    uid = store_study(pacs, "HL7-A08", "Before^Name")
    update = adt("A08", c := new_ctrl(), pid("HL7-A08", "Müller^Hans", birth="19451224", sex="F"))
    ack = send(pacs, update)
    assert_aa(ack, c)
    assert "1 stored study updated" in ack.text
    (study,) = studies_of(pacs, "HL7-A08")
    assert study["study_uid"] == uid
    shown = (study["patient_name"], study["birth_date"], study["sex"])
    assert shown == ("Müller^Hans", "19451224", "F")


def test_a40_moves_studies_to_the_surviving_patient(pacs: RunningNode) -> None:
    uid = store_study(pacs, "HL7-PRIOR", "Temp^Unknown")
    assert_aa(send(pacs, adt("A01", c := new_ctrl(), pid("HL7-SURVIVOR", "Real^Name"))), c)
    merge = adt("A40", c := new_ctrl(), pid("HL7-SURVIVOR", "Real^Name"), "MRG|HL7-PRIOR^^^HOSP")
    ack = send(pacs, merge)
    assert_aa(ack, c)
    assert "1 study" in ack.text
    assert studies_of(pacs, "HL7-PRIOR") == []
    (study,) = studies_of(pacs, "HL7-SURVIVOR")
    assert (study["study_uid"], study["patient_name"]) == (uid, "Real^Name")


# -- the node's own trouble, and live config ---------------------------------------------------


def _hl7_db(node: RunningNode) -> Path:
    return node.data_dir / "hl7.sqlite"


def test_database_trouble_gives_ae_206_then_207(pacs_node: RunningNode) -> None:
    """A lock held elsewhere: AE 206 (record locked); a damaged table: AE 207 (internal error).

    Either way the RIS is told the message was not applied, and the node keeps serving.
    """
    locker = sqlite3.connect(_hl7_db(pacs_node), isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")
        ack = send(pacs_node, adt("A01", c := new_ctrl(), "LOCKED-1"))
        assert (ack.ack_code, ack.control_id, ack.error_code) == ("AE", c, 206)
        locker.execute("ROLLBACK")
        assert_aa(send(pacs_node, adt("A01", c := new_ctrl(), "LOCKED-1")), c)

        locker.execute("DROP TABLE orders")
        ack = send(pacs_node, orm(c := new_ctrl(), "NW", "LOCKED-1", "ACC-DAMAGED"))
        assert (ack.ack_code, ack.control_id, ack.error_code) == ("AE", c, 207)
        assert logged(pacs_node, c)["error_code"] == 207
        assert_aa(send(pacs_node, adt("A04", c := new_ctrl(), "LOCKED-2")), c)
    finally:
        locker.close()
    assert "ACK AE 206" in pacs_node.log_text()


def test_port_change_restarts_listener_and_identity_applies_live(pacs_node: RunningNode) -> None:
    old_port = pacs_node.hl7_port
    (new_port,) = free_ports(1, avoid=[old_port])
    result = pacs_node.admin.patch("/config", {"hl7": {"port": new_port}})
    assert result["restarted"] == ["hl7"]
    assert pacs_node.hl7_port == new_port
    assert_aa(send(pacs_node, adt("A01", c := new_ctrl(), "MOVED-1")), c)
    with pytest.raises(ConnectionError, match="refused"):
        send_message("127.0.0.1", old_port, adt("A01", new_ctrl(), "X").encode(), timeout=TIMEOUT)

    result = pacs_node.admin.patch("/config", {"hl7": {"application": "NEW_PACS"}})
    assert result["restarted"] == []
    assert send(pacs_node, adt("A01", new_ctrl(), "MOVED-2")).error_code == 103
    assert_aa(send(pacs_node, adt("A01", c := new_ctrl(), "MOVED-3", app="NEW_PACS")), c)
