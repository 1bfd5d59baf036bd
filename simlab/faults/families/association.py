"""Association faults: who may talk to whom, and where (PS3.8 9.3.4 A-ASSOCIATE-RJ).

A strict PACS (design.md section 4) checks the called AE title and knows its peers, so a typo on
either side shows as a real rejection: result 1 (permanent), source 1 (service user), reason 7
(called AE not recognised) or 3 (calling AE not recognised). A port nobody listens on shows as a
refused TCP connection, and a PACS at its association limit answers result 2 (transient), source
3 (service provider, presentation related), reason 2 (local limit exceeded).

Every fault here is one config change made through the node's admin API, the way a field
engineer or a colleague makes it. Reverts only undo a change that is still there, so an instructor
who reverts after the trainee fixed it (in whatever way) never breaks the fix.
"""

from __future__ import annotations

import socket
from typing import Any

from pydantic import Field

from simlab.client.admin import AdminApiError, path_part
from simlab.faults.base import (
    Fault,
    FaultContext,
    FaultError,
    NodeParams,
    RevertState,
    register,
)
from simlab.runtime.ports import free_ports


class WrongCalledAeParams(NodeParams):
    node: str = "ct-1"
    called_ae: str = "PACS_MAIN"
    """The AE title the modality now calls (a plausible typo or an old PACS's title)."""


@register
class WrongCalledAe(Fault):
    kind = "wrong_called_ae"
    family = "association"
    title = "Modality sends to a wrong Called AE title"
    symptom = (
        "The modality's send queue fails every image with A-ASSOCIATE-RJ result 1 (permanent), "
        "source 1 (service user), reason 7 (called AE title not recognised); the PACS log shows "
        "the rejected association with the wrong called AE."
    )
    root_cause = (
        "The modality's DICOM destination was (re)configured with a called AE title the PACS does "
        "not answer to, e.g. by a field engineer after an upgrade."
    )
    Params = WrongCalledAeParams

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, WrongCalledAeParams)
        inverse = ctx.patch_config(p.node, {"destination": {"ae_title": p.called_ae}})
        return {"inverse": inverse}

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        ctx.restore_config(self.params.node, state["inverse"])  # type: ignore[attr-defined]


class UnknownCallingAeParams(NodeParams):
    node: str = "pacs"
    ae_title: str = "CT_1"
    """The peer whose AE-table row disappears (the modality that can no longer send)."""


@register
class UnknownCallingAe(Fault):
    kind = "unknown_calling_ae"
    family = "association"
    title = "PACS no longer knows a modality's Calling AE title"
    symptom = (
        "Every association from the modality is refused with A-ASSOCIATE-RJ result 1 "
        "(permanent), source 1 (service user), reason 3 (calling AE title not recognised): "
        "the modality's send queue fills with '1/1/3' failures; the PACS log says 'not in the "
        "AE table'."
    )
    root_cause = (
        "The modality's row was removed from the PACS AE table (a clean-up of 'unused' entries, "
        "or a restored AE table that predates the modality); with require_known_calling_ae the "
        "PACS refuses callers it does not know."
    )
    Params = UnknownCallingAeParams

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, UnknownCallingAeParams)
        rows = ctx.client(p.node).get("/ae-table")
        index = next((i for i, r in enumerate(rows) if r["ae_title"] == p.ae_title), None)
        if index is None:
            raise FaultError(f"{p.node}: {p.ae_title} is not in the AE table")
        ctx.delete_ae(p.node, p.ae_title)
        return {"row": rows[index], "index": index}

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        node = self.params.node  # type: ignore[attr-defined]
        row = state["row"]
        rows = ctx.client(node).get("/ae-table")
        if any(r["ae_title"] == row["ae_title"] for r in rows):
            return  # the trainee added it again: their row stands
        # The exact row, at its old place: a console lists the table in its stored order.
        rows.insert(min(state["index"], len(rows)), row)
        ctx.client(node).patch("/config", {"ae_table": rows})


