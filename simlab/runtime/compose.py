"""A Compose file for a docker-runtime lab: the same containers, for `docker compose` elsewhere.

A classroom may run labs with Docker Compose, or on an engine simlab does not drive. The file
describes exactly what `lab up --runtime docker` creates — one service a node from the node
image, the node's directory bind-mounted from beside the file, ports published on 127.0.0.1
under the manifest's numbers, the lab's own bridge network with each node aliased by its id —
so `docker compose -f <lab>/compose.yaml up -d` in the lab directory starts the same lab, and
the admin API, DCMTK and `simlab` commands reach it the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from simlab.runtime.docker_runtime import (
    HOST_ALIAS,
    LABEL_LAB,
    LABEL_NODE,
    MOUNT_ROOT,
    container_name,
    lab_key,
    network_name,
    own_ports,
)
from simlab.runtime.manifest import LabManifest
from simlab.runtime.volumes import container_tmpfs

DEFAULT_IMAGE = "simlab-node:latest"


class ComposeError(ValueError):
    """The lab cannot be described as a Compose file (the message says why)."""


def compose_document(
    manifest: LabManifest, root: Path, image: str = DEFAULT_IMAGE
) -> dict[str, Any]:
    """The Compose file's content for a lab (directory `root`) on the docker runtime."""
    if manifest.runtime != "docker":
        raise ComposeError(
            f"lab {manifest.lab_id} runs on the {manifest.runtime} runtime, whose configs "
            "address peers on 127.0.0.1; create it with `simlab lab up --runtime docker` "
            "to export a Compose file"
        )
    key = lab_key(root)
    network = network_name(manifest.lab_id, key)
    services: dict[str, Any] = {}
    uid, gid = os.getuid(), os.getgid()
    for entry in manifest.nodes:
        mount = f"{MOUNT_ROOT}/{entry.node_id}"
        services[entry.node_id] = {
            "image": image,
            "container_name": container_name(manifest.lab_id, entry.node_id, key),
            "hostname": entry.node_id,
            "command": ["python", "-m", entry.module, "--config", f"{mount}/config.json"],
            "working_dir": mount,
            "user": f"{uid}:{gid}",
            "volumes": [f"./nodes/{entry.node_id}:{mount}"],
            "tmpfs": [f"{path}:{opts}" for path, opts in container_tmpfs(uid, gid).items()],
            "ports": [f"127.0.0.1:{p}:{p}" for p in own_ports(entry)],
            "networks": {network: {"aliases": [entry.node_id]}},
            "extra_hosts": [f"{HOST_ALIAS}:host-gateway"],
            "environment": {"PYTHONUNBUFFERED": "1"},
            "labels": {LABEL_LAB: manifest.lab_id, LABEL_NODE: entry.node_id},
        }
    return {
        "name": f"simlab-{manifest.lab_id}",
        "services": services,
        "networks": {
            network: {
                "name": network,
                "driver": "bridge",
                "labels": {LABEL_LAB: manifest.lab_id},
            }
        },
    }


def write_compose(
    manifest: LabManifest, root: Path, path: Path, image: str = DEFAULT_IMAGE
) -> Path:
    """Write the Compose file (YAML) and return its path."""
    document = compose_document(manifest, root, image)
    header = (
        f"# simlab lab {manifest.lab_id}: start it from this directory with\n"
        f"#   docker compose -f {path.name} up -d\n"
        "# (the image comes from `simlab image build`; node data stays under ./nodes)\n"
    )
    path.write_text(header + yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path
