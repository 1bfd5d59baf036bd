"""Network faults: toxics on the department network's links, and partitions between two nodes.

Every inter-node path of the default department runs through the network node (`net`, a TCP
proxy; docs/network.md): 'ct-1->pacs', 'ct-1->ris', 'ris->pacs:hl7', 'pacs->viewer',
'viewer->pacs'. A fault sets a toxic on a link (as Toxiproxy does) or disables links, through the
network node's admin API, so the failure is a real one on a real socket:

* latency beyond the sender's timers, or a black hole, makes the peer wait for an A-ASSOCIATE-AC
  or a DIMSE response that never comes in time: the ARTIM timer (PS3.8 9.1.5) or the DIMSE
  timeout fires and the association is aborted (A-ABORT / A-P-ABORT, PS3.8 7.3-7.4);
* a reset or a cut-off PDU ends the TCP connection mid-association: the sender sees the
  association aborted during the send, the receiver a truncated PDU or MLLP frame;
* a partition refuses connections (ECONNREFUSED): DICOM sends fail to connect and HL7 piles up
  in the RIS's outbound queue until the link is back.

Revert removes the toxic (or enables the links again); a toxic the trainee already removed is
no error.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from simlab.client.admin import AdminApiError, path_part
from simlab.faults.base import (
    Fault,
    FaultContext,
    FaultError,
    FaultParams,
    RevertState,
    register,
)

Direction = Literal["upstream", "downstream", "both"]


def link_ends(link: str) -> tuple[str, str]:
    """('ct-1', 'pacs') for 'ct-1->pacs' or 'ct-1->pacs:dicom'."""
    client, _, service = link.partition("->")
    return client, service.split(":", 1)[0]


def _link_path(link: str) -> str:
    return f"/links/{path_part(link)}"


class LinkParams(FaultParams):
    """A fault on one link of the department network."""

    link: str = "ct-1->pacs"
    """The link's name on the network node (GET /links), e.g. 'ris->pacs:hl7'."""
    network: str = "net"
    """The network node of the lab."""
    direction: Direction = "both"
    """Which stream the toxic acts on: upstream (to the service), downstream, or both."""
    probability: float = Field(default=1.0, ge=0.0, le=1.0)
    """Chance that a connection is affected (rolled per connection with the node's seed)."""


class ToxicFault(Fault):
    """A fault that is one toxic on one link; subclasses say which toxic (`toxic_body`)."""

    Params = LinkParams

    def nodes(self) -> list[str]:
        p = self.params
        assert isinstance(p, LinkParams)
        return [p.network, *link_ends(p.link)]

    def toxic_body(self) -> dict[str, Any]:
        raise NotImplementedError

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, LinkParams)
        client = ctx.client(p.network)
        try:
            link = client.get(_link_path(p.link))
        except AdminApiError as exc:
            raise FaultError(f"{self.kind}: network node {p.network}: {exc.message}") from exc
        previous = next((t for t in link["toxics"] if t["name"] == self.kind), None)
        body = {"direction": p.direction, "probability": p.probability, **self.toxic_body()}
        client.put(f"{_link_path(p.link)}/toxics/{self.kind}", body)
        return {"previous": previous}

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        p = self.params
        assert isinstance(p, LinkParams)
        client = ctx.client(p.network)
        url = f"{_link_path(p.link)}/toxics/{self.kind}"
        previous = state.get("previous")
        if previous:
            client.put(url, {k: v for k, v in previous.items() if k != "name"})
            return
        try:
            client.delete(url)
        except AdminApiError as exc:
            if exc.status != 404:  # already cleared by the trainee: nothing to undo
                raise


class LatencyParams(LinkParams):
    latency_ms: int = Field(default=12_000, ge=0, le=600_000)
    """Delay of every chunk; the default is beyond a modality's 10 s association timeout."""
    jitter_ms: int = Field(default=2_000, ge=0, le=600_000)
    """Random variation of the delay."""


@register
class NetworkLatency(ToxicFault):
    kind = "network_latency"
    family = "network"
    title = "High latency on a network link"
    symptom = (
        "Everything over the link is slow; beyond the sender's timers the association fails: the "
        "modality's send queue shows 'no A-ASSOCIATE response from the peer (ARTIM timeout or "
        "A-ABORT)' or 'no C-STORE response (DIMSE timeout or A-ABORT)'. C-ECHO over the same path "
        "times out; the same C-ECHO straight to the PACS answers at once."
    )
    root_cause = (
        "A congested or misrouted WAN/VPN path between the two nodes adds seconds of delay; the "
        "DICOM timers (ARTIM, DIMSE) expire before the answers arrive."
    )
    Params = LatencyParams

    def toxic_body(self) -> dict[str, Any]:
        p = self.params
        assert isinstance(p, LatencyParams)
        return {"type": "latency", "latency_ms": p.latency_ms, "jitter_ms": p.jitter_ms}


class BandwidthParams(LinkParams):
    rate_kb_s: int = Field(default=16, ge=1, le=10_000_000)
    """Throughput of the link in KB/s; the default makes one CT slice take half a minute."""


@register
class NetworkBandwidth(ToxicFault):
    kind = "network_bandwidth"
    family = "network"
    title = "A network link with very little bandwidth"
    symptom = (
        "Associations open, C-ECHO works, but big objects crawl: a C-STORE of a CT or MR image "
        "waits longer than the DIMSE timeout and the modality's send queue shows 'no C-STORE "
        "response (DIMSE timeout or A-ABORT)' and 'association aborted during the send'."
    )
    root_cause = (
        "The link runs at a fraction of its speed (a port negotiated at 10 Mbit/s half duplex, a "
        "saturated uplink, a QoS policy): small messages pass, images time out."
    )
    Params = BandwidthParams

    def toxic_body(self) -> dict[str, Any]:
        p = self.params
        assert isinstance(p, BandwidthParams)
        return {"type": "bandwidth", "rate_kb_s": p.rate_kb_s}