class WrongDestinationPortParams(NodeParams):
    node: str = "ct-1"
    port: int = Field(default=104, ge=1, le=65535)
    """The port the modality now sends to: 104, the DICOM default a vendor upgrade resets to."""


@register
class WrongDestinationPort(Fault):
    kind = "wrong_destination_port"
    family = "association"
    title = "Modality sends to a port where no PACS listens"
    symptom = (
        "The modality's send queue fails every image with 'cannot connect to <host>:<port>: "
        "Connection refused'; the PACS log shows nothing at all from that modality."
    )
    root_cause = (
        "A vendor upgrade reset the modality's DICOM destination port (to 104, the default); "
        "nothing listens there, so the TCP connection is refused before any DICOM is spoken."
    )
    Params = WrongDestinationPortParams

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, WrongDestinationPortParams)
        dest = ctx.config(p.node)["destination"]
        if dest["port"] == p.port:
            raise FaultError(f"{p.node} already sends to port {p.port}")
        if _listening(dest["host"], p.port):
            raise FaultError(f"something listens on {dest['host']}:{p.port}; choose another port")
        ctx.client(p.node).patch("/config", {"destination": {"port": p.port}})
        return {"old_port": dest["port"], "faulty_port": p.port}

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        node = self.params.node  # type: ignore[attr-defined]
        if ctx.config(node)["destination"]["port"] == state["faulty_port"]:
            ctx.client(node).patch("/config", {"destination": {"port": state["old_port"]}})


class PacsPortChangedParams(NodeParams):
    node: str = "pacs"
    port: int | None = Field(default=None, ge=1, le=65535)
    """The PACS's new DICOM port; None: a free port chosen at injection."""


_PEER_PATHS: tuple[tuple[str, ...], ...] = (("destination",), ("retrieve", "provider"))
"""Where a node's config names the PACS it calls: a modality's destination, a viewer's provider
(a proxy's links are found by their upstream_port)."""


@register
class PacsPortChanged(Fault):
    kind = "pacs_port_changed"
    family = "association"
    title = "PACS DICOM listener moved to another port"
    symptom = (
        "Every modality's send queue fails with 'Connection refused' (or a closed connection when "
        "it sends through a proxy); echoscu to the PACS's usual port fails with 'TCP "
        "Initialization Error: Connection refused', while the PACS console says DICOM is up."
    )
    root_cause = (
        "The PACS's dicom.port was changed (a port clean-up, a second instance planned on the "
        "old one); the PACS listens on the new port, its peers still call the old one."
    )
    Params = PacsPortChangedParams

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, PacsPortChangedParams)
        old = ctx.config(p.node)["dicom"]["port"]
        new = p.port or free_ports(1, avoid={old})[0]
        if new == old:
            raise FaultError(f"{p.node} already listens on port {new}")
        peers = {n.node_id: _peer_ports(ctx, n.node_id) for n in ctx.lab.manifest.nodes}
        ctx.client(p.node).patch("/config", {"dicom": {"port": new}})
        return {"old_port": old, "faulty_port": new, "peers": peers}

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        node = self.params.node  # type: ignore[attr-defined]
        faulty = state["faulty_port"]
        if ctx.config(node)["dicom"]["port"] == faulty:
            ctx.client(node).patch("/config", {"dicom": {"port": state["old_port"]}})
        # A trainee may have fixed it the other way, re-pointing peers at the new port: point
        # them back where they were (the PACS, or a proxy in the link), or the restored PACS port
        # would break them.
        for peer, ports in state.get("peers", {}).items():
            _restore_peer_ports(ctx, peer, ports, faulty)


def _peer_ports(ctx: FaultContext, node_id: str) -> dict[str, int]:
    """The ports a node's config calls the PACS on: 'destination', 'retrieve.provider', or
    'link:<name>' for a proxy link's upstream ({} when the node is down)."""
    try:
        cfg = ctx.config(node_id)
    except AdminApiError:
        return {}
    found = {}
    for path in _PEER_PATHS:
        peer: Any = cfg
        for key in path:
            peer = peer.get(key) if isinstance(peer, dict) else None
        if isinstance(peer, dict) and isinstance(peer.get("port"), int):
            found[".".join(path)] = peer["port"]
    for link in cfg.get("links") or []:
        if isinstance(link, dict) and isinstance(link.get("upstream_port"), int):
            found[f"link:{link['name']}"] = link["upstream_port"]
    return found


