"""What the toxics of a link do to one connection: which apply, and how data is shaped.

A toxic's probability is rolled once per connection (the first time the connection meets the
toxic, so a toxic added to a live link also rolls), with the proxy's seeded generator. The
helpers here are pure: the forwarder (forwarder.py) does the I/O and the waiting.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from simlab.common.proxy_config import (
    BandwidthToxic,
    Direction,
    LatencyToxic,
    Link,
    SlicerToxic,
    Toxic,
)

MAX_PIECES = 65_536
"""Upper bound of pieces one chunk is sliced into (a tiny slice size cannot make a huge loop)."""


class ToxicRolls:
    """The per-connection outcome of each toxic's probability, rolled at first sight."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._rolled: dict[tuple[str, str], bool] = {}

    def applies(self, toxic: Toxic) -> bool:
        key = (toxic.name, toxic.type)
        if key not in self._rolled:
            p = toxic.probability
            self._rolled[key] = True if p >= 1.0 else False if p <= 0.0 else self._rng.random() < p
        return self._rolled[key]


def active(link: Link | None, direction: Direction, rolls: ToxicRolls) -> list[Toxic]:
    """The toxics of `link` acting on `direction` ('upstream' or 'downstream') for this
    connection, in the link's order."""
    if link is None:
        return []
    return [t for t in link.toxics if t.direction in (direction, "both") and rolls.applies(t)]


def first(toxics: Iterable[Toxic], kind: str) -> Toxic | None:
    return next((t for t in toxics if t.type == kind), None)


def latency_s(toxic: LatencyToxic, rng: random.Random) -> float:
    """The delay of one chunk in seconds: latency ± uniform jitter, never negative."""
    jitter = rng.uniform(-toxic.jitter_ms, toxic.jitter_ms) if toxic.jitter_ms else 0.0
    return max(0.0, toxic.latency_ms + jitter) / 1000.0


def pieces(
    data: bytes,
    slicer: SlicerToxic | None,
    bandwidth: BandwidthToxic | None,
    rng: random.Random,
) -> Sequence[bytes]:
    """Cut `data` the way the slicer (random sizes around the average) and the bandwidth limit
    (at most a tenth of a second's worth per piece, so the rate is smooth) want it."""
    limit = len(data)
    if bandwidth is not None:
        limit = max(512, bandwidth.rate_kb_s * 1024 // 10)
    if slicer is None and limit >= len(data):
        return [data]
    out: list[bytes] = []
    pos = 0
    while pos < len(data) and len(out) < MAX_PIECES:
        size = limit
        if slicer is not None:
            var = slicer.size_variation
            size = min(limit, slicer.average_size + (rng.randint(-var, var) if var else 0))
        size = max(1, size)
        out.append(data[pos : pos + size])
        pos += size
    if pos < len(data):
        out.append(data[pos:])
    return out


def piece_pause_s(
    piece: bytes, slicer: SlicerToxic | None, bandwidth: BandwidthToxic | None
) -> float:
    """Seconds to wait after writing a piece: the slicer's pause or the bandwidth's pace."""
    pause = slicer.delay_ms / 1000.0 if slicer is not None else 0.0
    if bandwidth is not None:
        pause = max(pause, len(piece) / (bandwidth.rate_kb_s * 1024.0))
    return pause
