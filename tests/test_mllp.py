"""MLLP server and client against real loopback sockets: framing, several messages per
connection, oversize, garbage, unframed data, idle timeout, graceful stop, client errors."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from simlab.common.mllp import (
    FrameDecoder,
    FramingError,
    MllpConnection,
    MllpConnectionError,
    MllpError,
    MllpLimits,
    MllpServer,
    MllpTimeoutError,
    OversizeError,
    frame,
    send_message,
)
from simlab.runtime.ports import free_ports

HL7 = b"MSH|^~\\&|RIS|HOSP|PACS|RAD|20240101||ADT^A01|C1|P|2.5\rPID|1||P1\r"
MAX_BYTES = 2048
IDLE_S = 0.4
WAIT_S = 5.0


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@dataclass
class Harness:
    """A running MllpServer with a recording handler and its captured log."""

    server: MllpServer
    log: _ListHandler
    received: list[bytes] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.address[1]

    def logged(self, text: str) -> bool:
        return any(text in line for line in self.log.lines)

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT_S)
        sock.settimeout(WAIT_S)
        return sock


def _reply_for(message: bytes) -> bytes:
    return b"ACK|" + message.split(b"\r", 1)[0][-20:]


def _make_harness(
    limits: MllpLimits, handler: Callable[[bytes, str], bytes] | None = None, **kwargs
) -> Harness:
    logger = logging.getLogger(f"test-mllp-{os.urandom(4).hex()}")
    logger.propagate = False
    capture = _ListHandler()
    logger.addHandler(capture)
    logger.setLevel(logging.INFO)
    harness = Harness(server=None, log=capture)  # type: ignore[arg-type]

    def record(message: bytes, peer: str) -> bytes:
        harness.received.append(message)
        return _reply_for(message)

    harness.server = MllpServer(
        "127.0.0.1", 0, handler or record, logger, limits=lambda: limits, name="TEST", **kwargs
    )
    harness.server.start()
    return harness


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = _make_harness(MllpLimits(max_message_bytes=MAX_BYTES, idle_timeout=IDLE_S))
    try:
        yield h
    finally:
        h.server.stop()


def read_frame(sock: socket.socket, count: int = 1) -> bytes:
    """Read `count` complete framed replies (raw, framing included)."""
    data = b""
    deadline = time.monotonic() + WAIT_S
    while data.count(b"\x1c\x0d") < count:
        assert time.monotonic() < deadline, f"no complete frame, got {data!r}"
        chunk = sock.recv(4096)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def assert_closed_by_server(sock: socket.socket) -> None:
    """The server closed the connection: EOF or reset, not a timeout."""
    sock.settimeout(WAIT_S)
    deadline = time.monotonic() + WAIT_S
    try:
        while time.monotonic() < deadline:
            if not sock.recv(4096):
                return
    except ConnectionResetError:
        return
    except TimeoutError:
        pytest.fail("the server kept the connection open")
    pytest.fail("the server kept sending instead of closing")


def send_quietly(sock: socket.socket, data: bytes) -> None:
    """Send what the server may refuse midway (it closes on bad input)."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(data)


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# -- the decoder alone -------------------------------------------------------------------------


def test_decoder_reassembles_a_frame_fed_byte_by_byte() -> None:
    decoder = FrameDecoder(MAX_BYTES)
    stream = frame(HL7) + frame(b"MSH|2")
    out: list[bytes] = []
    for i in range(len(stream)):
        out += decoder.feed(stream[i : i + 1])
    assert out == [HL7, b"MSH|2"]
    assert not decoder.in_message


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (b"MSH|^~\\&|", "before the start block"),
        (b"\x0bMSH|a\x0bMSH|b\x1c\x0d", "cut off"),
        (b"\x0bMSH|a\x1cX", "instead of 0x0D"),
    ],
)
def test_decoder_rejects_broken_framing(stream: bytes, expected: str) -> None:
    with pytest.raises(FramingError, match=expected):
        FrameDecoder(MAX_BYTES).feed(stream)


def test_decoder_rejects_oversize_before_the_end_block() -> None:
    decoder = FrameDecoder(100)
    decoder.feed(b"\x0b" + b"x" * 100)
    with pytest.raises(OversizeError, match="max_message_bytes=100"):
        decoder.feed(b"y")