def _restore_peer_ports(
    ctx: FaultContext, node_id: str, ports: dict[str, int], faulty: int
) -> None:
    """Set back each PACS address of a node that now points at the `faulty` port."""
    now = _peer_ports(ctx, node_id)
    for where, port in ports.items():
        if now.get(where) != faulty or port == faulty:
            continue
        if where.startswith("link:"):
            name = path_part(where.removeprefix("link:"))
            ctx.client(node_id).patch(f"/links/{name}", {"upstream_port": port})
            continue
        patch: dict[str, Any] = {"port": port}
        for key in reversed(where.split(".")):
            patch = {key: patch}
        ctx.client(node_id).patch("/config", patch)


class CallingAeChangedParams(NodeParams):
    node: str = "ct-1"
    ae_title: str | None = None
    """The modality's new own AE title; None: the old one without underscores (CT_1 -> CT1)."""


@register
class CallingAeChanged(Fault):
    kind = "calling_ae_changed"
    family = "association"
    title = "Modality's own AE title changed after a reinstall"
    symptom = (
        "The PACS refuses the modality with A-ASSOCIATE-RJ result 1, source 1, reason 3 (calling "
        "AE title not recognised): the send queue shows '1/1/3', the PACS log names the new, "
        "unknown calling AE. Its worklist queries may be refused by the RIS as well."
    )
    root_cause = (
        "The modality was reinstalled and its own AE title re-entered slightly differently (CT_1 "
        "became CT1); every peer that checks calling AE titles no longer recognises it."
    )
    Params = CallingAeChangedParams

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, CallingAeChangedParams)
        old = ctx.config(p.node)["dicom"]["ae_title"]
        new = p.ae_title or old.replace("_", "")
        if new == old:
            new = f"{old[:15]}2"
        ctx.client(p.node).patch("/config", {"dicom": {"ae_title": new}})
        return {"old_ae_title": old, "faulty_ae_title": new}

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        node = self.params.node  # type: ignore[attr-defined]
        if ctx.config(node)["dicom"]["ae_title"] == state["faulty_ae_title"]:
            ctx.client(node).patch("/config", {"dicom": {"ae_title": state["old_ae_title"]}})


class AssociationLimitParams(NodeParams):
    node: str = "pacs"
    max_associations: int = Field(default=1, ge=1, le=256)
    """The lowered limit of concurrent associations (the PACS accepts no less than 1)."""


@register
class AssociationLimit(Fault):
    kind = "association_limit"
    family = "association"
    title = "PACS association limit set too low"
    symptom = (
        "Intermittent: while one association is open (another modality sending, a viewer "
        "retrieving), every other caller is refused with A-ASSOCIATE-RJ result 2 (transient), "
        "source 3 (service provider, presentation related), reason 2 (local limit exceeded); "
        "sends succeed on retry when the PACS happens to be idle."
    )
    root_cause = (
        "The PACS's dicom.max_associations was lowered (to protect a slow archive, or a licence "
        "limit typed in), so concurrent peers are turned away."
    )
    Params = AssociationLimitParams

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, AssociationLimitParams)
        old = ctx.config(p.node)["dicom"]["max_associations"]
        if old <= p.max_associations:
            raise FaultError(f"{p.node}: max_associations is already {old}")
        ctx.client(p.node).patch("/config", {"dicom": {"max_associations": p.max_associations}})
        return {"old": old, "faulty": p.max_associations}

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        node = self.params.node  # type: ignore[attr-defined]
        if ctx.config(node)["dicom"]["max_associations"] == state["faulty"]:
            ctx.client(node).patch("/config", {"dicom": {"max_associations": state["old"]}})


def _listening(host: str, port: int) -> bool:
    """True when something accepts TCP connections on host:port (the fault would not show)."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False
