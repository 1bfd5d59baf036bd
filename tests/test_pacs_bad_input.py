"""Bad input on the PACS's DICOM port and admin API: refused, logged, and the node keeps serving.

A hospital PACS meets port scanners, load-balancer probes, half-written PDUs from a crashing
modality, objects with a broken element, and typos in the vendor console every day. None of them
may take the archive down or leave it unable to accept the next study, and each must leave a line
in the node log an administrator can act on. Every test here talks to a real PACS process over
real loopback sockets; raw PDUs are built by hand (PS3.8 9.3) so the PACS's DICOM stack, not a
client library, decides what happens.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import re
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom import _config as pynetdicom_config
from pynetdicom.sop_class import Verification

from simlab.client.admin import AdminApiError, path_part
from tests.conftest import RunningNode, requires_dcmtk, start_pacs

# --- PS3.8 9.3: PDU types and the A-ABORT PDU -------------------------------------------------

PDU_ASSOCIATE_RQ = 0x01
PDU_ASSOCIATE_AC = 0x02
PDU_ASSOCIATE_RJ = 0x03
PDU_P_DATA_TF = 0x04
PDU_ABORT = 0x07
ABORT_SOURCE_SERVICE_USER = 0
ABORT_SOURCE_SERVICE_PROVIDER = 2
ABORT_REASON_NOT_SPECIFIED = 0
ABORT_REASON_UNRECOGNISED_PDU = 1

VERIFICATION_UID = "1.2.840.10008.1.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
TEST_IMPLEMENTATION_UID = "2.25.302311947153914417045463347455631766083"

LOG_WAIT_S = 3.0
"""How long a log line may take to reach the file after the event that causes it."""

WARNING_OR_WORSE = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b")


# --- helpers: raw PDUs --------------------------------------------------------------------------


def _item(item_type: int, body: bytes) -> bytes:
    """One variable item of an association PDU (PS3.8 9.3.2.x): type, reserved, 2-byte length."""
    return struct.pack(">BBH", item_type, 0, len(body)) + body


def associate_rq(called: str, calling: str, max_pdu: int = 16384) -> bytes:
    """A well-formed A-ASSOCIATE-RQ PDU (PS3.8 9.3.2) proposing Verification only."""
    context = _item(
        0x20,
        bytes([1, 0, 0, 0])
        + _item(0x30, VERIFICATION_UID.encode())
        + _item(0x40, IMPLICIT_VR_LE.encode()),
    )
    user_info = _item(
        0x50,
        _item(0x51, struct.pack(">I", max_pdu)) + _item(0x52, TEST_IMPLEMENTATION_UID.encode()),
    )
    body = (
        struct.pack(">HH", 1, 0)
        + called.ljust(16).encode("ascii")
        + calling.ljust(16).encode("ascii")
        + bytes(32)
        + _item(0x10, APPLICATION_CONTEXT.encode())
        + context
        + user_info
    )
    return struct.pack(">BBI", PDU_ASSOCIATE_RQ, 0, len(body)) + body


def p_data_tf(context_id: int, payload: bytes, last_command: bool = True) -> bytes:
    """A P-DATA-TF PDU (PS3.8 9.3.5) holding one PDV item with a command fragment."""
    header = 0x03 if last_command else 0x01
    pdv = struct.pack(">IBB", len(payload) + 2, context_id, header) + payload
    return struct.pack(">BBI", PDU_P_DATA_TF, 0, len(pdv)) + pdv


def abort_pdu(source: int, reason: int) -> bytes:
    """The exact bytes of an A-ABORT PDU (PS3.8 9.3.8, Table 9-26)."""
    return struct.pack(">BBIBBBB", PDU_ABORT, 0, 4, 0, 0, source, reason)


def connect(node: RunningNode, timeout: float = 5.0) -> socket.socket:
    """A raw TCP connection to the PACS's DICOM port."""
    return socket.create_connection(("127.0.0.1", node.dicom_port), timeout=timeout)


def recv_exactly(sock: socket.socket, count: int, timeout: float = 5.0) -> bytes:
    """Up to `count` bytes: fewer only when the peer closed or `timeout` passed."""
    deadline = time.monotonic() + timeout
    data = bytearray()
    while len(data) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(count - len(data))
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


def read_pdu(sock: socket.socket, timeout: float = 5.0) -> tuple[int, bytes] | None:
    """The next PDU from the peer as (type, whole PDU bytes), or None when it sent nothing."""
    header = recv_exactly(sock, 6, timeout)
    if len(header) < 6:
        return None
    pdu_type, _, length = struct.unpack(">BBI", header)
    return pdu_type, header + recv_exactly(sock, min(length, 1 << 20), timeout)


