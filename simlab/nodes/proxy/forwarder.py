"""The TCP forwarder: one asyncio listener per link, two pumps per connection, toxics on the way.

Everything runs on one event loop in its own thread; the admin API (another thread) asks it to
re-read the config (`apply`) or for counters (`snapshot`) and waits for the answer, so a change
is in force when the admin call returns (a partitioned link refuses the very next connection).

Per connection:
* the upstream is dialled at once; when it refuses (or does not answer within
  `connect_timeout`), the client is reset (RST), as a router without a route would;
* a reader per direction queues chunks stamped with their arrival time; a writer applies the
  toxics in force *now* (so a toxic set or cleared live acts on connections in flight) and
  forwards them;
* a monitor ticks every 50 ms for what needs no data: a partition, a reset or a black hole's
  timer.
Every loop ends with its connection, its listener or the node; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from simlab.common.proxy_config import Direction, Link, ProxyConfig, ResetToxic, Toxic
from simlab.nodes.proxy.toxics import (
    ToxicRolls,
    active,
    first,
    latency_s,
    piece_pause_s,
    pieces,
)

T = TypeVar("T")

_TICK_S = 0.05
"""Monitor period: how late a timer-driven toxic (reset, timeout) or a partition may act."""
_HOUSEKEEPING_S = 2.0
"""Period of the re-check that binds a link whose port was busy before."""
_QUEUE_CHUNKS = 16
"""Chunks buffered per direction between reader and writer (back-pressure beyond it)."""
_CALL_TIMEOUT_S = 15.0


def _rst(writer: asyncio.StreamWriter | None) -> None:
    """Close with a TCP RST: SO_LINGER on with a zero timeout, then close (RFC 793 abort)."""
    if writer is None:
        return
    with contextlib.suppress(OSError, RuntimeError):
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError, RuntimeError):
        writer.transport.abort()


def _close(writer: asyncio.StreamWriter | None) -> None:
    """An orderly close (FIN after what is buffered)."""
    if writer is None:
        return
    with contextlib.suppress(OSError, RuntimeError):
        writer.close()


@dataclass
class LinkCounters:
    """What a network console shows per link."""

    connections: int = 0
    """Connections accepted since the node started."""
    bytes_upstream: int = 0
    """Bytes forwarded from clients to the upstream service."""
    bytes_downstream: int = 0
    """Bytes forwarded from the upstream service back to clients."""
    bytes_dropped: int = 0
    """Bytes swallowed by a black hole (timeout toxic)."""
    upstream_refused: int = 0
    """Connections reset because the upstream service refused or did not answer."""
    over_limit: int = 0
    """Connections reset because `max_connections` were already open."""
    resets: int = 0
    """Connections reset by a reset toxic."""
    cut: int = 0
    """Connections cut by a partition (link disabled or removed)."""
    limited: int = 0
    """Connections closed by a limit_data toxic."""


@dataclass(eq=False)
class _LinkState:
    name: str
    server: asyncio.AbstractServer | None = None
    bound: tuple[str, int] | None = None
    error: str = ""
    counters: LinkCounters = field(default_factory=LinkCounters)
    conns: set[_Connection] = field(default_factory=set)


class _Connection:
    """One client connection through a link and its upstream connection."""

    def __init__(
        self,
        proxy: Proxy,
        state: _LinkState,
        conn_id: int,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.proxy = proxy
        self.state = state
        self.conn_id = conn_id
        self.client_r, self.client_w = client
        self.upstream_w: asyncio.StreamWriter | None = None
        self.rolls = ToxicRolls(proxy.rng)
        self.sent: dict[str, int] = {"upstream": 0, "downstream": 0}
        self.armed: dict[str, float] = {}
        self.noted: set[tuple[str, str]] = set()
        self.closed = asyncio.Event()
        self.reason = ""
        self.started = time.monotonic()
        peer = self.client_w.get_extra_info("peername") or ("?", 0)
        self.peer = f"{peer[0]}:{peer[1]}"

    @property
    def tag(self) -> str:
        return f"link {self.state.name} #{self.conn_id}"

    def link(self) -> Link | None:
        return self.proxy.get_config().link(self.state.name)

    def toxics(self, direction: Direction) -> list[Toxic]:
        return active(self.link(), direction, self.rolls)

    def note(self, toxic: Toxic, direction: str, what: str) -> None:
        """Log once per connection that a toxic acted, so the node log explains the symptom."""
        key = (toxic.name, direction)
        if key not in self.noted:
            self.noted.add(key)
            self.proxy.logger.info(
                "%s: toxic %r (%s) %s %s", self.tag, toxic.name, toxic.type, what, direction
            )

    def finish(self, reason: str, *, rst_client: bool = False, rst_upstream: bool = False) -> None:
        """Close both sides (RST where asked) once; the first reason is the one logged."""
        if self.closed.is_set():
            return
        self.reason = reason
        (_rst if rst_client else _close)(self.client_w)
        (_rst if rst_upstream else _close)(self.upstream_w)
        self.closed.set()

    def reset(self, toxic: ResetToxic, why: str) -> None:
        """A reset toxic fires: RST towards the side(s) of its direction, FIN to the other."""
        self.state.counters.resets += 1
        self.finish(
            f"reset by toxic {toxic.name!r} ({why})",
            rst_client=toxic.direction in ("downstream", "both"),
            rst_upstream=toxic.direction in ("upstream", "both"),
        )

    async def run(self) -> None:
        cfg = self.proxy.get_config()
        link = cfg.link(self.state.name)
        if link is None:
            self.finish("link removed", rst_client=True)
            return
        try:
            up_r, self.upstream_w = await asyncio.wait_for(
                asyncio.open_connection(link.upstream_host, link.upstream_port),
                cfg.connect_timeout,
            )
        except (TimeoutError, OSError) as exc:
            self.state.counters.upstream_refused += 1
            why = "no answer" if isinstance(exc, asyncio.TimeoutError) else exc.strerror or exc
            self.proxy.logger.warning(
                "%s: upstream %s:%d unreachable (%s); client %s reset",
                self.tag,
                link.upstream_host,
                link.upstream_port,
                why,
                self.peer,
            )
            self.finish(f"upstream unreachable ({why})", rst_client=True)
            return
        self.proxy.logger.info(
            "%s: %s connected, upstream %s:%d",
            self.tag,
            self.peer,
            link.upstream_host,
            link.upstream_port,
        )
        tasks = [
            asyncio.create_task(self._pump(self.client_r, self.upstream_w, "upstream")),
            asyncio.create_task(self._pump(up_r, self.client_w, "downstream")),
            asyncio.create_task(self._monitor()),
        ]
        try:
            await self.closed.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------------ data pumps
    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, direction: Direction
    ) -> None:
        queue: asyncio.Queue[tuple[float, bytes] | str] = asyncio.Queue(maxsize=_QUEUE_CHUNKS)
        reader = asyncio.create_task(self._read(src, queue))
        try:
            await self._write(queue, dst, direction)
        except (OSError, ConnectionError) as exc:
            self.finish(f"{direction} write failed: {exc}", rst_client=True, rst_upstream=True)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read(
        self, src: asyncio.StreamReader, queue: asyncio.Queue[tuple[float, bytes] | str]
    ) -> None:
        chunk = self.proxy.get_config().chunk_bytes
        try:
            while True:
                data = await src.read(chunk)
                if not data:
                    break
                await queue.put((time.monotonic(), data))
        except (OSError, ConnectionError):
            # A reset drops what is in flight, as it does on a real path: pass it on at once.
            self.finish("peer reset", rst_client=True, rst_upstream=True)
            return
        await queue.put("eof")

    async def _write(
        self,
        queue: asyncio.Queue[tuple[float, bytes] | str],
        dst: asyncio.StreamWriter,
        direction: Direction,
    ) -> None:
        side = "client" if direction == "upstream" else "upstream"
        while True:
            item = await queue.get()
            toxics = self.toxics(direction)
            if isinstance(item, str):  # end of stream, after everything read before it
                slow = first(toxics, "slow_close")
                if slow is not None:
                    self.note(slow, direction, "delaying the close")
                    await asyncio.sleep(slow.delay_ms / 1000.0)  # type: ignore[union-attr]
                self.finish(f"{side} closed")
                return
            arrival, data = item
            hole = first(toxics, "timeout")
            if hole is not None:
                self.note(hole, direction, "swallows data")
                self.state.counters.bytes_dropped += len(data)
                continue
            latency = first(toxics, "latency")
            if latency is not None:
                self.note(latency, direction, "delays")
                wait = arrival + latency_s(latency, self.proxy.rng) - time.monotonic()  # type: ignore[arg-type]
                if wait > 0:
                    await asyncio.sleep(wait)
            data, cut = self._cut(data, toxics, direction)
            slicer = first(toxics, "slicer")
            bandwidth = first(toxics, "bandwidth")
            for toxic in (slicer, bandwidth):
                if toxic is not None:
                    self.note(toxic, direction, "shapes")
            for piece in pieces(data, slicer, bandwidth, self.proxy.rng):  # type: ignore[arg-type]
                dst.write(piece)
                await dst.drain()
                self.sent[direction] += len(piece)
                if direction == "upstream":
                    self.state.counters.bytes_upstream += len(piece)
                else:
                    self.state.counters.bytes_downstream += len(piece)
                pause = piece_pause_s(piece, slicer, bandwidth)  # type: ignore[arg-type]
                if pause:
                    await asyncio.sleep(pause)
            if cut is not None:
                if isinstance(cut, ResetToxic):
                    self.reset(cut, f"after {self.sent[direction]} bytes {direction}")
                else:
                    self.state.counters.limited += 1
                    await dst.drain()
                    self.finish(
                        f"limit_data {cut.name!r}: cut after {self.sent[direction]} bytes "
                        f"{direction}"
                    )
                return

    def _cut(
        self, data: bytes, toxics: list[Toxic], direction: Direction
    ) -> tuple[bytes, Toxic | None]:
        """Trim `data` at the first byte limit (limit_data, or reset after_bytes) it reaches;
        returns the data to forward and the toxic that ends the connection after it."""
        cut: Toxic | None = None
        room = len(data)
        for toxic in toxics:
            if toxic.type == "limit_data":
                limit = toxic.bytes  # type: ignore[union-attr]
            elif toxic.type == "reset" and toxic.after_bytes is not None:  # type: ignore[union-attr]
                limit = toxic.after_bytes  # type: ignore[union-attr]
            else:
                continue
            left = max(0, limit - self.sent[direction])
            if left <= room:
                room, cut = left, toxic
        if cut is not None:
            self.note(cut, direction, f"cuts after {room} more bytes")
        return data[:room], cut

    # ----------------------------------------------------------------------- the monitor
    async def _monitor(self) -> None:
        """Timer-driven toxics and partitions, for connections with no data flowing."""
        while not self.closed.is_set():
            link = self.link()
            if link is None or not link.enabled:
                self.state.counters.cut += 1
                self.finish("partition: link disabled", rst_client=True, rst_upstream=True)
                return
            now = time.monotonic()
            seen: set[str] = set()
            for direction in ("upstream", "downstream"):
                for toxic in self.toxics(direction):  # type: ignore[arg-type]
                    if toxic.name in seen:
                        continue
                    seen.add(toxic.name)
                    timed = (toxic.type == "reset" and toxic.after_bytes is None) or (  # type: ignore[union-attr]
                        toxic.type == "timeout" and toxic.timeout_ms > 0  # type: ignore[union-attr]
                    )
                    if not timed:
                        continue
                    since = self.armed.setdefault(toxic.name, now)
                    if (now - since) * 1000.0 < toxic.timeout_ms:  # type: ignore[union-attr]
                        continue
                    if isinstance(toxic, ResetToxic):
                        self.reset(toxic, f"after {toxic.timeout_ms} ms")
                    else:
                        self.finish(f"timeout toxic {toxic.name!r} closed it")
                    return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.closed.wait(), _TICK_S)


class Proxy:
    """The forwarder of every link of the config; thread-safe entry points for the admin API."""

    def __init__(self, get_config: Callable[[], ProxyConfig], logger: logging.Logger) -> None:
        self.get_config = get_config
        self.logger = logger
        self.rng = random.Random(get_config().seed)
        self._links: dict[str, _LinkState] = {}
        self._next_id = 0
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._housekeeping: asyncio.Task[None] | None = None

    # ------------------------------------------------------------- called from other threads
    def start(self) -> None:
        """Run the loop thread and open every enabled link's listener."""
        self._thread = threading.Thread(target=self._loop.run_forever, name="proxy", daemon=True)
        self._thread.start()
        self._call(self._start())

    def apply(self) -> list[str]:
        """Bring listeners and connections in line with the config in force; returns the links
        whose listener was closed or moved."""
        return self._call(self._reconcile())

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per link: listening, bind error, active connections and counters."""
        return self._call(self._snapshot())

    def stop(self) -> None:
        if self._thread is None:
            return
        with contextlib.suppress(Exception):
            self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._thread = None

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(_CALL_TIMEOUT_S)

    # ------------------------------------------------------------------ on the event loop
    async def _start(self) -> None:
        await self._reconcile()
        self._housekeeping = asyncio.create_task(self._housekeep())

    async def _housekeep(self) -> None:
        while True:
            await asyncio.sleep(_HOUSEKEEPING_S)
            try:
                await self._reconcile()
            except Exception:
                self.logger.exception("proxy housekeeping failed")

    async def _snapshot(self) -> dict[str, dict[str, Any]]:
        return {
            name: {
                "listening": st.server is not None,
                "error": st.error,
                "active": len(st.conns),
                **asdict(st.counters),
            }
            for name, st in self._links.items()
        }

    async def _reconcile(self) -> list[str]:
        cfg = self.get_config()
        wanted = {link.name: link for link in cfg.links}
        changed: list[str] = []
        for name in list(self._links):
            st = self._links[name]
            link = wanted.get(name)
            gone = link is None or not link.enabled
            if st.server is not None and (
                gone or st.bound != (cfg.host, link.listen_port)  # type: ignore[union-attr]
            ):
                st.server.close()
                st.server, st.bound = None, None
                changed.append(name)
                why = "removed" if link is None else "partition" if gone else "moved"
                self.logger.warning("link %s: listener closed (%s)", name, why)
            if gone:
                for conn in list(st.conns):
                    st.counters.cut += 1
                    conn.finish("partition: link disabled", rst_client=True, rst_upstream=True)
            if link is None:
                del self._links[name]
        for link in cfg.links:
            st = self._links.setdefault(link.name, _LinkState(link.name))
            if not link.enabled or st.server is not None:
                continue
            try:
                st.server = await asyncio.start_server(
                    lambda r, w, st=st: self._accept(st, r, w), cfg.host, link.listen_port
                )
            except OSError as exc:
                error = f"cannot listen on {cfg.host}:{link.listen_port}: {exc.strerror or exc}"
                if error != st.error:
                    self.logger.error("link %s: %s", link.name, error)
                st.error = error
                continue
            st.bound, st.error = (cfg.host, link.listen_port), ""
            self.logger.info(
                "link %s: listening on %s:%d -> %s:%d",
                link.name,
                cfg.host,
                link.listen_port,
                link.upstream_host,
                link.upstream_port,
            )
        return changed

    async def _accept(
        self, st: _LinkState, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._next_id += 1
        conn = _Connection(self, st, self._next_id, (reader, writer))
        cfg = self.get_config()
        link = cfg.link(st.name)
        if link is None or not link.enabled:
            conn.finish("partition", rst_client=True)
            return
        if len(st.conns) >= cfg.max_connections:
            st.counters.over_limit += 1
            self.logger.warning(
                "%s: %d connections already open; %s reset", conn.tag, len(st.conns), conn.peer
            )
            conn.finish("over max_connections", rst_client=True)
            return
        st.conns.add(conn)
        st.counters.connections += 1
        try:
            await conn.run()
        except Exception:
            self.logger.exception("%s: unexpected error", conn.tag)
            conn.finish("internal error", rst_client=True, rst_upstream=True)
        finally:
            st.conns.discard(conn)
            conn.finish("done")
            self.logger.info(
                "%s closed (%s): %d bytes up, %d bytes down, %.2f s",
                conn.tag,
                conn.reason,
                conn.sent["upstream"],
                conn.sent["downstream"],
                time.monotonic() - conn.started,
            )

    async def _shutdown(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        for st in self._links.values():
            if st.server is not None:
                st.server.close()
                st.server = None
            for conn in list(st.conns):
                conn.finish("proxy stopping")
        await asyncio.sleep(0)
