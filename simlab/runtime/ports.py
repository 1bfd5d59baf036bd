"""Free TCP ports for a lab's nodes on loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterable


def free_ports(count: int, host: str = "127.0.0.1", avoid: Iterable[int] = ()) -> list[int]:
    """Ask the kernel for `count` distinct free ports, skipping `avoid` (ports of other labs).

    Sockets are held open until all are chosen so the same port is not handed out twice; a race
    with another program remains possible, which is why a node that finds its port taken exits
    with EXIT_ADDRESS_IN_USE and the runtime retries with new ports.
    """
    avoid_set = set(avoid)
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        for _ in range(count * 20):
            if len(ports) == count:
                break
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            held.append(sock)
            port = sock.getsockname()[1]
            if port not in avoid_set and port not in ports:
                ports.append(port)
    finally:
        for sock in held:
            sock.close()
    if len(ports) < count:
        raise RuntimeError(f"could not find {count} free ports on {host}")
    return ports
