"""MLLP: the Minimal Lower Layer Protocol that carries HL7 v2 messages over TCP.

HL7 v2.5.1 Appendix C (MLLP release 2 transport) frames every message as
``0x0B <message> 0x1C 0x0D``; a connection carries any number of messages, each answered by one
framed acknowledgement. This module has no HL7 knowledge beyond "a message starts with MSH": the
PACS and the RIS both use the same server and client, and give the server a callback that turns
one inbound message into the bytes of its ACK.

A receiver that meets broken framing cannot find the next message boundary again, so it logs one
line an administrator can act on ("12 bytes before the start block ...") and closes that
connection; the listener keeps serving everyone else.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

START_BLOCK = b"\x0b"
"""<VT>, the first byte of every MLLP frame."""
END_BLOCK = b"\x1c"
"""<FS>, the first byte of the frame trailer."""
CARRIAGE_RETURN = b"\x0d"
"""<CR>, the byte that must follow <FS>."""

DEFAULT_MAX_MESSAGE_BYTES = 1_048_576
DEFAULT_IDLE_TIMEOUT = 60.0
DEFAULT_MAX_CONNECTIONS = 32
_RECV_BYTES = 65_536
_PREVIEW_BYTES = 40

MessageHandler = Callable[[bytes, str], bytes]
"""Turns one inbound message (frame content) and the peer ("host:port") into the ACK bytes."""


def frame(message: bytes) -> bytes:
    """Wrap one message in the MLLP start block and trailer."""
    return START_BLOCK + message + END_BLOCK + CARRIAGE_RETURN


BROKEN_FRAMINGS = {
    "no_end_block": lambda m: START_BLOCK + m,
    "no_start_block": lambda m: m + END_BLOCK + CARRIAGE_RETURN,
    "lf_end": lambda m: START_BLOCK + m + END_BLOCK + b"\n",
}
"""Framings a misconfigured sender produces (lab faults): the trailer missing (the receiver
waits, the sender times out waiting for the ACK), the start block missing, 0x1C then LF."""


def frame_as(message: bytes, framing: str = "mllp") -> bytes:
    """Frame one message as `framing` says: `mllp`, or one of BROKEN_FRAMINGS."""
    if framing == "mllp":
        return frame(message)
    try:
        return BROKEN_FRAMINGS[framing](message)
    except KeyError:
        raise ValueError(f"unknown framing {framing!r}") from None


def preview(data: bytes, limit: int = _PREVIEW_BYTES) -> str:
    """A short printable rendering of raw bytes for a log line (control bytes escaped)."""
    shown = repr(bytes(data[:limit]))
    return shown + ("..." if len(data) > limit else "")


def looks_like_hl7(payload: bytes) -> bool:
    """True when frame content can be an HL7 v2 message: it starts with an MSH segment.

    Batches (FHS/BHS) are not carried by simlab, so they count as not HL7 here.
    """
    return payload.startswith(b"MSH") and len(payload) >= 8


class FramingError(ValueError):
    """The byte stream broke MLLP framing; the connection cannot find the next message."""


class OversizeError(FramingError):
    """A message grew beyond the configured maximum before its end block arrived."""


class _State(Enum):
    OUTSIDE = "outside"
    INSIDE = "inside"
    AFTER_END_BLOCK = "after_end_block"


class FrameDecoder:
    """Incremental MLLP decoder: feed it received bytes, get whole messages back.

    Strict on purpose: a byte before the start block, a start block inside a message (the
    previous one was cut off), or an end block not followed by CR all raise FramingError, because
    a lab fault "broken MLLP framing" must show as it does on a real interface engine.

    Args:
        max_message_bytes: Largest message content accepted; beyond it OversizeError.
    """

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.max_message_bytes = max_message_bytes
        self._buffer = bytearray()
        self._state = _State.OUTSIDE

    @property
    def pending_bytes(self) -> int:
        """Bytes of a message started but not finished (0 between messages)."""
        return 0 if self._state is _State.OUTSIDE else len(self._buffer)

    @property
    def in_message(self) -> bool:
        """True after a start block until its trailer is complete."""
        return self._state is not _State.OUTSIDE

    def feed(self, data: bytes) -> list[bytes]:
        """Consume received bytes; return the messages they complete (possibly none).

        Raises:
            OversizeError: the current message exceeds max_message_bytes.
            FramingError: the bytes break MLLP framing.
        """
        messages: list[bytes] = []
        pos = 0
        # Every branch advances pos by at least one byte, so the loop ends after len(data) turns.
        while pos < len(data):
            if self._state is _State.OUTSIDE:
                pos = self._expect_start(data, pos)
            elif self._state is _State.INSIDE:
                pos = self._take_content(data, pos)
            else:
                pos = self._expect_cr(data, pos, messages)
        return messages

    def _expect_start(self, data: bytes, pos: int) -> int:
        if data[pos : pos + 1] != START_BLOCK:
            stray = data[pos:]
            raise FramingError(
                f"{len(stray)} byte(s) before the start block 0x0B: {preview(stray)}"
                " (message not MLLP framed?)"
            )
        self._state = _State.INSIDE
        self._buffer.clear()
        return pos + 1

    def _take_content(self, data: bytes, pos: int) -> int:
        end = data.find(END_BLOCK, pos)
        stop = len(data) if end < 0 else end
        chunk = data[pos:stop]
        if START_BLOCK in chunk:
            cut = len(self._buffer) + chunk.index(START_BLOCK)
            raise FramingError(
                f"start block 0x0B inside a message after {cut} bytes: the previous message was"
                " cut off before its end block 0x1C 0x0D"
            )
        self._buffer += chunk
        if len(self._buffer) > self.max_message_bytes:
            raise OversizeError(
                f"message larger than max_message_bytes={self.max_message_bytes}"
                f" ({len(self._buffer)} bytes received without an end block)"
            )
        if end < 0:
            return len(data)
        self._state = _State.AFTER_END_BLOCK
        return end + 1

    def _expect_cr(self, data: bytes, pos: int, messages: list[bytes]) -> int:
        if data[pos : pos + 1] != CARRIAGE_RETURN:
            raise FramingError(
                f"end block 0x1C followed by {preview(data[pos : pos + 1])} instead of 0x0D"
            )
        messages.append(bytes(self._buffer))
        self._buffer.clear()
        self._state = _State.OUTSIDE
        return pos + 1


@dataclass(frozen=True)
class MllpLimits:
    """Per-connection limits, read again for every receive so an admin change applies live."""

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    """Largest message accepted; a bigger one is logged and its connection closed."""
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    """Seconds a silent connection is kept open."""


class MllpServer:
    """A threaded MLLP listener: one thread per connection, at most `max_connections`.

    Each framed message is passed to `handler`, whose return value is sent back framed. A handler
    that raises gets its connection closed (no ACK, so the sender keeps and resends the message);
    the listener goes on serving.

    Args:
        host: Bind address.
        port: TCP port (0 picks a free one; see `address`).
        handler: Callback turning (message bytes, peer) into ACK bytes.
        logger: Where connection events and framing errors are logged.
        limits: The limits, or a callable returning the limits in force now.
        max_connections: Concurrent connections; more are accepted and closed at once.
        name: Label used in log lines, e.g. "HL7".
    """

    def __init__(
        self,
        host: str,
        port: int,
        handler: MessageHandler,
        logger: logging.Logger,
        *,
        limits: MllpLimits | Callable[[], MllpLimits] = MllpLimits(),
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        name: str = "MLLP",
    ) -> None:
        self._host = host
        self._port = port
        self._handler = handler
        self._logger = logger
        self._limits = limits if callable(limits) else (lambda: limits)
        self._max_connections = max_connections
        self._name = name
        self._listener: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the real port when constructed with port 0."""
        if self._listener is None:
            return (self._host, self._port)
        host, port = self._listener.getsockname()[:2]
        return (host, port)

    @property
    def running(self) -> bool:
        """True while the listener accepts connections."""
        return self._accept_thread is not None and self._accept_thread.is_alive()

    @property
    def connection_count(self) -> int:
        """Connections open now."""
        with self._lock:
            return len(self._connections)

    def start(self) -> None:
        """Bind and start accepting. Raises OSError (e.g. EADDRINUSE) synchronously."""
        if self._listener is not None:
            raise RuntimeError(f"{self._name} listener already started")
        self._stopping.clear()
        self._listener = socket.create_server((self._host, self._port), backlog=64)
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"{self._name}-accept", daemon=True
        )
        self._accept_thread.start()
        host, port = self.address
        self._logger.info("%s MLLP listener on %s:%d", self._name, host, port)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, let messages in flight get their ACK, then close every connection.

        Reading is shut down first (a blocked receive returns at once) so a handler that is
        processing a message can still send its ACK; what is left after `timeout` is closed.
        """
        if self._listener is None:
            return
        self._stopping.set()
        if self._wake_w is not None:
            self._wake_w.send(b"x")
        if self._accept_thread is not None:
            self._accept_thread.join(timeout)
        self._close_listener()
        with self._lock:
            open_connections = dict(self._connections)
        for sock in open_connections:
            _shutdown(sock, socket.SHUT_RD)
        deadline = time.monotonic() + timeout
        for sock, thread in open_connections.items():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                _shutdown(sock, socket.SHUT_RDWR)
        self._logger.info("%s MLLP listener stopped", self._name)

    def _close_listener(self) -> None:
        for sock in (self._listener, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        if self._selector is not None:
            self._selector.close()
        self._listener = self._selector = self._wake_r = self._wake_w = None
        self._accept_thread = None

    def _accept_loop(self) -> None:
        """Accept until stop() wakes the selector; an accept error backs off briefly."""
        selector, listener = self._selector, self._listener
        assert selector is not None and listener is not None
        while not self._stopping.is_set():
            for key, _mask in selector.select():
                if key.fileobj is not listener:
                    return
                try:
                    conn, addr = listener.accept()
                except OSError as exc:  # e.g. EMFILE: too many open files
                    self._logger.warning("%s MLLP accept failed: %s", self._name, exc)
                    self._stopping.wait(0.2)
                    continue
                self._admit(conn, f"{addr[0]}:{addr[1]}")

    def _admit(self, conn: socket.socket, peer: str) -> None:
        with self._lock:
            if len(self._connections) >= self._max_connections:
                full = True
            else:
                full = False
                thread = threading.Thread(
                    target=self._serve, args=(conn, peer), name=f"{self._name}-{peer}", daemon=True
                )
                self._connections[conn] = thread
        if full:
            self._logger.warning(
                "%s MLLP %s: refused, %d connections already open (limit)",
                self._name,
                peer,
                self._max_connections,
            )
            conn.close()
            return
        self._logger.info("%s MLLP connection from %s", self._name, peer)
        thread.start()

    def _serve(self, conn: socket.socket, peer: str) -> None:
        try:
            reason = self._serve_connection(conn, peer)
        except Exception:
            self._logger.exception("%s MLLP %s: unexpected error, closing", self._name, peer)
        else:
            self._logger.info("%s MLLP %s: %s", self._name, peer, reason)
        finally:
            with self._lock:
                self._connections.pop(conn, None)
            conn.close()

    def _serve_connection(self, conn: socket.socket, peer: str) -> str:
        """Read, decode and answer messages until the connection ends; return why it ended."""
        decoder = FrameDecoder()
        while not self._stopping.is_set():
            limits = self._limits()
            decoder.max_message_bytes = limits.max_message_bytes
            conn.settimeout(limits.idle_timeout)
            try:
                data = conn.recv(_RECV_BYTES)
            except TimeoutError:
                return self._idle_reason(decoder, limits.idle_timeout)
            except OSError as exc:
                return f"connection error ({exc}), closed"
            if not data:
                return self._closed_reason(decoder)
            try:
                messages = decoder.feed(data)
            except FramingError as exc:
                self._logger.warning("%s MLLP %s: %s; closing connection", self._name, peer, exc)
                return "closed after a framing error"
            for message in messages:
                if not self._answer(conn, peer, message):
                    return "closed"
        return "closed: listener stopping"

    def _answer(self, conn: socket.socket, peer: str, message: bytes) -> bool:
        """Hand one message to the handler and send its ACK; False when the connection ends."""
        if not looks_like_hl7(message):
            self._logger.warning(
                "%s MLLP %s: framed data is not an HL7 message (no MSH segment): %s;"
                " closing connection",
                self._name,
                peer,
                preview(message),
            )
            return False
        try:
            reply = self._handler(message, peer)
        except Exception:
            self._logger.exception(
                "%s MLLP %s: message handler failed, no ACK sent; closing", self._name, peer
            )
            return False
        try:
            conn.sendall(frame(reply))
        except OSError as exc:
            self._logger.warning(
                "%s MLLP %s: could not send the ACK (%s); closing", self._name, peer, exc
            )
            return False
        return True

    def _idle_reason(self, decoder: FrameDecoder, idle_timeout: float) -> str:
        if decoder.in_message:
            return (
                f"idle for {idle_timeout:g}s in the middle of a message"
                f" ({decoder.pending_bytes} bytes, no end block 0x1C 0x0D); closed"
            )
        return f"idle for {idle_timeout:g}s, closed"

    def _closed_reason(self, decoder: FrameDecoder) -> str:
        if self._stopping.is_set():
            return "closed: listener stopping"
        if decoder.in_message:
            return (
                f"closed by peer in the middle of a message ({decoder.pending_bytes} bytes,"
                " no end block 0x1C 0x0D)"
            )
        return "closed by peer"


def _shutdown(sock: socket.socket, how: int) -> None:
    with contextlib.suppress(OSError):  # already closed by the peer or by its own thread
        sock.shutdown(how)


class MllpError(Exception):
    """An MLLP exchange failed; the message says how, in words a sender's log can show."""