class ResetParams(LinkParams):
    after_bytes: int | None = Field(default=65_536, ge=0)
    """Reset once this many bytes passed (mid-transfer); None: `timeout_ms` after connecting."""
    timeout_ms: int = Field(default=0, ge=0, le=3_600_000)
    """With `after_bytes` None: milliseconds after the connection opened."""


@register
class ConnectionReset(ToxicFault):
    kind = "connection_reset"
    family = "network"
    title = "Connections reset in the middle of a transfer"
    symptom = (
        "Associations open, then the TCP connection is reset (RST) during the C-STORE: the "
        "modality's send queue shows 'association aborted during the send' / 'no C-STORE response "
        "(DIMSE timeout or A-ABORT)'; the PACS log shows the association aborted. With a "
        "probability below 1 only some sends fail, and a retry often works."
    )
    root_cause = (
        "A firewall, load balancer or flapping switch port resets connections (an idle or "
        "session-table timeout, a duplex mismatch), aborting associations (A-P-ABORT)."
    )
    Params = ResetParams

    def toxic_body(self) -> dict[str, Any]:
        p = self.params
        assert isinstance(p, ResetParams)
        return {"type": "reset", "after_bytes": p.after_bytes, "timeout_ms": p.timeout_ms}


class BlackHoleParams(LinkParams):
    timeout_ms: int = Field(default=0, ge=0, le=3_600_000)
    """Close the connection after this many milliseconds; 0: never (only the sender's timer
    ends the wait)."""


@register
class NetworkBlackHole(ToxicFault):
    kind = "network_black_hole"
    family = "network"
    title = "A network link that swallows everything (black hole)"
    symptom = (
        "TCP connects, then nothing: no A-ASSOCIATE-AC comes back, so the sender's ARTIM timer "
        "fires (PS3.8 9.1.5). The modality's send queue shows 'no A-ASSOCIATE response from the "
        "peer (ARTIM timeout or A-ABORT)'; echoscu over the path fails after its -ta timeout, "
        "while the PACS itself answers a direct C-ECHO."
    )
    root_cause = (
        "A firewall drops the traffic after the TCP handshake (an asymmetric route, a stateful "
        "rule, an MTU black hole): connections open but no data gets through."
    )
    Params = BlackHoleParams

    def toxic_body(self) -> dict[str, Any]:
        p = self.params
        assert isinstance(p, BlackHoleParams)
        return {"type": "timeout", "timeout_ms": p.timeout_ms}


class TruncatedParams(LinkParams):
    bytes: int = Field(default=32_768, ge=0, le=1 << 40)
    """Bytes forwarded on a connection before it is closed (per direction)."""
    direction: Direction = "upstream"


@register
class PduTruncated(ToxicFault):
    kind = "pdu_truncated"
    family = "network"
    title = "A PDU or HL7 message cut off in transit"
    symptom = (
        "Every connection over the link is closed after a fixed number of bytes: a DICOM P-DATA "
        "PDU stops mid-way (the modality's send queue shows the association aborted, the PACS "
        "log a connection closed mid-PDU); on an HL7 link the PACS log shows the MLLP connection "
        "closed in the middle of a message, no ACK comes back and the RIS's outbound queue "
        "retries and piles up."
    )
    root_cause = (
        "A middlebox (an IPS/'DICOM-aware' firewall, a broken VPN with a wrong MTU) cuts "
        "connections after a certain amount of data."
    )
    Params = TruncatedParams

    def toxic_body(self) -> dict[str, Any]:
        p = self.params
        assert isinstance(p, TruncatedParams)
        return {"type": "limit_data", "bytes": p.bytes}


class PartitionParams(FaultParams):
    a: str = "ris"
    """One side of the partition (a node id)."""
    b: str = "pacs"
    """The other side."""
    network: str = "net"
    """The network node of the lab."""


@register
class NetworkPartition(Fault):
    kind = "network_partition"
    family = "network"
    title = "Network partition between two nodes"
    symptom = (
        "Connections between the two nodes are refused (ECONNREFUSED) and the ones open are cut: "
        "DICOM sends fail with 'cannot connect ... Connection refused'; HL7 from the RIS piles up "
        "in its outbound queue (pending, attempts rising) and the PACS misses orders and "
        "patient updates until the path is back. Each node alone is healthy."
    )
    root_cause = (
        "A routing change, a VLAN or firewall rule, or a down uplink separates the two nodes; "
        "each is up and answers its own console."
    )
    Params = PartitionParams

    def nodes(self) -> list[str]:
        p = self.params
        assert isinstance(p, PartitionParams)
        return [p.network, p.a, p.b]

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, PartitionParams)
        client = ctx.client(p.network)
        pair = {p.a, p.b}
        between = [
            lk for lk in client.get("/links") if set(link_ends(lk["name"])) == pair and p.a != p.b
        ]
        if not between:
            raise FaultError(f"{self.kind}: no link between {p.a} and {p.b} on {p.network}")
        disabled = []
        for link in between:
            if link["enabled"]:
                client.patch(_link_path(link["name"]), {"enabled": False})
                disabled.append(link["name"])
        return {"disabled": disabled}

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        p = self.params
        assert isinstance(p, PartitionParams)
        client = ctx.client(p.network)
        for name in state.get("disabled", []):
            client.patch(_link_path(name), {"enabled": True})
