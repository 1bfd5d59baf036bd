"""Free TCP ports for a lab's nodes on loopback."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterable
from pathlib import Path

LOWEST_LAB_PORT = 10000
WELL_KNOWN = frozenset({11112, 11113, 2575, 8042, 4242})
"""DICOM (11112), the admin workstation's C-MOVE port (11113), HL7 (2575), Orthanc's
defaults: ports an administrator's own tools expect to find free."""
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def lab_port_range() -> range | None:
    """Ports below the kernel's ephemeral range, where lab listeners live.

    A port the kernel could hand to an outgoing connection (a proxy dialling upstream, an HTTP
    client, DCMTK) can be taken between choosing it and the node binding it; below the
    ephemeral range only another listener can take it. None when the range leaves no room.
    """
    try:
        low = int(EPHEMERAL_RANGE.read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return range(LOWEST_LAB_PORT, low) if low - LOWEST_LAB_PORT >= 2000 else None


def free_ports(count: int, host: str = "127.0.0.1", avoid: Iterable[int] = ()) -> list[int]:
    """`count` distinct free ports, skipping `avoid` (ports of other labs).

    Chosen at random below the ephemeral range when there is one (see lab_port_range), else
    from the kernel. Sockets are held open until all are chosen so the same port is not handed
    out twice; a race with another listener remains possible, which is why a node that finds
    its port taken exits with EXIT_ADDRESS_IN_USE and the runtime retries with new ports.
    """
    avoid_set = set(avoid) | WELL_KNOWN
    candidates = lab_port_range()
    chooser = random.SystemRandom()
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        for _ in range(count * 20):
            if len(ports) == count:
                break
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(sock)
            wanted = chooser.choice(candidates) if candidates else 0
            if wanted in avoid_set:
                continue
            try:
                sock.bind((host, wanted))
            except OSError:
                continue
            port = sock.getsockname()[1]
            if port not in avoid_set and port not in ports:
                ports.append(port)
    finally:
        for sock in held:
            sock.close()
    if len(ports) < count:
        raise RuntimeError(f"could not find {count} free ports on {host}")
    return ports