def read_until_closed(sock: socket.socket, timeout: float = 10.0, limit: int = 1 << 16) -> bytes:
    """Everything the peer sends until it closes; fails the test if it keeps the socket open."""
    deadline = time.monotonic() + timeout
    data = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(
                f"the PACS kept a dead connection open for more than {timeout:.0f} s "
                f"after the peer half-closed it (received {bytes(data[:32])!r})"
            )
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return bytes(data)
        if not chunk:
            return bytes(data)
        if len(data) < limit:
            data += chunk


def establish_raw_association(node: RunningNode) -> socket.socket:
    """Open a socket and complete A-ASSOCIATE-RQ/AC by hand (Verification, context 1)."""
    sock = connect(node)
    sock.sendall(associate_rq(node.ae_title, "ECHOSCU"))
    answer = read_pdu(sock)
    assert answer is not None, "the PACS did not answer a valid A-ASSOCIATE-RQ"
    assert answer[0] == PDU_ASSOCIATE_AC, f"expected A-ASSOCIATE-AC, got {answer[1][:16]!r}"
    return sock


def describe_reply(reply: bytes) -> str:
    """A readable name for the first PDU of a reply, for assertion messages."""
    if not reply:
        return "nothing (connection closed)"
    names = {1: "A-ASSOCIATE-RQ", 2: "A-ASSOCIATE-AC", 3: "A-ASSOCIATE-RJ", 4: "P-DATA-TF"}
    names |= {5: "A-RELEASE-RQ", 6: "A-RELEASE-RP", 7: "A-ABORT"}
    return f"{names.get(reply[0], f'unknown PDU 0x{reply[0]:02X}')}: {reply[:16].hex(' ')}"


# --- helpers: is the node still there, and what did it log? ------------------------------------


def c_echo_status(node: RunningNode, calling: str = "ECHOSCU") -> int | None:
    """Status of a C-ECHO from a real pynetdicom SCU, or None when no association was made."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title=node.ae_title)
    if not assoc.is_established:
        return None
    try:
        status = assoc.send_c_echo()
        return int(status.Status) if "Status" in status else None
    finally:
        assoc.release()


def assert_serves(node: RunningNode, after: str) -> None:
    """The node is alive and a C-ECHO gets Success: the bad input did not take the service down."""
    assert node.process.alive(), f"the PACS process died after {after}; see {node.log_path}"
    status = c_echo_status(node)
    assert status == 0x0000, (
        f"C-ECHO after {after} did not succeed (status {status}; None = association refused "
        f"or failed); log tail:\n{tail(node)}"
    )


def tail(node: RunningNode, lines: int = 15) -> str:
    """The end of the node log, shown in a failure message so the reader needs no other file."""
    return "\n".join(node.log_text().splitlines()[-lines:])


class LogCursor:
    """Reads only what the node logged after the cursor was made."""

    def __init__(self, node: RunningNode) -> None:
        self.node = node
        self.offset = node.log_path.stat().st_size if node.log_path.exists() else 0

    def new_lines(self) -> list[str]:
        with open(self.node.log_path, "rb") as fh:
            fh.seek(self.offset)
            return fh.read().decode("utf-8", errors="replace").splitlines()

    def wait_for(self, predicate: Any, what: str, timeout: float = LOG_WAIT_S) -> str:
        """The first new line for which `predicate(line)` holds; polls briefly, then fails."""
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            for line in self.new_lines():
                if predicate(line):
                    return line
            if time.monotonic() >= deadline:
                shown = "\n".join(self.new_lines()[-20:]) or "(nothing)"
                raise AssertionError(f"the node log has no line for {what}; it logged:\n{shown}")
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def wait_for_regex(self, pattern: str, what: str, warning: bool = True) -> str:
        """A new line matching `pattern` (case-insensitive), at WARNING or above if `warning`."""
        regex = re.compile(pattern, re.IGNORECASE)
        return self.wait_for(
            lambda line: (
                bool(regex.search(line)) and (not warning or bool(WARNING_OR_WORSE.search(line)))
            ),
            what,
        )


def logged_about_connection(line: str, peer_port: int) -> bool:
    """A line an administrator can tie to a bad connection: a warning or error, or any line
    naming the peer's address and port."""
    return (
        bool(WARNING_OR_WORSE.search(line)) or re.search(rf"[:\s]{peer_port}\b", line) is not None
    )


# --- helpers: DICOM files ------------------------------------------------------------------------