# -- the server --------------------------------------------------------------------------------


def test_reply_is_framed_exactly(harness: Harness) -> None:
    with harness.connect() as sock:
        sock.sendall(frame(HL7))
        assert read_frame(sock) == b"\x0b" + _reply_for(HL7) + b"\x1c\x0d"
    assert harness.received == [HL7]


def test_several_messages_on_one_connection_in_order(harness: Harness) -> None:
    messages = [HL7.replace(b"C1", f"C{i}".encode()) for i in range(5)]
    with MllpConnection("127.0.0.1", harness.port, timeout=WAIT_S) as conn:
        replies = [conn.send(m) for m in messages]
    assert replies == [_reply_for(m) for m in messages]
    assert harness.received == messages


def test_pipelined_and_split_frames(harness: Harness) -> None:
    """Two frames in one write, then one frame cut between 0x1C and 0x0D: three replies."""
    second = HL7.replace(b"C1", b"C2")
    third = HL7.replace(b"C1", b"C3")
    with harness.connect() as sock:
        sock.sendall(frame(HL7) + frame(second))
        assert read_frame(sock, 2) == frame(_reply_for(HL7)) + frame(_reply_for(second))
        raw = frame(third)
        sock.sendall(raw[:-1])
        assert wait_until(lambda: len(harness.received) == 2)
        sock.sendall(raw[-1:])
        assert read_frame(sock) == frame(_reply_for(third))
    assert harness.received == [HL7, second, third]


def test_oversize_message_closes_connection_and_listener_keeps_serving(harness: Harness) -> None:
    with harness.connect() as sock:
        send_quietly(sock, b"\x0b" + b"MSH|" + b"x" * (MAX_BYTES + 10))
        assert_closed_by_server(sock)
    assert harness.logged(f"max_message_bytes={MAX_BYTES}")
    assert send_message("127.0.0.1", harness.port, HL7, timeout=WAIT_S) == _reply_for(HL7)
    assert harness.received == [HL7]


@pytest.mark.parametrize(
    ("data", "log_text"),
    [
        pytest.param(
            os.urandom(64).replace(b"\x0b", b"\x00"), "before the start block", id="garbage"
        ),
        pytest.param(HL7, "before the start block", id="unframed-hl7"),
        pytest.param(
            b"\x0bGET / HTTP/1.1\r\n\r\n\x1c\x0d", "not an HL7 message", id="framed-non-hl7"
        ),
        pytest.param(b"\x0bMSH|^~\\&|cut\x0b" + HL7 + b"\x1c\x0d", "cut off", id="cut-off"),
        pytest.param(b"\x0b" + HL7 + b"\x1c\n", "instead of 0x0D", id="bad-trailer"),
    ],
)
def test_broken_input_closes_only_that_connection(
    harness: Harness, data: bytes, log_text: str
) -> None:
    with harness.connect() as bystander, harness.connect() as sock:
        send_quietly(sock, data)
        assert_closed_by_server(sock)
        assert harness.logged(log_text), harness.log.lines
        bystander.sendall(frame(HL7))  # an innocent connection is untouched
        assert read_frame(bystander) == frame(_reply_for(HL7))
    assert harness.received == [HL7]


def test_message_cut_off_by_peer_close_is_logged_not_handled(harness: Harness) -> None:
    with harness.connect() as sock:
        sock.sendall(b"\x0b" + HL7[:20])
    assert wait_until(lambda: harness.logged("in the middle of a message (20 bytes"))
    assert harness.received == []


def test_idle_connection_is_closed(harness: Harness) -> None:
    with harness.connect() as sock:
        started = time.monotonic()
        assert_closed_by_server(sock)
        elapsed = time.monotonic() - started
    assert IDLE_S * 0.8 <= elapsed < WAIT_S
    assert wait_until(lambda: harness.logged(f"idle for {IDLE_S:g}s"))


