"""Configuration of the department network node: a TCP fault proxy between the other nodes.

Each *link* is one listening port on the proxy that forwards to one upstream service (the PACS's
DICOM port, the RIS's MLLP listener, ...); the peer that should reach that service is configured
with the link's port instead. A link carries *toxics* (as in Toxiproxy): latency, bandwidth, a
black hole, resets, a slow close, a slicer and a data limit, each on a direction and with a
probability. Toxics and the link's `enabled` flag live in this config, so a change through the
admin API is validated, persisted and visible in `GET /config` like any other setting.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from simlab.common.config import NodeConfig, Port, StrictModel

LINK_NAME_PATTERN = r"^[a-z0-9][a-z0-9._:>-]{0,63}$"
"""Link names read like arrows: 'ct-1->pacs', 'ris->pacs:hl7'."""
TOXIC_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"

Direction = Literal["upstream", "downstream", "both"]
"""upstream: data from the client (the connecting node) to the upstream service; downstream: the
answers back; both: either way."""


class _ToxicBase(StrictModel):
    """What every toxic has: a name on its link, a direction and a probability."""

    name: str = Field(pattern=TOXIC_NAME_PATTERN)
    """The toxic's name on its link (the path segment of PUT /links/{link}/toxics/{name})."""
    direction: Direction = "both"
    """Which stream the toxic acts on."""
    probability: float = Field(default=1.0, ge=0.0, le=1.0)
    """Chance that the toxic applies to a connection (rolled once per connection with the
    proxy's seeded random generator; 1.0: every connection)."""


class LatencyToxic(_ToxicBase):
    """Every chunk of data is held `latency_ms` ± `jitter_ms` before it is forwarded."""

    type: Literal["latency"] = "latency"
    latency_ms: int = Field(default=1000, ge=0, le=600_000)
    """Added delay in milliseconds."""
    jitter_ms: int = Field(default=0, ge=0, le=600_000)
    """Uniform random variation of the delay (never below zero)."""


class BandwidthToxic(_ToxicBase):
    """Data is forwarded at no more than `rate_kb_s` kilobytes per second."""

    type: Literal["bandwidth"] = "bandwidth"
    rate_kb_s: int = Field(default=64, ge=1, le=10_000_000)
    """Rate limit in KB/s (1 KB = 1024 bytes)."""


class TimeoutToxic(_ToxicBase):
    """A black hole: the connection is accepted but no data gets through; after `timeout_ms`
    the connection is closed, or never when it is 0 (the sender's own timer must fire)."""

    type: Literal["timeout"] = "timeout"
    timeout_ms: int = Field(default=0, ge=0, le=3_600_000)
    """Milliseconds after which the connection is closed; 0: never."""


class ResetToxic(_ToxicBase):
    """The connection is reset (TCP RST, SO_LINGER 0): `timeout_ms` after it started (or after
    the toxic was added), or as soon as `after_bytes` bytes passed in the toxic's direction."""

    type: Literal["reset"] = "reset"
    timeout_ms: int = Field(default=0, ge=0, le=3_600_000)
    """Milliseconds before the reset (0: at once); ignored when `after_bytes` is set."""
    after_bytes: int | None = Field(default=None, ge=0, le=1 << 40)
    """Reset once this many bytes were forwarded in the direction (mid-transfer abort)."""


class SlowCloseToxic(_ToxicBase):
    """When one side closes, the close is passed on to the other side `delay_ms` later."""

    type: Literal["slow_close"] = "slow_close"
    delay_ms: int = Field(default=1000, ge=0, le=600_000)
    """Delay of the close in milliseconds."""


class SlicerToxic(_ToxicBase):
    """Data is cut into small pieces sent with a delay between them (a bad middlebox)."""

    type: Literal["slicer"] = "slicer"
    average_size: int = Field(default=64, ge=1, le=1 << 20)
    """Average piece size in bytes."""
    size_variation: int = Field(default=32, ge=0, le=1 << 20)
    """Pieces vary by up to this many bytes (below `average_size`)."""
    delay_ms: int = Field(default=10, ge=0, le=10_000)
    """Pause between two pieces in milliseconds."""

    @model_validator(mode="after")
    def _variation_below_size(self) -> SlicerToxic:
        if self.size_variation >= self.average_size:
            raise ValueError("size_variation must be smaller than average_size")
        return self


class LimitDataToxic(_ToxicBase):
    """The connection is closed once `bytes` bytes passed in the direction: a PDU or an HL7
    message cut off in the middle."""

    type: Literal["limit_data"] = "limit_data"
    bytes: int = Field(default=1024, ge=0, le=1 << 40)
    """Bytes forwarded before the connection is closed."""


Toxic = Annotated[
    LatencyToxic
    | BandwidthToxic
    | TimeoutToxic
    | ResetToxic
    | SlowCloseToxic
    | SlicerToxic
    | LimitDataToxic,
    Field(discriminator="type"),
]
TOXIC_TYPES = (
    "latency",
    "bandwidth",
    "timeout",
    "reset",
    "slow_close",
    "slicer",
    "limit_data",
)


class Link(StrictModel):
    """One proxied path: clients connect to `listen_port`, data goes to the upstream service."""

    name: str = Field(pattern=LINK_NAME_PATTERN)
    """The link's name, e.g. 'ct-1->pacs' (client -> service)."""
    listen_port: Port
    """Port on the proxy's host the client connects to."""
    upstream_host: str = "127.0.0.1"
    """Host of the service the link forwards to."""
    upstream_port: Port
    """Port of the service the link forwards to."""
    description: str = ""
    """Free text for consoles, e.g. 'CT scanner -> PACS (DICOM store)'."""
    enabled: bool = True
    """False: a partition; the listener is closed (new connections are refused) and the
    connections in flight are cut."""
    toxics: list[Toxic] = Field(default_factory=list)
    """The toxics in force on this link, applied in this order."""

    @model_validator(mode="after")
    def _unique_toxics(self) -> Link:
        names = [t.name for t in self.toxics]
        if len(names) != len(set(names)):
            raise ValueError(f"link {self.name}: toxic names must be unique")
        return self


class ProxyConfig(NodeConfig):
    """The department network: a TCP proxy with one listener per link."""

    role: Literal["network"] = "network"
    host: str = "127.0.0.1"
    """Address every link listens on."""
    links: list[Link] = Field(default_factory=list)
    """The proxied paths between the nodes."""
    seed: int = Field(default=1, ge=0)
    """Seeds the generator behind probabilities, jitter and slice sizes: same seed, same run."""
    connect_timeout: float = Field(default=5.0, gt=0, le=300)
    """Seconds to wait for the upstream service to accept a connection."""
    max_connections: int = Field(default=64, ge=1, le=4096)
    """Concurrent connections per link; beyond it a new one is reset at once."""
    chunk_bytes: int = Field(default=65_536, ge=512, le=1 << 22)
    """Largest chunk read at a time (what a toxic sees as one piece of data)."""

    @model_validator(mode="after")
    def _unique_links(self) -> ProxyConfig:
        names = [link.name for link in self.links]
        if len(names) != len(set(names)):
            raise ValueError("link names must be unique")
        ports = [link.listen_port for link in self.links]
        if len(ports) != len(set(ports)) or self.admin.port in ports:
            raise ValueError("link listen ports must be unique and differ from the admin port")
        return self

    def link(self, name: str) -> Link | None:
        """The link called `name`, or None."""
        return next((link for link in self.links if link.name == name), None)