def write_ct(
    path: Path, study_uid: str, series_uid: str, number: int, *, patient_id: str = "BAD-IN-1"
) -> str:
    """Write a small valid CT Image (Explicit VR Little Endian Part-10 file); return its UID."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyDate = "20240101"
    ds.Modality = "CT"
    ds.AccessionNumber = "ACC-BAD-1"
    ds.PatientName = "Bad^Input"
    ds.PatientID = patient_id
    ds.PatientComments = "test patient for broken input"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    ds.ImageComments = "instance written by test_pacs_bad_input"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 16
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(range(256)) * 2
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return str(ds.SOPInstanceUID)


def break_element_length(path: Path, tag: tuple[int, int], vr: bytes) -> None:
    """Rewrite the 16-bit length of one explicit-VR element so its value runs past the end of
    the file: the meta stays valid, the dataset is broken from that element on."""
    raw = path.read_bytes()
    marker = struct.pack("<HH", *tag) + vr
    at = raw.index(marker, 132 + 12)  # after the preamble, DICM and the meta group length
    old_length = struct.unpack_from("<H", raw, at + 6)[0]
    new_length = 0xFFF0
    assert at + 8 + new_length > len(raw), "the element must run past the end of the file"
    assert old_length < new_length
    path.write_bytes(raw[: at + 6] + struct.pack("<H", new_length) + raw[at + 8 :])


def strings_in(value: Any) -> set[str]:
    """Every string anywhere in a JSON answer: UIDs are found whatever the keys are called."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(strings_in(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(strings_in(v) for v in value)) if value else set()
    return set()


def files_holding(root: Path, needle: bytes) -> list[Path]:
    """Files under `root` whose bytes contain `needle` (a UID), wherever the PACS put them."""
    if not root.exists():
        return []
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.name.startswith("index") and needle in path.read_bytes():
            found.append(path)
    return found


# === DICOM port ==================================================================================


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_random_bytes_before_association(pacs_node: RunningNode, seed: int) -> None:
    """Garbage instead of an A-ASSOCIATE-RQ (a port scanner, an HTTP probe on the DICOM port)
    gets at most an A-ABORT or A-ASSOCIATE-RJ, never an acceptance; the node logs it and serves."""
    rng = random.Random(seed)
    size = [1, 5, 6, 64, 4096, 70_000][seed]
    payload = rng.randbytes(size)
    cursor = LogCursor(pacs_node)
    with connect(pacs_node) as sock:
        port = sock.getsockname()[1]
        # The PACS may abort before reading all of it.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        reply = read_until_closed(sock)
    assert not reply or reply[0] in (PDU_ABORT, PDU_ASSOCIATE_RJ), (
        f"the PACS answered {size} random bytes (seed {seed}) with {describe_reply(reply)}"
    )
    assert_serves(pacs_node, f"{size} random bytes (seed {seed})")
    cursor.wait_for(
        lambda line: logged_about_connection(line, port),
        f"a connection that sent {size} random bytes (seed {seed}, peer port {port})",
    )


@pytest.mark.timeout(90)
def test_random_bytes_hypothesis(pacs_node: RunningNode) -> None:
    """Fifty generated inputs, one connection each, against the same node: after every one the
    node still accepts a C-ECHO and has logged the bad connection. Shrinking is off so a failure
    reports the generated input at once instead of spending minutes minimising it."""

    @settings(
        max_examples=50,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(payload=st.binary(min_size=1, max_size=2048))
    def one_input(payload: bytes) -> None:
        cursor = LogCursor(pacs_node)
        with connect(pacs_node) as sock:
            port = sock.getsockname()[1]
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)
            reply = read_until_closed(sock)
        assert not reply or reply[0] in (PDU_ABORT, PDU_ASSOCIATE_RJ), (
            f"the PACS answered {payload[:16]!r}... with {describe_reply(reply)}"
        )
        assert_serves(pacs_node, f"random input {payload[:16]!r} ({len(payload)} bytes)")
        cursor.wait_for(
            lambda line: logged_about_connection(line, port),
            f"a connection that sent {len(payload)} random bytes (peer port {port})",
        )

    one_input()


def test_bad_connections_do_not_use_up_association_slots(pacs_node: RunningNode) -> None:
    """More garbage connections than `max_associations`, each closed at once, must not lock
    modalities out: a connection that never became an association holds no slot once the peer
    has gone (a load-balancer health check every few seconds would otherwise fill the table
    and every modality would get A-ASSOCIATE-RJ 'local limit exceeded')."""
    limit = pacs_node.admin.get("/config")["dicom"]["max_associations"]
    for _ in range(limit + 4):
        with connect(pacs_node) as sock:
            sock.sendall(b"\x09\x00\x00\x00\x00\x02xx")
            sock.shutdown(socket.SHUT_WR)
            read_until_closed(sock)
    assert_serves(pacs_node, f"{limit + 4} closed garbage connections (max_associations={limit})")