def test_activity_keeps_a_connection_open_past_the_idle_timeout(harness: Harness) -> None:
    with MllpConnection("127.0.0.1", harness.port, timeout=WAIT_S) as conn:
        deadline = time.monotonic() + IDLE_S * 2.5
        sent = 0
        while time.monotonic() < deadline:
            assert conn.send(HL7) == _reply_for(HL7)
            sent += 1
            time.sleep(IDLE_S / 4)  # pacing below the idle timeout is the point of the test
    assert len(harness.received) == sent


def test_handler_error_closes_without_ack_and_server_survives() -> None:
    def handler(message: bytes, _peer: str) -> bytes:
        if b"BOOM" in message:
            raise RuntimeError("boom")
        return _reply_for(message)

    h = _make_harness(MllpLimits(MAX_BYTES, IDLE_S), handler)
    try:
        with pytest.raises(MllpConnectionError, match="before the ACK"):
            send_message("127.0.0.1", h.port, HL7 + b"BOOM", timeout=WAIT_S)
        assert h.logged("handler failed")
        assert send_message("127.0.0.1", h.port, HL7, timeout=WAIT_S) == _reply_for(HL7)
    finally:
        h.server.stop()


def test_connections_beyond_the_limit_are_refused() -> None:
    h = _make_harness(MllpLimits(MAX_BYTES, WAIT_S), max_connections=1)
    try:
        with h.connect() as first:
            first.sendall(frame(HL7))
            read_frame(first)  # the first connection is being served
            with h.connect() as second:
                assert_closed_by_server(second)
            assert h.logged("connections already open")
            first.sendall(frame(HL7))
            assert read_frame(first) == frame(_reply_for(HL7))
    finally:
        h.server.stop()


def test_stop_lets_a_message_in_flight_get_its_ack() -> None:
    entered, release = threading.Event(), threading.Event()

    def slow(message: bytes, _peer: str) -> bytes:
        entered.set()
        release.wait(WAIT_S)
        return _reply_for(message)

    h = _make_harness(MllpLimits(MAX_BYTES, WAIT_S), slow)
    replies: list[bytes | Exception] = []

    def client() -> None:
        try:
            replies.append(send_message("127.0.0.1", h.port, HL7, timeout=WAIT_S))
        except MllpError as exc:
            replies.append(exc)

    sender = threading.Thread(target=client)
    sender.start()
    assert entered.wait(WAIT_S)
    stopper = threading.Thread(target=h.server.stop)
    stopper.start()
    release.set()
    stopper.join(WAIT_S)
    sender.join(WAIT_S)
    assert replies == [_reply_for(HL7)]
    assert not h.server.running
    with pytest.raises(MllpConnectionError, match="refused"):
        send_message("127.0.0.1", h.port, HL7, timeout=WAIT_S)


def test_server_restarts_on_the_same_port(harness: Harness) -> None:
    port = harness.port
    harness.server.stop()
    restarted = MllpServer(
        "127.0.0.1", port, lambda m, _p: _reply_for(m), logging.getLogger("test-mllp-restart")
    )
    restarted.start()
    try:
        assert send_message("127.0.0.1", port, HL7, timeout=WAIT_S) == _reply_for(HL7)
    finally:
        restarted.stop()


def test_bind_conflict_raises_oserror(harness: Harness) -> None:
    other = MllpServer(
        "127.0.0.1", harness.port, lambda m, _p: m, logging.getLogger("test-mllp-conflict")
    )
    with pytest.raises(OSError):
        other.start()


# -- the client --------------------------------------------------------------------------------


def test_client_reports_connection_refused() -> None:
    (port,) = free_ports(1)
    with pytest.raises(MllpConnectionError, match="connection refused"):
        send_message("127.0.0.1", port, HL7, timeout=WAIT_S)


def test_client_reports_timeout_waiting_for_ack() -> None:
    """A listener that never answers (its backlog completes the TCP handshake)."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(MllpTimeoutError, match="timeout waiting for ACK"):
            send_message("127.0.0.1", port, HL7, timeout=0.3)
        assert time.monotonic() - started < WAIT_S


def test_client_rejects_an_unframed_reply() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def answer_badly() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"MSA|AA|C1\r")

        thread = threading.Thread(target=answer_badly)
        thread.start()
        with pytest.raises(MllpError, match="not MLLP framed"):
            send_message("127.0.0.1", port, HL7, timeout=WAIT_S)
        thread.join(WAIT_S)
