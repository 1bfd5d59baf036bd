"""The lab directory and its manifest (lab.json): what nodes the lab has and where they listen.

The manifest is the orchestrator's whole memory of a lab; the nodes' own state lives in their
directories. Any command (`lab status`, `lab down`, the TUI) can pick a lab up from its manifest.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

LAB_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
DEFAULT_HOME = Path(".simlab")


def default_home() -> Path:
    """Where labs live: $SIMLAB_HOME or ./.simlab."""
    return Path(os.environ.get("SIMLAB_HOME", DEFAULT_HOME))


class NodeEntry(BaseModel):
    """One node of a lab, as the orchestrator knows it."""

    model_config = ConfigDict(extra="forbid")

    node_id: str
    role: str
    display_name: str = ""
    module: str
    """Python module run as `python -m <module> --config <config>`."""
    ae_title: str | None = None
    host: str = "127.0.0.1"
    dicom_port: int | None = None
    hl7_port: int | None = None
    admin_port: int
    extra_ports: list[int] = Field(
        default_factory=list, description="Other ports it listens on (network links)"
    )
    pid: int | None = None
    """Process id on the local runtime while the node runs."""
    container: str | None = None
    """Container id (short) on the docker runtime while the node runs."""

    @property
    def admin_url(self) -> str:
        return f"http://{self.host}:{self.admin_port}"


class LabManifest(BaseModel):
    """lab.json."""

    model_config = ConfigDict(extra="forbid")

    lab_id: str
    runtime: Literal["local", "docker"] = "local"
    docker_base: str | None = None
    """The base image the node image is built from (docker runtime; None: the default)."""
    state: Literal["created", "starting", "up", "stopping", "down", "failed"] = "created"
    created_at: float
    supervisor_pid: int | None = None
    """The process that started the lab in the foreground and watches it (if any)."""
    nodes: list[NodeEntry] = Field(default_factory=list)

    def node(self, node_id: str) -> NodeEntry:
        for entry in self.nodes:
            if entry.node_id == node_id:
                return entry
        known = ", ".join(n.node_id for n in self.nodes)
        raise KeyError(f"lab {self.lab_id} has no node {node_id!r} (nodes: {known})")


class LabPaths:
    """Where everything of one lab lives."""

    def __init__(self, home: Path, lab_id: str) -> None:
        if not LAB_ID_RE.match(lab_id):
            raise ValueError(f"lab id {lab_id!r}: use 1-40 lower-case letters, digits, '-' or '_'")
        self.home = home.resolve()
        self.lab_id = lab_id
        self.root = self.home / "labs" / lab_id

    @property
    def manifest(self) -> Path:
        return self.root / "lab.json"

    @property
    def token(self) -> Path:
        return self.root / "admin.token"

    @property
    def events(self) -> Path:
        return self.root / "events.jsonl"

    def node_dir(self, node_id: str) -> Path:
        return self.root / "nodes" / node_id

    def config(self, node_id: str) -> Path:
        return self.node_dir(node_id) / "config.json"

    def log(self, node_id: str) -> Path:
        return self.node_dir(node_id) / "node.log"

    def stderr(self, node_id: str) -> Path:
        return self.node_dir(node_id) / "stderr.log"


def read_manifest(paths: LabPaths) -> LabManifest:
    return LabManifest.model_validate_json(paths.manifest.read_bytes())


def write_manifest(paths: LabPaths, manifest: LabManifest) -> None:
    """Atomic write: a concurrent reader sees the old or the new manifest, never half."""
    paths.root.mkdir(parents=True, exist_ok=True)
    tmp = paths.manifest.with_name(".lab.json.tmp")
    tmp.write_text(json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n", "utf-8")
    os.replace(tmp, paths.manifest)


def list_labs(home: Path) -> list[str]:
    labs = home / "labs"
    if not labs.is_dir():
        return []
    return sorted(p.name for p in labs.iterdir() if (p / "lab.json").exists())