@pytest.mark.parametrize(
    "sent", [b"", b"\x01\x00\x00"], ids=["silent-peer", "peer-stuck-in-pdu-header"]
)
def test_artim_closes_a_connection_that_never_associates(
    pacs_node: RunningNode, sent: bytes
) -> None:
    """PS3.8 9.1.5 / Table 9-10: the acceptor starts ARTIM when the transport connection opens
    (AE-5); if no complete A-ASSOCIATE-RQ has arrived when it expires (Sta2 + Evt18, AA-2) the
    connection is closed. This must hold whether the peer sends nothing or stops in the middle
    of a PDU header; otherwise a half-dead peer pins a connection (and an association slot)
    for as long as it keeps the socket open. ARTIM is the config's dicom.acse_timeout, set low
    here through the admin API so the test is quick."""
    artim = 2.0
    pacs_node.admin.patch("/config", {"dicom": {"acse_timeout": artim}})
    cursor = LogCursor(pacs_node)
    with connect(pacs_node) as sock:
        port = sock.getsockname()[1]
        if sent:
            sock.sendall(sent)
        opened = time.monotonic()
        try:
            reply = read_until_closed(sock, timeout=artim + 5.0)
        except AssertionError:
            raise AssertionError(
                f"the PACS kept a connection that sent {sent!r} and then waited open for "
                f"{artim + 5.0:.0f} s; ARTIM (acse_timeout={artim}) should close it"
            ) from None
        waited = time.monotonic() - opened
    assert not reply or reply[0] in (PDU_ABORT, PDU_ASSOCIATE_RJ), describe_reply(reply)
    assert waited >= artim * 0.8, f"closed after {waited:.1f} s, before ARTIM ({artim} s)"
    assert_serves(pacs_node, f"a connection that sent {sent!r} and waited")
    cursor.wait_for(
        lambda line: logged_about_connection(line, port), "a connection closed by ARTIM"
    )


