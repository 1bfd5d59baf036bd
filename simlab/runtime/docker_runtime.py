"""The docker runtime: the same node entrypoints, one container a node, on the lab's own network.

What changes from the local runtime, and nothing else:
- each node runs `python -m <module> --config /lab/nodes/<id>/config.json` in a container of
  the one simlab node image, named `simlab-<lab>-<node>`, labelled with its lab and node;
- the lab creates a bridge network `simlab-<lab>` (and removes it at `down`); on it every
  node is reachable by its node id, so configs name peers by node id and listeners bind
  0.0.0.0 inside their container (`containerize_config`);
- a node's DICOM, HL7 and admin ports are published on 127.0.0.1 only, under the same numbers
  the manifest records, so DCMTK, the admin API and every lab-side tool reach a node the same way
  on both runtimes;
- the node's directory (config, token, data, logs) is bind-mounted from the lab directory, and
  the container runs as the invoking user, so the lab directory stays the whole record;
- the administrator's workstation (ADMIN_WS, the host) is `host.docker.internal`;
- each container has small size-limited tmpfs mounts under /lab/volumes for the storage faults
  (a real ENOSPC without root on the host; simlab.runtime.volumes).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from simlab.runtime.docker_engine import DockerUnavailable, engine
from simlab.runtime.manifest import LabManifest, LabPaths, NodeEntry
from simlab.runtime.volumes import DockerVolume, container_tmpfs

LABEL_LAB = "org.simlab.lab"
LABEL_NODE = "org.simlab.node"
LABEL_ROOT = "org.simlab.root"
"""The lab directory a container or network belongs to: lab ids repeat across homes."""
HOST_ALIAS = "host.docker.internal"
"""The host (the administrator's workstation) as containers see it (Docker's host-gateway)."""
ANY = "0.0.0.0"
MOUNT_ROOT = "/lab/nodes"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
ADDRESS_KEYS = (("host", "port"), ("upstream_host", "upstream_port"))
"""(host key, port key) pairs of a node config that name an address."""


class DockerRuntimeError(RuntimeError):
    """A container or network operation failed; the message names the node and the cause."""


def lab_key(root: Path) -> str:
    """Six hex digits of the lab directory's path: two homes may both have a lab `default`."""
    return hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:6]


def container_name(lab_id: str, node_id: str, key: str) -> str:
    return f"simlab-{lab_id}-{key}-{node_id}"


def network_name(lab_id: str, key: str) -> str:
    return f"simlab-{lab_id}-{key}"


def own_ports(entry: NodeEntry) -> list[int]:
    """Every port the node listens on (admin, DICOM, HL7, network links)."""
    ports = [entry.admin_port, entry.dicom_port, entry.hl7_port, *entry.extra_ports]
    return [p for p in ports if p]


def port_owners(manifest: LabManifest) -> dict[int, str]:
    """Port → the id of the node listening on it (ports are unique within a lab)."""
    return {port: e.node_id for e in manifest.nodes for port in own_ports(e)}


def containerize_config(raw: dict[str, Any], node_id: str, owners: dict[int, str]) -> None:
    """Rewrite one node's config (in place) for the lab network.

    Ports are unique within a lab, so a port says whose address it is: the node's own → bind
    0.0.0.0; another node's → that node's id (its network alias); anything else (ADMIN_WS on
    the host, an address a trainee typed) → the host. A bare `host` without a port is a bind
    address (the network proxy's) and becomes 0.0.0.0.
    """

    def rewrite(obj: Any) -> None:
        if isinstance(obj, list):
            for item in obj:
                rewrite(item)
            return
        if not isinstance(obj, dict):
            return
        for host_key, port_key in ADDRESS_KEYS:
            if host_key in obj and isinstance(obj.get(port_key), int):
                owner = owners.get(obj[port_key])
                if owner == node_id:
                    obj[host_key] = ANY
                elif owner is not None:
                    obj[host_key] = owner
                elif obj[host_key] in LOOPBACK_NAMES:
                    obj[host_key] = HOST_ALIAS
            elif host_key == "host" and host_key in obj and port_key not in obj:
                obj[host_key] = ANY
        for value in obj.values():
            rewrite(value)

    rewrite(raw)