class MllpTimeoutError(MllpError, TimeoutError):
    """No complete ACK arrived in time (or the connection could not be made in time)."""


class MllpConnectionError(MllpError, ConnectionError):
    """The connection was refused, reset or closed before the ACK arrived."""


class MllpConnection:
    """A client connection that sends several messages in turn, each waiting for its ACK.

    After a timeout or an error the connection is closed: a late ACK could otherwise be taken
    for the answer to the next message.

    Args:
        host: Receiver's host.
        port: Receiver's MLLP port.
        timeout: Seconds to connect, and seconds to wait for each ACK.
        max_reply_bytes: Largest ACK accepted.
        framing: `mllp`, or a broken framing of BROKEN_FRAMINGS (a misconfigured sender).
    """

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float = 10.0,
        max_reply_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        framing: str = "mllp",
    ) -> None:
        frame_as(b"", framing)  # refuse an unknown framing now, not at the first send
        self.host = host
        self.port = port
        self.timeout = timeout
        self.framing = framing
        self._decoder = FrameDecoder(max_reply_bytes)
        self._replies: list[bytes] = []
        self._sock: socket.socket | None = None

    @property
    def peer(self) -> str:
        return f"{self.host}:{self.port}"

    def open(self) -> None:
        """Connect. Raises MllpConnectionError (refused, unreachable) or MllpTimeoutError."""
        try:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except ConnectionRefusedError:
            raise MllpConnectionError(
                f"connection refused by {self.peer} (no HL7 listener on this port?)"
            ) from None
        except TimeoutError:
            raise MllpTimeoutError(
                f"timeout connecting to {self.peer} after {self.timeout:g}s"
            ) from None
        except OSError as exc:
            raise MllpConnectionError(f"cannot connect to {self.peer}: {exc}") from None

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> MllpConnection:
        if self._sock is None:
            self.open()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def send(self, message: bytes) -> bytes:
        """Send one message and return its ACK (frame content).

        Raises:
            MllpTimeoutError: "timeout waiting for ACK" when no complete reply arrives in time.
            MllpConnectionError: the receiver closed or reset the connection first.
            MllpError: the reply broke MLLP framing.
        """
        if self._sock is None:
            self.open()
        sock = self._sock
        assert sock is not None
        try:
            sock.sendall(frame_as(message, self.framing))
            return self._read_reply(sock)
        except MllpError:
            self.close()
            raise
        except OSError as exc:
            self.close()
            raise MllpConnectionError(
                f"connection to {self.peer} failed before the ACK arrived: {exc}"
            ) from None

    def _read_reply(self, sock: socket.socket) -> bytes:
        deadline = time.monotonic() + self.timeout
        # Bounded by the deadline: each turn either returns, raises, or waits at most `remaining`.
        while not self._replies:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MllpTimeoutError(
                    f"timeout waiting for ACK from {self.peer} after {self.timeout:g}s"
                )
            sock.settimeout(remaining)
            try:
                data = sock.recv(_RECV_BYTES)
            except TimeoutError:
                continue
            if not data:
                raise MllpConnectionError(f"connection closed by {self.peer} before the ACK")
            try:
                self._replies.extend(self._decoder.feed(data))
            except FramingError as exc:
                raise MllpError(f"reply from {self.peer} is not MLLP framed: {exc}") from None
        return self._replies.pop(0)


def send_message(host: str, port: int, message: bytes, timeout: float = 10.0) -> bytes:
    """Send one HL7 message over a fresh connection and return the ACK (frame content).

    Raises:
        MllpTimeoutError: "timeout waiting for ACK ..." or a connect timeout.
        MllpConnectionError: connection refused, or closed before the ACK.
    """
    with MllpConnection(host, port, timeout) as connection:
        return connection.send(message)