def test_truncated_associate_rq(pacs_node: RunningNode) -> None:
    """An A-ASSOCIATE-RQ whose length field promises more bytes than arrive before the peer
    closes (a modality crashing mid-send): no association, a log line, the node serves."""
    pdu = associate_rq(pacs_node.ae_title, "ECHOSCU")
    cursor = LogCursor(pacs_node)
    with connect(pacs_node) as sock:
        sock.sendall(pdu[: len(pdu) // 2])
        sock.shutdown(socket.SHUT_WR)
        reply = read_until_closed(sock)
    assert not reply or reply[0] in (PDU_ABORT, PDU_ASSOCIATE_RJ), describe_reply(reply)
    assert_serves(pacs_node, "a truncated A-ASSOCIATE-RQ")
    cursor.wait_for_regex(
        r"shorter than expected|truncat|incomplete|closed before|premature|partial",
        "a truncated A-ASSOCIATE-RQ",
    )


PEER_BEHAVIOUR = pytest.mark.parametrize(
    "peer_waits", [False, True], ids=["peer-half-closes", "peer-waits-for-answer"]
)
"""Whether the bad peer half-closes after its PDU or keeps the connection open waiting for an
answer. PS3.8 acts on the PDU itself (Evt19), so the A-ABORT is due in both cases; a stack that
reads ahead before acting answers only when the peer closes or the network timeout fires."""

UNKNOWN_PDU = struct.pack(">BBI", 0x09, 0, 4) + b"\x00\x01\x02\x03"
"""PDU type 0x09 does not exist (PS3.8 9.3.1); its length field and 4-byte body are consistent."""


def send_unknown_pdu(sock: socket.socket, peer_waits: bool) -> tuple[int, bytes] | None:
    """Send UNKNOWN_PDU, half-close unless the peer waits, return the first PDU answered."""
    sock.sendall(UNKNOWN_PDU)
    if not peer_waits:
        sock.shutdown(socket.SHUT_WR)
    return read_pdu(sock, timeout=5.0)


@PEER_BEHAVIOUR
def test_unknown_pdu_type_before_association_gets_a_abort(
    pacs_node: RunningNode, peer_waits: bool
) -> None:
    """Before an association (Sta2) an unrecognised PDU is Evt19 and the state table (PS3.8 9.2,
    Table 9-10, Sta2 + Evt19) calls for AA-1: an A-ABORT PDU with source 0 (service-user); with
    source 0 the reason field is sent as 0 (PS3.8 9.3.8). The exact bytes are
    07 00 00000004 00 00 00 00, within 5 s, whether or not the peer has closed its side."""
    cursor = LogCursor(pacs_node)
    with connect(pacs_node) as sock:
        reply = send_unknown_pdu(sock, peer_waits)
    assert reply is not None, "no A-ABORT within 5 s of PDU type 0x09" + (
        " while the peer kept the connection open" if peer_waits else ""
    )
    assert reply[1] == abort_pdu(ABORT_SOURCE_SERVICE_USER, ABORT_REASON_NOT_SPECIFIED), (
        f"expected A-ABORT 07 00 00000004 00 00 00 00, got {reply[1].hex(' ')}"
    )
    assert_serves(pacs_node, "an unknown PDU type 0x09")
    cursor.wait_for_regex(r"(unknown|unrecogni[sz]ed|invalid).*PDU|PDU.*0x09", "PDU type 0x09")


@PEER_BEHAVIOUR
def test_unknown_pdu_type_inside_association_gets_provider_a_abort(
    pacs_node: RunningNode, peer_waits: bool
) -> None:
    """PDU type 0x09 on an established association (Sta6 + Evt19) is AA-8: an A-ABORT with
    source 2 (service-provider) and a provider reason (PS3.8 9.3.8). pynetdicom's AA-8 sends
    reason 0 (not specified); 1 (unrecognised PDU) is the more precise value and also allowed.
    Either way the association is gone and the next one works."""
    cursor = LogCursor(pacs_node)
    with establish_raw_association(pacs_node) as sock:
        reply = send_unknown_pdu(sock, peer_waits)
    assert reply is not None, "no A-ABORT within 5 s of PDU type 0x09 on an association" + (
        " while the peer kept the connection open" if peer_waits else ""
    )
    pdu_type, raw = reply
    assert pdu_type == PDU_ABORT, f"expected A-ABORT, got {describe_reply(raw)}"
    assert raw[:8] == bytes([0x07, 0, 0, 0, 0, 4, 0, 0]), raw.hex(" ")
    assert raw[8] == ABORT_SOURCE_SERVICE_PROVIDER, f"A-ABORT source {raw[8]}, expected 2"
    assert raw[9] in (ABORT_REASON_NOT_SPECIFIED, ABORT_REASON_UNRECOGNISED_PDU), (
        f"A-ABORT reason {raw[9]}, expected 0 or 1"
    )
    assert_serves(pacs_node, "an unknown PDU type inside an association")
    cursor.wait_for_regex(r"(unknown|unrecogni[sz]ed|invalid).*PDU|PDU.*0x09", "PDU type 0x09")


def test_p_data_tf_before_association_gets_a_abort(pacs_node: RunningNode) -> None:
    """A P-DATA-TF in Sta2 (a peer that skipped association negotiation) is Sta2 + Evt10 →
    AA-1 (PS3.8 Table 9-10): A-ABORT, source 0, reason 0; no DIMSE message is acted on."""
    cursor = LogCursor(pacs_node)
    with connect(pacs_node) as sock:
        port = sock.getsockname()[1]
        sock.sendall(p_data_tf(1, b"\x00" * 12))
        reply = read_pdu(sock)
    assert reply is not None, "the PACS sent nothing in answer to a P-DATA-TF in Sta2"
    assert reply[1] == abort_pdu(ABORT_SOURCE_SERVICE_USER, ABORT_REASON_NOT_SPECIFIED), (
        f"expected A-ABORT 07 00 00000004 00 00 00 00, got {reply[1].hex(' ')}"
    )
    assert_serves(pacs_node, "a P-DATA-TF before association")
    cursor.wait_for(
        lambda line: logged_about_connection(line, port), "a P-DATA-TF before association"
    )


@pytest.mark.parametrize("before_association", [True, False], ids=["sta2", "sta6"])
def test_oversize_pdu_length_field(pacs_node: RunningNode, before_association: bool) -> None:
    """A PDU header claiming 0xFFFFFFFF bytes (far above max_pdu_size), followed by 1 MiB and a
    close: the PACS must not wait for 4 GiB, stop the listener or die. While the bad connection
    is still open another association works; after it closes, the node logs it."""
    cursor = LogCursor(pacs_node)
    sock = connect(pacs_node) if before_association else establish_raw_association(pacs_node)
    with sock:
        port = sock.getsockname()[1]
        pdu_type = PDU_ASSOCIATE_RQ if before_association else PDU_P_DATA_TF
        # The PACS may refuse the PDU before reading it all: that is allowed.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(struct.pack(">BBI", pdu_type, 0, 0xFFFFFFFF) + bytes(1 << 20))
        assert_serves(pacs_node, "an oversize PDU header (bad connection still open)")
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        reply = read_until_closed(sock)
    assert not reply or reply[0] in (PDU_ABORT, PDU_ASSOCIATE_RJ), describe_reply(reply)
    assert_serves(pacs_node, "an oversize PDU length field")
    cursor.wait_for(
        lambda line: logged_about_connection(line, port), "an oversize PDU length field"
    )


@pytest.fixture
def chunked_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make pynetdicom send a file's dataset bytes as they are on disk, without decoding them,
    so a broken element reaches the PACS unchanged (the client is the test, not the node)."""
    monkeypatch.setattr(pynetdicom_config, "STORE_SEND_CHUNKED_DATASET", True)
    yield


@pytest.mark.parametrize(
    ("tag", "vr"),
    [((0x0020, 0x4000), b"LT"), ((0x0010, 0x4000), b"LT")],
    ids=["image-comments-after-the-uids", "patient-comments-before-the-uids"],
)
@pytest.mark.usefixtures("chunked_store")
def test_c_store_with_broken_element(
    pacs_node: RunningNode, tmp_path: Path, tag: tuple[int, int], vr: bytes
) -> None:
    """A C-STORE whose dataset has an element length running past the end of the data
    (valid meta, broken dataset) must fail with 0xC000-0xCFFF (PS3.4 B.2.3 'Error: cannot
    understand'; the contract says 0xC000) and store nothing, not a half object; instances stored
    earlier on the same association stay, and the association still carries the next C-STORE.

    Two places are broken: after the identifying UIDs (a PACS that only looks for the UIDs would
    accept a truncated object) and before them."""
    study_uid, series_uid = generate_uid(), generate_uid()
    good = [tmp_path / f"good{i}.dcm" for i in range(3)]
    good_uids = [write_ct(path, study_uid, series_uid, i + 1) for i, path in enumerate(good)]
    broken = tmp_path / "broken.dcm"
    broken_uid = write_ct(broken, study_uid, series_uid, 99)
    break_element_length(broken, tag, vr)

    ae = AE(ae_title="STORESCU")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    cursor = LogCursor(pacs_node)
    assoc = ae.associate("127.0.0.1", pacs_node.dicom_port, ae_title=pacs_node.ae_title)
    assert assoc.is_established, "STORESCU could not associate with the PACS"
    try:
        before = [assoc.send_c_store(path) for path in good[:2]]
        bad = assoc.send_c_store(broken)
        after = assoc.send_c_store(good[2])
    finally:
        if assoc.is_established:
            assoc.release()

    assert [int(s.Status) for s in before] == [0, 0], "valid instances were not stored"
    assert "Status" in bad, "no C-STORE response for the broken dataset (association dropped?)"
    bad_status = int(bad.Status)
    assert 0xC000 <= bad_status <= 0xCFFF, (
        f"broken dataset answered 0x{bad_status:04X}; expected 0xC000-0xCFFF (cannot understand)"
    )
    assert "Status" in after and int(after.Status) == 0, (
        "the association did not carry a valid C-STORE after the failed one"
    )

    detail = pacs_node.admin.get(f"/studies/{path_part(study_uid)}")
    listed = strings_in(detail)
    assert set(good_uids) <= listed, "instances stored on the association are missing"
    assert broken_uid not in listed, "the broken instance is in the index"
    holders = files_holding(pacs_node.data_dir, broken_uid.encode())
    assert holders == [], f"bytes of the broken instance were kept on disk: {holders}"
    for uid in good_uids:
        assert files_holding(pacs_node.data_dir / "objects", uid.encode()), f"no file for {uid}"
    cursor.wait_for(
        lambda line: (
            bool(WARNING_OR_WORSE.search(line))
            and (
                broken_uid in line
                or re.search(r"0x?C[0-9A-F]{3}\b|cannot understand", line, re.IGNORECASE)
                is not None
            )
        ),
        "the refused C-STORE (its SOP Instance UID or its 0xCxxx status)",
    )
    assert_serves(pacs_node, "a C-STORE with a broken element")


@requires_dcmtk
@pytest.mark.dcmtk
def test_dcmtk_echoscu_after_a_burst_of_bad_input(pacs_node: RunningNode) -> None:
    """A mix of every bad input above in quick succession, then DCMTK's echoscu (an independent
    implementation) still gets an association and a Success C-ECHO."""
    inputs = [
        b"GET / HTTP/1.1\r\nHost: pacs\r\n\r\n",
        struct.pack(">BBI", 0x09, 0, 0),
        p_data_tf(1, b"\x01" * 20),
        associate_rq(pacs_node.ae_title, "ECHOSCU")[:40],
        struct.pack(">BBI", PDU_ASSOCIATE_RQ, 0, 0xFFFFFFFF) + bytes(4096),
    ]
    for payload in inputs:
        with connect(pacs_node) as sock:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)
            read_until_closed(sock)
    result = subprocess.run(
        [
            *("echoscu", "-v", "-aet", "ECHOSCU", "-aec", pacs_node.ae_title),
            *("-to", "10", "-ta", "10", "-td", "10", "127.0.0.1", str(pacs_node.dicom_port)),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Received Echo Response (Success)" in result.stdout + result.stderr


# === admin API ===================================================================================


@pytest.fixture(scope="module")
def admin_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    """One PACS shared by the admin API tests (they are many and each starts nothing): every
    test checks that the config is unchanged and the node serves, so a test that broke the
    shared node fails itself rather than hiding behind the next one."""
    node = start_pacs(tmp_path_factory.mktemp("admin-bad-input") / "pacs")
    try:
        yield node
    finally:
        node.stop()


def admin_token(node: RunningNode) -> str:
    """The lab's admin token, read from the node directory as an administrator would."""
    return (node.node_dir / node.config.admin.token_file).read_text(encoding="utf-8").strip()


def raw_admin(
    node: RunningNode,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    token: str | None = "valid",
) -> tuple[int, dict[str, Any]]:
    """One HTTP request with full control over headers and body; returns (status, JSON)."""
    port = int(node.admin.base_url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        all_headers = {"Content-Type": "application/json"}
        if token == "valid":
            all_headers["Authorization"] = f"Bearer {admin_token(node)}"
        elif token is not None:
            all_headers["Authorization"] = token
        all_headers |= headers or {}
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        raw = response.read()
        return response.status, (json.loads(raw) if raw else {})
    finally:
        conn.close()


def config_snapshot(node: RunningNode) -> tuple[dict[str, Any], bytes]:
    """The config in force (GET /config) and the config file's bytes."""
    return node.admin.get("/config"), node.config_path.read_bytes()


@pytest.mark.parametrize(
    ("token", "label"),
    [
        (None, "missing"),
        ("Bearer wrong-token-0123456789abcdef", "wrong"),
        ("Bearer ", "empty"),
        ("Basic dXNlcjpwYXNz", "basic-scheme"),
    ],
)
def test_admin_without_valid_token_is_401_and_changes_nothing(
    admin_node: RunningNode, token: str | None, label: str
) -> None:
    """No token, a wrong one, an empty one or another auth scheme: 401 on reads and on writes,
    and a write does not change the config in force or on disk."""
    config_before, file_before = config_snapshot(admin_node)
    status, _ = raw_admin(admin_node, "GET", "/config", token=token)
    assert status == 401
    body = json.dumps({"dicom": {"ae_title": "HIJACKED"}}).encode()
    status, answer = raw_admin(admin_node, "PATCH", "/config", body=body, token=token)
    assert status == 401, answer
    assert config_snapshot(admin_node) == (config_before, file_before)
    assert_serves(admin_node, f"an admin request with a {label} token")


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"dicom": {"port": 1', b"\xff\xfe\x00", b"[1, 2]", b'"text"'],
    ids=["syntax", "truncated", "not-utf8", "array", "string"],
)
def test_admin_bad_json_is_400(admin_node: RunningNode, body: bytes) -> None:
    """A body that is not JSON, or not a JSON object where one is required, is 400 and changes
    nothing."""
    config_before, file_before = config_snapshot(admin_node)
    status, answer = raw_admin(admin_node, "PATCH", "/config", body=body)
    assert status == 400, answer
    assert "error" in answer
    assert config_snapshot(admin_node) == (config_before, file_before)
    assert_serves(admin_node, f"bad JSON {body[:12]!r} on PATCH /config")


def test_admin_body_over_limit_announced_is_413(admin_node: RunningNode) -> None:
    """A Content-Length above the limit (16 MiB) is refused before the body is read: 413 and
    the connection closed, so a client cannot make the node buffer a huge body."""
    port = int(admin_node.admin.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"PUT /config HTTP/1.1\r\nHost: pacs\r\n"
            + f"Authorization: Bearer {admin_token(admin_node)}\r\n".encode()
            + b"Content-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n"
        )
        response = read_until_closed(sock, timeout=10)
    status_line = response.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 413"), response[:200]
    assert_serves(admin_node, "an admin request announcing a 1 GiB body")
    assert admin_node.admin.health()["status"] == "ok"


def test_admin_body_over_limit_sent_is_413_or_closed(admin_node: RunningNode) -> None:
    """Actually sending 17 MiB: the node answers 413 or closes the connection (it does not read
    the body); either way it keeps serving and the config is unchanged."""
    config_before, file_before = config_snapshot(admin_node)
    port = int(admin_node.admin.base_url.rsplit(":", 1)[1])
    size = 17 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"PATCH /config HTTP/1.1\r\nHost: pacs\r\n"
            + f"Authorization: Bearer {admin_token(admin_node)}\r\n".encode()
            + f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n".encode()
        )
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b" " * size)
        try:
            response = read_until_closed(sock, timeout=10)
        except ConnectionResetError:
            response = b""
    assert response == b"" or response.startswith(b"HTTP/1.1 413"), response[:200]
    assert config_snapshot(admin_node) == (config_before, file_before)
    assert_serves(admin_node, "a 17 MiB admin request body")


INVALID_CONFIG_PATCHES = [
    pytest.param({"dicom": {"ae_title": "A" * 20}}, "dicom.ae_title", id="ae-title-20-chars"),
    pytest.param({"dicom": {"ae_title": "BAD\\AE"}}, "dicom.ae_title", id="ae-title-backslash"),
    pytest.param({"dicom": {"port": 0}}, "dicom.port", id="port-0"),
    pytest.param({"dicom": {"port": 70000}}, "dicom.port", id="port-70000"),
    pytest.param({"dicom": {"colour": "blue"}}, "dicom.colour", id="unknown-dicom-key"),
    pytest.param({"no_such_setting": 1}, "no_such_setting", id="unknown-top-level-key"),
    pytest.param(
        {"ae_table": [{"ae_title": "B" * 20, "port": 104}]},
        "ae_table.0.ae_title",
        id="ae-table-title-20-chars",
    ),
    pytest.param(
        {"storage": {"duplicate_policy": "shred"}},
        "storage.duplicate_policy",
        id="unknown-duplicate-policy",
    ),
]


@pytest.mark.parametrize(("patch", "field"), INVALID_CONFIG_PATCHES)
def test_admin_invalid_config_is_422_naming_the_field(
    admin_node: RunningNode, patch: dict[str, Any], field: str
) -> None:
    """An invalid change is 422 with the offending field named (so the console can point at
    it), and the config in force and on disk stays exactly as it was: no half-applied change."""
    config_before, file_before = config_snapshot(admin_node)
    with pytest.raises(AdminApiError) as err:
        admin_node.admin.patch("/config", patch)
    assert err.value.status == 422, err.value
    locations = [d.get("loc") for d in err.value.detail or []]
    assert field in locations, f"422 detail names {locations}, not {field!r}"
    assert config_snapshot(admin_node) == (config_before, file_before)
    assert_serves(admin_node, f"an invalid config change ({field})")


def test_admin_invalid_put_config_and_ae_entry_are_422(admin_node: RunningNode) -> None:
    """The same rules hold for PUT /config (a whole config) and PUT /ae-table/{title}."""
    config_before, file_before = config_snapshot(admin_node)
    whole = json.loads(json.dumps(config_before))
    whole["dicom"]["ae_title"] = "X" * 20
    with pytest.raises(AdminApiError) as err:
        admin_node.admin.put("/config", whole)
    assert err.value.status == 422
    assert "dicom.ae_title" in [d.get("loc") for d in err.value.detail or []]
    with pytest.raises(AdminApiError) as err:
        admin_node.admin.put(f"/ae-table/{'M' * 20}", {"host": "127.0.0.1", "port": 104})
    assert err.value.status == 422
    assert "ae_title" in [d.get("loc") for d in err.value.detail or []]
    with pytest.raises(AdminApiError) as err:
        admin_node.admin.put("/ae-table/CT1", {"host": "127.0.0.1", "port": 0})
    assert err.value.status == 422
    assert "port" in [d.get("loc") for d in err.value.detail or []]
    assert config_snapshot(admin_node) == (config_before, file_before)
    assert_serves(admin_node, "invalid PUT /config and PUT /ae-table")


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/no-such-endpoint", 404),
        ("GET", "/studies/1.2.3/extra", 404),
        ("GET", "/..%2F..%2Fetc%2Fpasswd", 404),
        ("DELETE", "/config", 405),
        ("POST", "/health", 405),
        ("PATCH", "/studies", 405),
    ],
)
def test_admin_unknown_path_404_wrong_method_405(
    admin_node: RunningNode, method: str, path: str, expected: int
) -> None:
    """Unknown endpoints are 404 and a known endpoint with the wrong method is 405, with a JSON
    error; neither touches the config."""
    config_before, file_before = config_snapshot(admin_node)
    status, answer = raw_admin(admin_node, method, path, body=b"{}" if method != "GET" else None)
    assert status == expected, answer
    assert "error" in answer
    assert config_snapshot(admin_node) == (config_before, file_before)
    assert_serves(admin_node, f"{method} {path}")


