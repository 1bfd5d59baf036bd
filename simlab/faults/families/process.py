"""Process faults: a node crashes, hangs, is stopped, or comes back with a stale config.

These act on the node's process through the lab runtime, exactly as the real events do: SIGKILL
is a crash (no clean shutdown, the listeners vanish: connection refused), SIGSTOP a hang (the
kernel still completes TCP handshakes into the listen backlog, but nothing answers: ARTIM and
DIMSE timeouts, an admin console that times out), SIGTERM a clean stop. A stale config is an old
config file put back before a restart (a restored backup, a configuration-management run).

The lab console (`lab.status()`) shows a crashed node 'down', a stopped one 'not started', a hung
one 'unhealthy'. Reverts start what is not running and leave a running node alone, so reverting
after the trainee restarted the node is harmless.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from simlab.client.admin import AdminApiError
from simlab.faults.base import (
    Fault,
    FaultContext,
    FaultError,
    NodeParams,
    RevertState,
    register,
)
from simlab.runtime.ports import free_ports


class ProcessParams(NodeParams):
    node: str = "pacs"


def _running(ctx: FaultContext, node: str) -> bool:
    """Whether the node runs now. The manifest is read again first: the trainee may have
    started or restarted the node from another shell since this lab object loaded it, and
    starting a second copy would collide with the first on its ports."""
    ctx.lab.reload_manifest()
    return ctx.lab.node_running(ctx.lab.manifest.node(node))


def _require_running(ctx: FaultContext, node: str) -> None:
    if not _running(ctx, node):
        raise FaultError(f"node {node} is not running")


@register
class NodeCrashed(Fault):
    kind = "node_crashed"
    family = "process"
    title = "A node crashed"
    symptom = (
        "Every connection to the node is refused (DCMTK: 'TCP Initialization Error: Connection "
        "refused'; modalities' queues fail with 'Connection refused'); the lab console shows the "
        "node down, its process gone; its log simply stops, with no shutdown line."
    )
    root_cause = (
        "The node's process died abruptly (killed with SIGKILL, as the OOM killer or a segfault "
        "would); nothing restarted it."
    )
    Params = ProcessParams

    def inject(self, ctx: FaultContext) -> RevertState:
        node = self.params.node  # type: ignore[attr-defined]
        _require_running(ctx, node)
        ctx.lab.signal_node(node, signal.SIGKILL)
        return {}

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        node = self.params.node  # type: ignore[attr-defined]
        if not _running(ctx, node):
            ctx.lab.start_node(node)


@register
class NodeHung(Fault):
    kind = "node_hung"
    family = "process"
    title = "A node hangs"
    symptom = (
        "TCP connections to the node succeed but nothing answers: DCMTK times out waiting for "
        "the A-ASSOCIATE response (ARTIM), modalities fail with 'no A-ASSOCIATE response' or a "
        "DIMSE timeout, and the lab console shows the node unhealthy (admin API timed out) "
        "although its process exists."
    )
    root_cause = (
        "The node's process is frozen (SIGSTOP here; in real life a deadlock, a stuck disk or "
        "swap storm). It needs a restart (or to be continued)."
    )
    Params = ProcessParams

    def inject(self, ctx: FaultContext) -> RevertState:
        node = self.params.node  # type: ignore[attr-defined]
        _require_running(ctx, node)
        ctx.lab.signal_node(node, signal.SIGSTOP)
        return {}

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        node = self.params.node  # type: ignore[attr-defined]
        if _running(ctx, node):
            ctx.lab.signal_node(node, signal.SIGCONT)
        else:
            ctx.lab.start_node(node)


@register
class ServiceStopped(Fault):
    kind = "service_stopped"
    family = "process"
    title = "A node's service was stopped"
    symptom = (
        "Connections to the node are refused; the lab console shows it not running; its log ends "
        "with a clean shutdown line."
    )
    root_cause = (
        "Someone stopped the service (maintenance that was never finished, a stop instead of a "
        "restart) and did not start it again."
    )
    Params = ProcessParams

    def inject(self, ctx: FaultContext) -> RevertState:
        node = self.params.node  # type: ignore[attr-defined]
        _require_running(ctx, node)
        ctx.lab.stop_node(node)
        return {}

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        node = self.params.node  # type: ignore[attr-defined]
        if not _running(ctx, node):
            ctx.lab.start_node(node)


class StaleConfigParams(ProcessParams):
    stale: Literal["missing_ae", "old_port"] = "missing_ae"
    """What the old config lacks: a peer's AE-table row, or the current DICOM port."""
    ae_title: str = "CT_1"
    """missing_ae: the peer added after the old config was saved."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """old_port: the DICOM port in the old config; None: a free port chosen at injection."""


@register
class StaleConfigRestart(Fault):
    kind = "stale_config_restart"
    family = "process"
    title = "A node restarted with a stale config file"
    symptom = (
        "After a restart the node is up and healthy, but what worked before fails: a modality "
        "added recently is refused (A-ASSOCIATE-RJ 1/1/3, calling AE title not recognised), or "
        "every peer gets 'Connection refused' because the node listens on an old port."
    )
    root_cause = (
        "An old copy of the node's config file was put back (a backup restore, a configuration "
        "management run) and the node restarted with it; the live config must be fixed again."
    )
    Params = StaleConfigParams

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, StaleConfigParams)
        _require_running(ctx, p.node)
        path = ctx.lab.paths.config(p.node)
        saved = json.loads(path.read_text(encoding="utf-8"))
        stale = json.loads(json.dumps(saved))
        if p.stale == "missing_ae":
            rows = stale.get("ae_table")
            if not isinstance(rows, list) or not any(r["ae_title"] == p.ae_title for r in rows):
                raise FaultError(f"{p.node} has no AE-table row {p.ae_title} to lose")
            stale["ae_table"] = [r for r in rows if r["ae_title"] != p.ae_title]
            marker: dict[str, Any] = {"ae_title": p.ae_title}
        else:
            if "dicom" not in stale:
                raise FaultError(f"{p.node} has no DICOM listener")
            current = stale["dicom"]["port"]
            port = p.port or free_ports(1, avoid={current})[0]
            if port == current:
                raise FaultError(f"{p.node} already listens on port {port}")
            stale["dicom"]["port"] = port
            marker = {"port": port}
        _write_json(path, stale)
        ctx.lab.restart_node(p.node)
        return {"saved": saved, "marker": marker}

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        p = self.params
        assert isinstance(p, StaleConfigParams)
        if _running(ctx, p.node) and not self._still_stale(ctx, state["marker"]):
            return  # the trainee fixed the live config (saved to the file): nothing to undo
        _write_json(ctx.lab.paths.config(p.node), state["saved"])
        ctx.lab.restart_node(p.node)

    def _still_stale(self, ctx: FaultContext, marker: dict[str, Any]) -> bool:
        node = self.params.node  # type: ignore[attr-defined]
        try:
            live = ctx.config(node)
        except AdminApiError:
            return True  # a node that does not answer gets its good config back
        if "ae_title" in marker:
            return not any(r["ae_title"] == marker["ae_title"] for r in live.get("ae_table", []))
        return live.get("dicom", {}).get("port") == marker["port"]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace a config file atomically, as the node itself saves it."""
    tmp = path.with_name(f".{path.name}.fault.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
