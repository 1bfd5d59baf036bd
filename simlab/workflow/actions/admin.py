"""Console actions on a node: its config, its AE table, its process, and any admin API call.

These are what a PACS administrator does at a vendor console: read and change settings, add or
fix a peer in the AE table, restart a service. Config changes go through the node's admin API
(validated by the node's own model, persisted and applied live); restarts through the runtime.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from simlab.client.admin import path_part
from simlab.runtime.docker_runtime import ADDRESS_KEYS
from simlab.workflow.actions.engine import (
    ActionArgs,
    ActionError,
    ActionsBase,
    NodeArgs,
    Outcome,
    action,
)

ROLE_PEERS = ("destination", "mwl", "mpps")
"""The peers of a modality, which has no AE table: each is one config field."""


class ConfigPatchArgs(NodeArgs):
    patch: dict[str, Any]
    """A JSON merge patch (RFC 7386): objects merge, values replace, null deletes."""


class ConfigSetArgs(NodeArgs):
    key: str = Field(min_length=1)
    """A dotted path into the config: 'destination.port', 'dicom.ae_title', 'ae_table.0.port'."""
    value: Any
    """The new value (any JSON value)."""


class AePutArgs(NodeArgs):
    ae_title: str
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    description: str | None = None


class AeDeleteArgs(NodeArgs):
    ae_title: str


class NodeStatusArgs(ActionArgs):
    node: str | None = None
    """One node, or every node when absent."""


class ApiArgs(NodeArgs):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    path: str = Field(pattern=r"^/")
    body: Any = None
    query: dict[str, Any] = Field(default_factory=dict)


def json_copy(value: Any) -> Any:
    """A deep copy of a JSON value (the action's own arguments stay as journalled)."""
    return json.loads(json.dumps(value))


def _split(key: str) -> list[str | int]:
    return [int(p) if p.isdigit() else p for p in key.split(".")]


def get_path(config: Any, key: str) -> Any:
    """The value at a dotted path; ActionError naming the first missing part."""
    value = config
    walked = []
    for part in _split(key):
        walked.append(str(part))
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            raise ActionError(f"the config has no {'.'.join(walked)}") from None
    return value


def set_path(config: Any, key: str, value: Any) -> None:
    """Set the value at a dotted path (the parent must exist; the last key may be new)."""
    parts = _split(key)
    parent = get_path(config, ".".join(map(str, parts[:-1]))) if len(parts) > 1 else config
    try:
        parent[parts[-1]] = value
    except (IndexError, TypeError):
        raise ActionError(f"cannot set {key}: no such list item or field") from None


def _brief(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:59] + "…"


class AdminActions(ActionsBase):
    """config.*, ae.*, node.*, api."""

    @action("config.get", NodeArgs)
    def config_get(self, a: NodeArgs) -> Outcome:
        """Show a node's configuration."""
        cfg = self.client(a.node).get("/config")
        return Outcome(cfg, f"{a.node}: configuration read")

    @action("config.patch", ConfigPatchArgs)
    def config_patch(self, a: ConfigPatchArgs) -> Outcome:
        """Change part of a node's configuration (JSON merge patch)."""
        client = self.client(a.node)
        patch = a.patch
        if self.lab.docker:
            patch = self._node_facing(json_copy(patch), client.get("/config"))
        answer = client.patch("/config", patch)
        restarted = answer.get("restarted") or []
        text = f"{a.node}: config patched" + (
            f", restarted {', '.join(restarted)}" if restarted else ""
        )
        return Outcome(answer, text)

    @action("config.set", ConfigSetArgs)
    def config_set(self, a: ConfigSetArgs) -> Outcome:
        """Set one setting by its dotted path, e.g. destination.port."""
        if a.value is None:
            raise ActionError("config.set: value null would delete the setting; use config.patch")
        client = self.client(a.node)
        cfg = client.get("/config")
        old = get_path(cfg, a.key) if _has(cfg, a.key) else None
        parts = _split(a.key)
        if any(isinstance(p, int) for p in parts):
            set_path(cfg, a.key, a.value)  # lists do not merge: replace the whole config
            answer = client.put("/config", self._node_facing(cfg, cfg))
        else:
            patch: Any = a.value
            for part in reversed(parts):
                patch = {part: patch}
            answer = client.patch("/config", self._node_facing(patch, cfg))
        restarted = answer.get("restarted") or []
        text = f"{a.node}: {a.key} = {_brief(a.value)} (was {_brief(old)})"
        if restarted:
            text += f", restarted {', '.join(restarted)}"
        return Outcome({"key": a.key, "old": old, "new": a.value, **answer}, text)

    # ------------------------------------------------------------------------------ AE table
    @action("ae.list", NodeArgs)
    def ae_list(self, a: NodeArgs) -> Outcome:
        """List the peers a node knows (its AE table; a modality's destination, MWL, MPPS)."""
        if self.entry(a.node).role == "modality":
            cfg = self.client(a.node).get("/config")
            rows = [{"role": r, **cfg[r]} for r in ROLE_PEERS if cfg.get(r)]
        else:
            rows = self.client(a.node).get("/ae-table")
        listed = ", ".join(
            (f"{r['role']} " if "role" in r else "") + f"{r['ae_title']}@{r['host']}:{r['port']}"
            for r in rows
        )
        return Outcome(rows, f"{a.node}: {len(rows)} AE(s): {listed or 'none'}")

    @action("ae.put", AePutArgs)
    def ae_put(self, a: AePutArgs) -> Outcome:
        """Add a peer to a node's AE table, or change it."""
        self._no_modality(a.node, "ae.put")
        body: dict[str, Any] = {"host": self.lab.node_facing_host(a.host, a.port), "port": a.port}
        if a.description is not None:
            body["description"] = a.description
        row = self.client(a.node).put(f"/ae-table/{path_part(a.ae_title)}", body)
        return Outcome(row, f"{a.node}: AE {row['ae_title']} = {row['host']}:{row['port']}")

    @action("ae.delete", AeDeleteArgs)
    def ae_delete(self, a: AeDeleteArgs) -> Outcome:
        """Remove a peer from a node's AE table."""
        self._no_modality(a.node, "ae.delete")
        answer = self.client(a.node).delete(f"/ae-table/{path_part(a.ae_title)}")
        return Outcome(answer, f"{a.node}: AE {a.ae_title} removed")

    def _node_facing(self, patch: Any, current: Any) -> Any:
        """`patch` (changed in place) with every address as a node must use it.

        On docker a node reaches a peer by the peer's node id, and 127.0.0.1 inside a container
        is the container itself. An address typed as the administrator sees it (a node's port
        published on 127.0.0.1), or a port changed under a host that names another node, gets
        the host of the node that owns the port (Lab.node_facing_host). Host and port are the
        patch's, or the current config's beside them.
        """
        if isinstance(patch, dict):
            here = current if isinstance(current, dict) else {}
            for host_key, port_key in ADDRESS_KEYS:
                if host_key not in patch and port_key not in patch:
                    continue
                host = patch.get(host_key, here.get(host_key))
                port = patch.get(port_key, here.get(port_key))
                if isinstance(host, str) and isinstance(port, int):
                    facing = self.lab.node_facing_host(host, port)
                    if facing != host or host_key in patch:
                        patch[host_key] = facing
            for key, value in patch.items():
                self._node_facing(value, here.get(key))
        elif isinstance(patch, list):
            olds = current if isinstance(current, list) else []
            for i, value in enumerate(patch):
                self._node_facing(value, olds[i] if i < len(olds) else None)
        return patch

    def _no_modality(self, node: str, name: str) -> None:
        if self.entry(node).role == "modality":
            raise ActionError(
                f"{name}: {node} is a modality and has no AE table; change its peers with "
                f"config.set (e.g. key destination.port)"
            )

    # ---------------------------------------------------------------------------- processes
    @action("node.restart", NodeArgs)
    def node_restart(self, a: NodeArgs) -> Outcome:
        """Restart a node: it reads its config file again, as after a reboot."""
        self.entry(a.node)
        self.lab.restart_node(a.node)
        return Outcome({"node": a.node}, f"{a.node} restarted")

    @action("node.start", NodeArgs)
    def node_start(self, a: NodeArgs) -> Outcome:
        """Start a node that is down."""
        self.entry(a.node)
        self.lab.start_node(a.node)
        return Outcome({"node": a.node}, f"{a.node} started")

    @action("node.stop", NodeArgs)
    def node_stop(self, a: NodeArgs) -> Outcome:
        """Stop a node."""
        self.entry(a.node)
        was = self.lab.stop_node(a.node)
        return Outcome({"node": a.node, "was_running": was}, f"{a.node} stopped")

    @action("node.status", NodeStatusArgs)
    def node_status(self, a: NodeStatusArgs) -> Outcome:
        """Health of one node or of every node."""
        if a.node is not None:
            self.entry(a.node)
        rows = [
            {
                "node": st.entry.node_id,
                "role": st.entry.role,
                "state": st.state,
                "detail": st.detail,
                "ae_title": st.entry.ae_title,
                "dicom_port": st.entry.dicom_port,
                "hl7_port": st.entry.hl7_port,
            }
            for st in self.lab.status()
            if a.node in (None, st.entry.node_id)
        ]
        text = ", ".join(f"{r['node']} {r['state']}" for r in rows)
        return Outcome(rows, text, ok=all(r["state"] == "up" for r in rows))

    @action("api", ApiArgs)
    def api(self, a: ApiArgs) -> Outcome:
        """Any call to a node's admin API."""
        answer = self.client(a.node).request(a.method, a.path, a.body, **a.query)
        return Outcome(answer, f"{a.node}: {a.method} {a.path} ok")


def _has(config: Any, key: str) -> bool:
    try:
        get_path(config, key)
    except ActionError:
        return False
    return True
