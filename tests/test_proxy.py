"""The network node (TCP fault proxy) on its own: real sockets through a real node process.

An echo server stands in for a service; each test sets toxics through the admin API, watches
the effect on a client socket, and clears them again (an autouse fixture clears leftovers).
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from simlab.client.admin import AdminApiError, AdminClient
from simlab.common.config import AdminSettings
from simlab.common.proxy_config import Link, ProxyConfig
from simlab.runtime.ports import free_ports
from simlab.runtime.process import NodeProcess
from simlab.runtime.topology import write_node_dir
from tests.conftest import RunningNode
from tests.polling import poll

ECHO = "client->echo"
DEAD = "client->dead"


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(30)
        try:
            while data := sock.recv(65536):
                sock.sendall(data)
        except OSError:
            pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    server = _Server(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, echo_port: int) -> Iterator[RunningNode]:
    admin_port, echo_listen, dead_listen, dead_port = free_ports(4)
    config = ProxyConfig(
        node_id="net",
        display_name="Department network",
        admin=AdminSettings(port=admin_port),
        connect_timeout=2.0,
        links=[
            Link(name=ECHO, listen_port=echo_listen, upstream_port=echo_port),
            Link(name=DEAD, listen_port=dead_listen, upstream_port=dead_port),
        ],
    )
    node_dir = tmp_path_factory.mktemp("net")
    token = secrets.token_hex(16)
    config_path = write_node_dir(node_dir, config, token)
    node = RunningNode(
        module="simlab.nodes.proxy",
        node_dir=node_dir,
        config_path=config_path,
        admin=AdminClient(f"http://127.0.0.1:{admin_port}", token),
        process=NodeProcess(node_id="net", popen=None, pid=-1),
    )
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(autouse=True)
def _clean_links(proxy: RunningNode) -> Iterator[None]:
    yield
    for name in (ECHO, DEAD):
        proxy.admin.delete(f"/links/{quote(name, safe='')}/toxics")
        proxy.admin.patch(f"/links/{quote(name, safe='')}", {"enabled": True})


def path(name: str) -> str:
    return f"/links/{quote(name, safe='')}"


def port_of(proxy: RunningNode, name: str) -> int:
    return int(proxy.admin.get(path(name))["listen_port"])


def set_toxic(proxy: RunningNode, toxic: str, body: dict, link: str = ECHO) -> None:
    proxy.admin.put(f"{path(link)}/toxics/{toxic}", body)


def connect(proxy: RunningNode, link: str = ECHO, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port_of(proxy, link)), timeout=timeout)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        data = sock.recv(n - len(out))
        if not data:
            break
        out += data
    return out


def recv_all(sock: socket.socket) -> tuple[bytes, str]:
    """Everything until the connection ends; and how it ended: 'eof' or 'reset'."""
    out = b""
    try:
        while data := sock.recv(65536):
            out += data
    except ConnectionResetError:
        return out, "reset"
    return out, "eof"


def outcome(proxy: RunningNode, payload: bytes, link: str = ECHO) -> tuple[bytes, str]:
    """Connect, send, read to the end: (data, 'eof' or 'reset'). A reset at once can reach the
    client before its connect() even returns, or while it sends."""
    try:
        sock = connect(proxy, link)
    except ConnectionResetError:
        return b"", "reset"
    with sock:
        try:
            sock.sendall(payload)
        except (ConnectionResetError, BrokenPipeError):
            return b"", "reset"
        return recv_all(sock)


def round_trip(proxy: RunningNode, payload: bytes) -> tuple[bytes, float]:
    with connect(proxy) as sock:
        start = time.monotonic()
        sock.sendall(payload)
        data = recv_exactly(sock, len(payload))
        return data, time.monotonic() - start


def test_forwards_both_ways_and_counts(proxy: RunningNode) -> None:
    before = proxy.admin.get(path(ECHO))
    payload = secrets.token_bytes(300_000)
    data, _ = round_trip(proxy, payload)
    assert data == payload
    after = poll(
        lambda: proxy.admin.get(path(ECHO)),
        lambda link: link["active"] == 0,
        5,
        "the connection to close",
    )
    assert after["connections"] == before["connections"] + 1
    assert after["bytes_upstream"] - before["bytes_upstream"] == len(payload)
    assert after["bytes_downstream"] - before["bytes_downstream"] == len(payload)
    assert after["listening"] is True
    health = proxy.admin.health()
    assert health["role"] == "network"
    assert {lk["name"] for lk in health["links"]} == {ECHO, DEAD}
    assert "connected, upstream" in proxy.log_text()


def test_latency_with_direction(proxy: RunningNode) -> None:
    set_toxic(proxy, "slow", {"type": "latency", "latency_ms": 400, "direction": "upstream"})
    data, took = round_trip(proxy, b"ping")
    assert data == b"ping"
    assert took >= 0.38
    set_toxic(proxy, "slow", {"type": "latency", "latency_ms": 400, "jitter_ms": 100})
    _, took_both = round_trip(proxy, b"ping")
    assert took_both >= 0.6
    proxy.admin.delete(f"{path(ECHO)}/toxics/slow")
    _, fast = round_trip(proxy, b"ping")
    assert fast < 0.3


def test_bandwidth_paces_the_data(proxy: RunningNode) -> None:
    set_toxic(proxy, "thin", {"type": "bandwidth", "rate_kb_s": 64, "direction": "upstream"})
    payload = secrets.token_bytes(48 * 1024)
    data, took = round_trip(proxy, payload)
    assert data == payload
    assert took >= 0.6  # 48 KB at 64 KB/s


def test_black_hole_swallows_data_and_never_closes(proxy: RunningNode) -> None:
    set_toxic(proxy, "hole", {"type": "timeout"})
    with connect(proxy, timeout=0.8) as sock:
        sock.sendall(b"A-ASSOCIATE-RQ")
        with pytest.raises(TimeoutError):
            sock.recv(100)
        proxy.admin.delete(f"{path(ECHO)}/toxics/hole")
        sock.sendall(b"again")
        assert recv_exactly(sock, 5) == b"again"
    assert proxy.admin.get(path(ECHO))["bytes_dropped"] >= len(b"A-ASSOCIATE-RQ")


def test_black_hole_with_a_timeout_closes(proxy: RunningNode) -> None:
    set_toxic(proxy, "hole", {"type": "timeout", "timeout_ms": 300})
    with connect(proxy) as sock:
        start = time.monotonic()
        sock.sendall(b"hello")
        data, how = recv_all(sock)
        assert (data, how) == (b"", "eof")
        assert time.monotonic() - start >= 0.25


def test_reset_at_once_and_after_bytes(proxy: RunningNode) -> None:
    set_toxic(proxy, "rst", {"type": "reset"})
    assert outcome(proxy, b"x")[1] == "reset"
    set_toxic(proxy, "rst", {"type": "reset", "after_bytes": 1000, "direction": "downstream"})
    data, how = outcome(proxy, secrets.token_bytes(5000))
    assert how == "reset"
    assert len(data) <= 1000
    assert proxy.admin.get(path(ECHO))["resets"] >= 2


def test_reset_probability_is_rolled_per_connection(proxy: RunningNode) -> None:
    set_toxic(proxy, "flaky", {"type": "reset", "probability": 0.5})
    outcomes = []
    for _ in range(16):
        data = b""
        with contextlib.suppress(ConnectionResetError, BrokenPipeError), connect(proxy) as sock:
            sock.sendall(b"ping")
            data = recv_exactly(sock, 4)
        outcomes.append(data == b"ping")
    assert any(outcomes) and not all(outcomes), outcomes


def test_slow_close_delays_the_close(proxy: RunningNode) -> None:
    set_toxic(proxy, "lazy", {"type": "slow_close", "delay_ms": 400})
    with connect(proxy) as sock:
        sock.sendall(b"bye")
        assert recv_exactly(sock, 3) == b"bye"
        start = time.monotonic()
        sock.shutdown(socket.SHUT_WR)
        assert recv_all(sock) == (b"", "eof")
        assert time.monotonic() - start >= 0.35


def test_slicer_cuts_data_in_small_pieces(proxy: RunningNode) -> None:
    set_toxic(
        proxy,
        "knife",
        {
            "type": "slicer",
            "average_size": 10,
            "size_variation": 5,
            "delay_ms": 5,
            "direction": "downstream",
        },
    )
    payload = secrets.token_bytes(300)
    with connect(proxy) as sock:
        start = time.monotonic()
        sock.sendall(payload)
        first = sock.recv(1000)
        rest = recv_exactly(sock, len(payload) - len(first))
        took = time.monotonic() - start
    assert first + rest == payload
    assert len(first) <= 15
    assert took >= 0.1  # at least 20 pieces, 5 ms apart


def test_limit_data_cuts_a_message_off(proxy: RunningNode) -> None:
    set_toxic(proxy, "cut", {"type": "limit_data", "bytes": 1000, "direction": "downstream"})
    payload = secrets.token_bytes(5000)
    with connect(proxy) as sock:
        sock.sendall(payload)
        data, how = recv_all(sock)
    assert data == payload[:1000]
    assert how == "eof"
    poll(proxy.log_text, lambda log: "limit_data 'cut': cut after 1000" in log, 5, "the log line")


def test_partition_refuses_and_cuts_then_heals(proxy: RunningNode) -> None:
    listen = port_of(proxy, ECHO)
    live = connect(proxy)
    live.sendall(b"ping")
    assert recv_exactly(live, 4) == b"ping"
    link = proxy.admin.patch(path(ECHO), {"enabled": False})
    assert link["enabled"] is False and link["listening"] is False
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", listen), timeout=2)
    with live:
        data, how = recv_all(live)
    assert (data, how) == (b"", "reset")
    assert proxy.admin.get("/config")["links"][0]["enabled"] is False
    proxy.admin.patch(path(ECHO), {"enabled": True})
    assert round_trip(proxy, b"back")[0] == b"back"
    assert "listener closed (partition)" in proxy.log_text()


def test_upstream_refusal_resets_the_client(proxy: RunningNode) -> None:
    before = proxy.admin.get(path(DEAD))["upstream_refused"]
    assert outcome(proxy, b"x", DEAD)[1] == "reset"
    assert proxy.admin.get(path(DEAD))["upstream_refused"] == before + 1
    assert "unreachable" in proxy.log_text()


def test_toxics_are_config_and_survive_reload(proxy: RunningNode) -> None:
    set_toxic(proxy, "slow", {"type": "latency", "latency_ms": 50})
    set_toxic(proxy, "thin", {"type": "bandwidth", "rate_kb_s": 1000})
    assert [t["name"] for t in proxy.admin.get(f"{path(ECHO)}/toxics")] == ["slow", "thin"]
    set_toxic(proxy, "slow", {"type": "latency", "latency_ms": 60})  # replaced in place
    proxy.admin.post("/reload")
    toxics = proxy.admin.get("/config")["links"][0]["toxics"]
    assert [(t["name"], t.get("latency_ms")) for t in toxics] == [("slow", 60), ("thin", None)]
    cleared = proxy.admin.delete(f"{path(ECHO)}/toxics")
    assert cleared["removed"] == ["slow", "thin"]


@pytest.mark.parametrize(
    ("method", "url", "body", "status"),
    [
        ("GET", "/links/nope", None, 404),
        ("PUT", "/links/nope/toxics/x", {"type": "latency"}, 404),
        ("PUT", f"{path(ECHO)}/toxics/x", {"type": "teleport"}, 422),
        ("PUT", f"{path(ECHO)}/toxics/x", {"latency_ms": 5}, 422),
        ("PUT", f"{path(ECHO)}/toxics/x", {"type": "latency", "latency_ms": -1}, 422),
        ("PUT", f"{path(ECHO)}/toxics/x", {"type": "reset", "probability": 2}, 422),
        ("PUT", f"{path(ECHO)}/toxics/x", {"type": "latency", "colour": "red"}, 422),
        ("PUT", f"{path(ECHO)}/toxics/BAD%20NAME", {"type": "latency"}, 422),
        ("PUT", f"{path(ECHO)}/toxics/x", [1, 2], 400),
        ("DELETE", f"{path(ECHO)}/toxics/never-set", None, 404),
        ("PATCH", path(ECHO), {"listen_port": 1}, 400),
        ("PATCH", path(ECHO), {"enabled": "sometimes"}, 422),
        ("PATCH", path(ECHO), {"upstream_port": 70000}, 422),
    ],
)
def test_bad_admin_input_is_refused(
    proxy: RunningNode, method: str, url: str, body: object, status: int
) -> None:
    with pytest.raises(AdminApiError) as err:
        proxy.admin.request(method, url, body)
    assert err.value.status == status
    assert proxy.admin.get(f"{path(ECHO)}/toxics") == []


def test_garbage_and_rude_clients_do_not_hurt_the_node(proxy: RunningNode) -> None:
    listen = port_of(proxy, ECHO)
    for _ in range(5):
        sock = socket.create_connection(("127.0.0.1", listen), timeout=2)
        sock.sendall(secrets.token_bytes(1000))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # RST from the client side
    for _ in range(5):
        socket.create_connection(("127.0.0.1", listen), timeout=2).close()
    poll(lambda: proxy.admin.get(path(ECHO))["active"], lambda n: n == 0, 5, "connections gone")
    assert round_trip(proxy, b"still here")[0] == b"still here"
    assert proxy.admin.health()["status"] == "ok"
    assert proxy.process.exit_code() is None