def containerize_lab(paths: LabPaths, manifest: LabManifest) -> None:
    """Rewrite every node's config file of a new lab for the docker runtime."""
    owners = port_owners(manifest)
    for entry in manifest.nodes:
        path = paths.config(entry.node_id)
        raw = json.loads(path.read_text(encoding="utf-8"))
        containerize_config(raw, entry.node_id, owners)
        path.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")


class ContainerProcess:
    """A node's container, seen the way the lab watches a local process."""

    def __init__(self, runtime: DockerRuntime, entry: NodeEntry) -> None:
        self.runtime = runtime
        self.node_id = entry.node_id
        self.entry = entry
        self.pid = 0

    def alive(self) -> bool:
        return self.runtime.running(self.entry)

    def exit_code(self) -> int | None:
        return self.runtime.exit_code(self.entry)


class DockerRuntime:
    """Containers and the network of one lab on one Docker engine."""

    def __init__(self, paths: LabPaths, manifest: LabManifest, client: Any = None) -> None:
        self.paths = paths
        self.manifest = manifest
        self._client = client
        self.key = lab_key(paths.root)
        self.labels = {LABEL_LAB: manifest.lab_id, LABEL_ROOT: str(paths.root.resolve())}

    def name(self, node_id: str) -> str:
        return container_name(self.manifest.lab_id, node_id, self.key)

    @property
    def network(self) -> str:
        return network_name(self.manifest.lab_id, self.key)

    def _filters(self) -> dict[str, Any]:
        return {"label": [f"{k}={v}" for k, v in self.labels.items()]}

    # ------------------------------------------------------------------------------ engine
    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = engine()
        return self._client

    def _container(self, entry: NodeEntry) -> Any | None:
        from docker.errors import NotFound

        try:
            return self.client.containers.get(self.name(entry.node_id))
        except NotFound:
            return None

    def ensure_network(self) -> Any:
        """The lab's bridge network (created once, labelled with the lab)."""
        found = self.client.networks.list(names=[self.network])
        if found:
            return found[0]
        return self.client.networks.create(self.network, driver="bridge", labels=self.labels)

    def image(self, progress: Callable[[str], None] | None = None) -> str:
        """The node image (built, or found in the cache of the image builder)."""
        from simlab.runtime import docker_image

        return docker_image.ensure_image(
            self.client, base=self.manifest.docker_base, progress=progress
        )

    # --------------------------------------------------------------------------- one node
    def spawn(self, entry: NodeEntry, image: str) -> ContainerProcess:
        """(Re)create and start the node's container."""
        from docker.errors import APIError

        self._remove(entry)
        node_dir = self.paths.node_dir(entry.node_id).resolve()
        mount = f"{MOUNT_ROOT}/{entry.node_id}"
        try:
            container = self.client.containers.run(
                image,
                command=["python", "-m", entry.module, "--config", f"{mount}/config.json"],
                name=self.name(entry.node_id),
                hostname=entry.node_id,
                working_dir=mount,
                user=f"{os.getuid()}:{os.getgid()}",
                volumes={str(node_dir): {"bind": mount, "mode": "rw"}},
                tmpfs=container_tmpfs(os.getuid(), os.getgid()),
                ports={f"{p}/tcp": ("127.0.0.1", p) for p in own_ports(entry)},
                network=self.network,
                networking_config={
                    self.network: self.client.api.create_endpoint_config(aliases=[entry.node_id])
                },
                extra_hosts={HOST_ALIAS: "host-gateway"},
                labels={**self.labels, LABEL_NODE: entry.node_id},
                environment={"PYTHONUNBUFFERED": "1"},
                detach=True,
            )
        except APIError as exc:
            raise DockerRuntimeError(start_error(entry, exc)) from None
        entry.container = container.id[:12]
        return ContainerProcess(self, entry)

    def volume(self, entry: NodeEntry, name: str) -> DockerVolume:
        """One of the node's scratch tmpfs mounts (see simlab.runtime.volumes)."""
        return DockerVolume(self._container(entry), name)

    def running(self, entry: NodeEntry) -> bool:
        container = self._container(entry)
        if container is None:
            return False
        return container.status in ("running", "paused")

    def exit_code(self, entry: NodeEntry) -> int | None:
        container = self._container(entry)
        if container is None:
            return None
        container.reload()
        state = container.attrs.get("State", {})
        return None if state.get("Running") else int(state.get("ExitCode", 0))

    def stop(self, entry: NodeEntry, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `grace`; the container is removed (its data stays in the
        bind-mounted node directory); stderr goes to the node's stderr.log first."""
        container = self._container(entry)
        if container is None:
            return
        from docker.errors import APIError

        with contextlib.suppress(APIError):
            if container.status == "paused":
                container.unpause()
            container.stop(timeout=int(grace))
        self._keep_stderr(entry, container)
        self._remove(entry)

    def _remove(self, entry: NodeEntry, wait: float = 180.0) -> None:
        """Remove the node's container and wait until its name is free again (on the vfs storage
        driver a removal copies nothing but still deletes a whole root file system)."""
        from docker.errors import APIError

        deadline = time.monotonic() + wait
        while (container := self._container(entry)) is not None:
            with contextlib.suppress(APIError):
                container.remove(force=True)
            if time.monotonic() > deadline:
                raise DockerRuntimeError(f"node {entry.node_id}: its old container stays")
            time.sleep(0.1)

    def signal(self, entry: NodeEntry, sig: int) -> None:
        """SIGKILL: a crash; SIGSTOP/SIGCONT: a hang (docker pause/unpause); others as sent."""
        container = self._container(entry)
        if container is None:
            raise DockerRuntimeError(f"node {entry.node_id} has no container")
        if sig == signal.SIGSTOP:
            container.pause()
        elif sig == signal.SIGCONT:
            container.unpause()
        else:
            container.kill(signal=int(sig))
            if sig == signal.SIGKILL:
                container.wait(timeout=10)
                self._keep_stderr(entry, container)

    def _keep_stderr(self, entry: NodeEntry, container: Any) -> None:
        from docker.errors import APIError

        with contextlib.suppress(APIError, OSError):
            logs = container.logs(stdout=False, stderr=True)
            if logs:
                with open(self.paths.stderr(entry.node_id), "ab") as fh:
                    fh.write(logs)

    # ------------------------------------------------------------------------------ lab
    def remove_all(self) -> list[str]:
        """Remove every container and the network of this lab; the names removed."""
        from docker.errors import APIError, NotFound

        removed = []
        for container in self.client.containers.list(all=True, filters=self._filters()):
            with contextlib.suppress(APIError, NotFound):
                container.remove(force=True)
                removed.append(container.name)
        for network in self.client.networks.list(filters=self._filters()):
            with contextlib.suppress(APIError, NotFound):
                network.remove()
                removed.append(network.name)
        return removed

    def leftovers(self) -> list[str]:
        """Containers and networks of this lab still on the engine (none after `down`)."""
        names = [c.name for c in self.client.containers.list(all=True, filters=self._filters())]
        names += [n.name for n in self.client.networks.list(filters=self._filters())]
        return names


def start_error(entry: NodeEntry, exc: Exception) -> str:
    """A container start failure in words: a port in use, no image, or the engine's text."""
    text = str(getattr(exc, "explanation", None) or exc)
    if "port is already allocated" in text or "address already in use" in text:
        return (
            f"node {entry.node_id}: a port of {own_ports(entry)} is in use on 127.0.0.1 "
            f"(another lab or program listens there): {text}"
        )
    if "No such image" in text:
        return f"node {entry.node_id}: the node image is missing (simlab image build): {text}"
    return f"node {entry.node_id}: the container did not start: {text}"


def require_engine() -> None:
    """Raise DockerUnavailable (a clear message) when no engine answers."""
    engine()


__all__: Iterable[str] = (
    "ContainerProcess",
    "DockerRuntime",
    "DockerRuntimeError",
    "DockerUnavailable",
    "containerize_config",
    "containerize_lab",
)