@pytest.mark.parametrize(
    ("method", "path", "body", "token", "expected", "pattern"),
    [
        ("GET", "/config", None, "Bearer wrong-token-0123456789ab", 401, r"401|token|auth"),
        ("PATCH", "/config", b"{not json", "valid", 400, r"400|json"),
        ("PATCH", "/config", b'{"dicom": {"port": 0}}', "valid", 422, r"dicom\.port"),
        ("GET", "/no-such-endpoint", None, "valid", 404, r"/no-such-endpoint"),
        ("DELETE", "/config", None, "valid", 405, r"405|DELETE"),
    ],
    ids=["401", "400", "422", "404", "405"],
)
def test_admin_rejections_are_logged(
    admin_node: RunningNode,
    method: str,
    path: str,
    body: bytes | None,
    token: str,
    expected: int,
    pattern: str,
) -> None:
    """Each refused admin request leaves a line in the node log: failed authentication is a
    security event (CPSA section 8), a refused config change is what an instructor looks for
    when a trainee says 'I changed it but nothing happened'."""
    cursor = LogCursor(admin_node)
    status, _ = raw_admin(admin_node, method, path, body=body, token=token)
    assert status == expected
    cursor.wait_for_regex(
        pattern, f"the refused admin request {method} {path} ({status})", warning=False
    )
