"""A lab: create its directory and node configs, start its nodes, watch them, stop them.

The orchestrator reaches nodes only through their processes, their files and their admin APIs.
This module is runtime-neutral in what it records (the manifest); process handling lives in
`process.py` for the local runtime.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simlab.client.admin import AdminApiError, AdminClient
from simlab.common.node_runner import EXIT_ADDRESS_IN_USE
from simlab.runtime.docker_engine import DockerUnavailable
from simlab.runtime.docker_runtime import (
    HOST_ALIAS,
    LOOPBACK_NAMES,
    DockerRuntime,
    DockerRuntimeError,
    containerize_lab,
    port_owners,
)
from simlab.runtime.events import EventLog
from simlab.runtime.manifest import (
    LabManifest,
    LabPaths,
    NodeEntry,
    list_labs,
    read_manifest,
    write_manifest,
)
from simlab.runtime.ports import free_ports
from simlab.runtime.process import (
    NodeStartError,
    kill_now,
    pid_alive,
    pid_cmdline,
    spawn_node,
    stop_process,
    wait_healthy,
)
from simlab.runtime.topology import NodeSpec, default_department, write_node_dir
from simlab.runtime.volumes import LocalVolume, ScratchVolume, VolumeError

START_ATTEMPTS = 3
DOCKER_PARALLEL_CREATE = 4
"""Containers created at once at `up` (the engine serialises part of the work anyway)."""
DOCKER_NODE_TIMEOUT = 120.0
"""Seconds a node started on its own in a container may take to become healthy."""
"""How often a node whose port was taken meanwhile is retried with fresh ports."""


class LabError(RuntimeError):
    """A lab operation failed in a way the user must hear about (message says what to do)."""


@dataclass
class NodeStatus:
    """What `lab status` shows for one node."""

    entry: NodeEntry
    state: str
    """'up', 'unhealthy', 'down' (no process) or 'not started'."""
    detail: str = ""
    health: dict[str, Any] = field(default_factory=dict)


ProgressCallback = Callable[[str, str], None]
"""Called with (node_id, message) while a lab starts, for progress output."""


class Lab:
    """One lab directory and the nodes it runs on the local runtime."""

    def __init__(self, paths: LabPaths, manifest: LabManifest) -> None:
        self.paths = paths
        self.manifest = manifest
        self.events = EventLog(paths.events)
        self._procs: dict[str, Any] = {}
        self._docker_runtime: DockerRuntime | None = None
        self._image: str | None = None
        self._save_lock = threading.Lock()

    # ----------------------------------------------------------------- creation and loading
    @classmethod
    def create(
        cls,
        home: Path,
        lab_id: str,
        specs_factory: Callable[[Callable[[int], list[int]]], list[NodeSpec]] | None = None,
        runtime: str = "local",
        docker_base: str | None = None,
    ) -> Lab:
        """Write a new lab directory: token, one directory and config per node, manifest.

        Ports are chosen free on loopback and distinct from every other lab's under `home`. On
        the docker runtime the configs name peers by node id (see docker_runtime).
        """
        if runtime not in ("local", "docker"):
            raise LabError(f"unknown runtime {runtime!r}: use local or docker")
        paths = LabPaths(home, lab_id)
        if paths.manifest.exists():
            raise LabError(f"lab {lab_id} already exists at {paths.root}")
        taken = _ports_of_other_labs(home, lab_id)

        def allocate(n: int) -> list[int]:
            ports = free_ports(n, avoid=taken)
            taken.update(ports)
            return ports

        specs = (specs_factory or default_department)(allocate)
        token = secrets.token_hex(24)
        paths.root.mkdir(parents=True, exist_ok=True)
        paths.token.write_text(token + "\n", encoding="utf-8")
        paths.token.chmod(0o600)
        entries = []
        for spec in specs:
            cfg = spec.config
            write_node_dir(paths.node_dir(cfg.node_id), cfg, token)
            dicom = getattr(cfg, "dicom", None)
            hl7 = getattr(cfg, "hl7", None)
            entries.append(
                NodeEntry(
                    node_id=cfg.node_id,
                    role=cfg.role,
                    display_name=cfg.display_name,
                    module=spec.module,
                    ae_title=dicom.ae_title if dicom else None,
                    host=cfg.admin.host,
                    dicom_port=dicom.port if dicom else None,
                    hl7_port=hl7.port if hl7 else None,
                    admin_port=cfg.admin.port,
                    extra_ports=[link.listen_port for link in getattr(cfg, "links", [])],
                )
            )
        manifest = LabManifest(
            lab_id=lab_id,
            created_at=time.time(),
            nodes=entries,
            runtime=runtime,  # type: ignore[arg-type]
            docker_base=docker_base,
        )
        if runtime == "docker":
            containerize_lab(paths, manifest)
        write_manifest(paths, manifest)
        lab = cls(paths, manifest)
        lab.events.append("lab_created", lab_id=lab_id, nodes=[e.node_id for e in entries])
        return lab

    @classmethod
    def open(cls, home: Path, lab_id: str) -> Lab:
        paths = LabPaths(home, lab_id)
        if not paths.manifest.exists():
            known = ", ".join(list_labs(home)) or "none"
            raise LabError(f"no lab {lab_id!r} under {home} (labs: {known})")
        return cls(paths, read_manifest(paths))

    @classmethod
    def clear_stopped(cls, home: Path, lab_id: str) -> bool:
        """Make room for a fresh lab of this id: a stopped one is deleted (True); a running one
        is an error naming how to attach or stop it; none there is fine (False)."""
        try:
            old = cls.open(home, lab_id)
        except (LabError, ValueError):
            return False
        if any(old.node_running(e) for e in old.manifest.nodes):
            raise LabError(
                f"lab {lab_id} is running; attach to it with `simlab tui --lab {lab_id}` "
                f"or stop it with `simlab lab down --lab {lab_id}`"
            )
        old.destroy()
        return True

    @classmethod
    def open_or_create(cls, home: Path, lab_id: str) -> Lab:
        paths = LabPaths(home, lab_id)
        return cls.open(home, lab_id) if paths.manifest.exists() else cls.create(home, lab_id)

    # ----------------------------------------------------------------------------- access
    @property
    def token(self) -> str:
        return self.paths.token.read_text(encoding="utf-8").strip()

    def client(self, node_id: str, timeout: float = 10.0) -> AdminClient:
        entry = self.manifest.node(node_id)
        return AdminClient(entry.admin_url, self.token, timeout=timeout)

    def _save(self) -> None:
        with self._save_lock:  # containers are created from several threads (up)
            write_manifest(self.paths, self.manifest)

    @property
    def docker(self) -> bool:
        """True on the docker runtime."""
        return self.manifest.runtime == "docker"

    def scratch_volume(self, node_id: str, name: str) -> ScratchVolume:
        """A small filesystem of the node's own, for the storage faults (simlab.runtime.volumes):
        a host tmpfs on the local runtime, the container's tmpfs on docker."""
        entry = self.manifest.node(node_id)
        if self.docker:
            try:
                return self.containers.volume(entry, name)
            except DockerUnavailable as exc:
                raise VolumeError(str(exc)) from None
        return LocalVolume(self.paths.root, node_id, name)

    def node_facing_host(self, host: str, port: int) -> str:
        """The host a node must use to reach `host:port` as the administrator gave it.

        On the local runtime every address works as typed. On docker a port says whose address
        it is (ports are unique in a lab, as `containerize_config` assumes): a loopback address
        or another node's id with a port a node listens on means that node (its id on the lab
        network); any other loopback address means the host (the administrator's workstation),
        since 127.0.0.1 inside a container is the container itself. Other names stay as typed.
        """
        if not self.docker:
            return host
        owners = port_owners(self.manifest)
        if host not in LOOPBACK_NAMES and host not in owners.values():
            return host
        if port in owners:
            return owners[port]
        return HOST_ALIAS if host in LOOPBACK_NAMES else host

    @property
    def containers(self) -> DockerRuntime:
        """The lab's containers and network (docker runtime)."""
        if self._docker_runtime is None:
            self._docker_runtime = DockerRuntime(self.paths, self.manifest)
        self._docker_runtime.manifest = self.manifest
        return self._docker_runtime

    def _prepare_docker(self, say: ProgressCallback) -> None:
        """Network and image before the first container (LabError when Docker fails)."""
        try:
            self.containers.ensure_network()
            if self._image is None:
                say("image", "building or finding the node image")
                self._image = self.containers.image(lambda m: say("image", m))
                say("image", self._image)
        except (DockerUnavailable, DockerRuntimeError) as exc:
            raise LabError(str(exc)) from None
        except Exception as exc:  # the engine's own errors (docker.errors.*), in words
            raise LabError(f"docker: {exc}") from None

    # ---------------------------------------------------------------------------- lifecycle
    def up(self, timeout: float = 30.0, progress: ProgressCallback | None = None) -> None:
        """Start every node that is not running and wait until each reports healthy.

        Raises LabError naming the node and its log when one fails; the nodes already started
        are stopped again so a failed start leaves nothing behind.
        """
        say = progress or (lambda _n, _m: None)
        self.manifest.state = "starting"
        self._save()
        self.events.append("lab_starting")
        if self.docker:
            try:
                self._prepare_docker(say)
            except LabError as exc:
                self.events.append("lab_failed", error=str(exc))
                self.manifest.state = "failed"
                self._save()
                raise
        try:
            # Spawn every node first, then wait for each: start-up costs overlap, and the
            # department is up in about the time of its slowest node.
            to_start = []
            for entry in self.manifest.nodes:
                if self.node_running(entry):
                    say(entry.node_id, "already running")
                    continue
                to_start.append(entry)
            if self.docker and len(to_start) > 1:
                # Creating a container copies its root file system on the vfs driver: seconds
                # each, which overlap when the engine works on several at once.
                with ThreadPoolExecutor(max_workers=DOCKER_PARALLEL_CREATE) as pool:
                    started_at = list(pool.map(lambda e: self._spawn(e, say), to_start))
            else:
                started_at = [self._spawn(entry, say) for entry in to_start]
            for entry, started in zip(to_start, started_at, strict=True):
                self._await_healthy(entry, started, timeout, say)
        except NodeStartError as exc:
            self.events.append("lab_failed", error=str(exc))
            self.down()
            self.manifest.state = "failed"
            self._save()
            raise LabError(str(exc)) from None
        self.manifest.state = "up"
        self._save()
        self.events.append("lab_up")

    def _spawn(self, entry: NodeEntry, say: ProgressCallback) -> float:
        """Start the node's process; returns the monotonic time it was started."""
        say(entry.node_id, "starting")
        if self.docker:
            try:
                if self._image is None:  # one node started on its own (start_node)
                    self._prepare_docker(say)
                proc: Any = self.containers.spawn(entry, self._image or "")
            except (DockerRuntimeError, LabError) as exc:
                raise NodeStartError(str(exc)) from None
        else:
            proc = spawn_node(
                entry.module, self.paths.config(entry.node_id), self.paths.stderr(entry.node_id)
            )
            entry.pid = proc.pid
        self._procs[entry.node_id] = proc
        self._save()
        return time.monotonic()

    def _await_healthy(
        self, entry: NodeEntry, started: float, timeout: float, say: ProgressCallback
    ) -> None:
        """Wait until the node is healthy; a node whose port was taken meanwhile gets new ports
        and another start, at most START_ATTEMPTS in all."""
        for attempt in range(1, START_ATTEMPTS + 1):
            proc = self._procs[entry.node_id]
            try:
                wait_healthy(
                    proc,
                    self.client(entry.node_id, timeout=2.0),
                    timeout,
                    self.paths.log(entry.node_id),
                    self.paths.stderr(entry.node_id),
                )
            except NodeStartError:
                if proc.exit_code() == EXIT_ADDRESS_IN_USE and attempt < START_ATTEMPTS:
                    say(entry.node_id, "port taken, choosing new ports")
                    self._reallocate_ports(entry)
                    started = self._spawn(entry, say)
                    continue
                raise
            elapsed = time.monotonic() - started
            self.events.append(
                "node_started", node=entry.node_id, pid=proc.pid, seconds=round(elapsed, 3)
            )
            say(entry.node_id, f"healthy in {elapsed:.2f} s")
            return

    def _reallocate_ports(self, entry: NodeEntry) -> None:
        """Give a node new free ports, in its config file and in the manifest."""
        config_path = self.paths.config(entry.node_id)
        raw = json.loads(config_path.read_text(encoding="utf-8"))
        taken = _ports_of_other_labs(self.paths.home, "")
        for section in ("admin", "dicom", "hl7"):
            if section in raw:
                (port,) = free_ports(1, avoid=taken)
                taken.add(port)
                raw[section]["port"] = port
                if section == "admin":
                    entry.admin_port = port
                elif section == "dicom":
                    entry.dicom_port = port
                else:
                    entry.hl7_port = port
        config_path.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
        self._save()

    def down(self) -> list[str]:
        """Stop every node (SIGTERM, grace, SIGKILL), all at once; returns the ids stopped."""
        self.manifest.state = "stopping"
        self._save()
        running = [e for e in reversed(self.manifest.nodes) if self.node_running(e)]
        if running:
            with ThreadPoolExecutor(max_workers=len(running)) as pool:
                list(pool.map(self._stop_entry, running))
        for entry in running:
            self.events.append("node_stopped", node=entry.node_id, pid=entry.pid)
        if self.docker:
            with contextlib.suppress(DockerUnavailable):
                self.containers.remove_all()
        for entry in self.manifest.nodes:
            entry.pid = None
            entry.container = None
        self._procs.clear()
        self.manifest.state = "down"
        self._save()
        stopped = [e.node_id for e in running]
        self.events.append("lab_down", stopped=stopped)
        return stopped

    # --------------------------------------------------------------------- one node at a time
    def start_node(self, node_id: str, timeout: float = 30.0) -> None:
        """Start one node (no-op when it runs) and wait until it is healthy."""
        entry = self.manifest.node(node_id)
        if self.node_running(entry):
            return
        if self.docker:  # a container's Python starts slower on a loaded engine
            timeout = max(timeout, DOCKER_NODE_TIMEOUT)
        try:
            started = self._spawn(entry, lambda _n, _m: None)
            self._await_healthy(entry, started, timeout, lambda _n, _m: None)
        except NodeStartError as exc:
            raise LabError(str(exc)) from None

    def stop_node(self, node_id: str) -> bool:
        """Stop one node (SIGTERM, grace, SIGKILL); False when it was not running."""
        entry = self.manifest.node(node_id)
        running = self.node_running(entry)
        if running:
            self._stop_entry(entry)
            self.events.append("node_stopped", node=node_id, pid=entry.pid)
        entry.pid = None
        entry.container = None
        self._procs.pop(node_id, None)
        self._save()
        return running

    def restart_node(self, node_id: str, timeout: float = 30.0) -> None:
        """Stop and start one node: it reads its config file again, as after a reboot."""
        self.stop_node(node_id)
        self.start_node(node_id, timeout)
        self.events.append("node_restarted", node=node_id)

    def _stop_entry(self, entry: NodeEntry) -> None:
        """Stop one running node on its runtime (SIGTERM, grace, SIGKILL)."""
        if self.docker:
            self.containers.stop(entry)
        elif entry.pid:
            stop_process(entry.pid)

    def signal_node(self, node_id: str, sig: int) -> None:
        """Send a signal to a node's process group (SIGKILL: a crash; SIGSTOP/SIGCONT: a hang)."""
        entry = self.manifest.node(node_id)
        if not self.node_running(entry):
            raise LabError(f"node {node_id} is not running")
        if self.docker:
            try:
                self.containers.signal(entry, sig)
            except (DockerRuntimeError, DockerUnavailable) as exc:
                raise LabError(str(exc)) from None
            return
        if not entry.pid:
            raise LabError(f"node {node_id} is not running")
        if sig == signal.SIGKILL:
            kill_now(entry.pid)
            return
        try:
            os.killpg(entry.pid, sig)
        except ProcessLookupError:
            raise LabError(f"node {node_id} is not running") from None

    def node_running(self, entry: NodeEntry) -> bool:
        """True when the recorded pid is alive and really is this node (pid files go stale);
        on the docker runtime, when its container runs (or is paused)."""
        if self.docker:
            if not entry.container:
                return False
            try:
                return self.containers.running(entry)
            except DockerUnavailable:
                return False
        if not entry.pid or not pid_alive(entry.pid):
            return False
        return str(self.paths.config(entry.node_id)) in pid_cmdline(entry.pid)

    def status(self) -> list[NodeStatus]:
        """Health of every node: process and admin API."""
        out = []
        for entry in self.manifest.nodes:
            if not (entry.pid or entry.container):
                out.append(NodeStatus(entry, "not started"))
                continue
            if not self.node_running(entry):
                what = f"container {entry.container}" if entry.container else f"process {entry.pid}"
                out.append(NodeStatus(entry, "down", f"{what} is gone"))
                continue
            try:
                health = self.client(entry.node_id, timeout=2.0).health()
            except AdminApiError as exc:
                out.append(NodeStatus(entry, "unhealthy", exc.message))
                continue
            state = "up" if health.get("status") == "ok" else "unhealthy"
            out.append(NodeStatus(entry, state, health=health))
        return out

    def poll_exits(self) -> list[NodeEntry]:
        """Nodes that died since the last poll (each reported once, recorded in the event log).

        A node that exits is an event, not a reason to stop the lab: faults kill nodes on purpose.
        """
        died = []
        for entry in self.manifest.nodes:
            if (entry.pid or entry.container) and not self.node_running(entry):
                proc = self._procs.pop(entry.node_id, None)
                code = proc.exit_code() if proc else None
                self.events.append("node_exited", node=entry.node_id, pid=entry.pid, code=code)
                entry.pid = None
                entry.container = None
                died.append(entry)
        if died:
            self._save()
        return died

    def reload_manifest(self) -> None:
        self.manifest = read_manifest(self.paths)

    def destroy(self) -> None:
        """Stop the lab and delete its directory."""
        self.down()
        shutil.rmtree(self.paths.root, ignore_errors=True)


def _ports_of_other_labs(home: Path, except_lab: str) -> set[int]:
    ports: set[int] = set()
    for lab_id in list_labs(home):
        if lab_id == except_lab:
            continue
        try:
            manifest = read_manifest(LabPaths(home, lab_id))
        except (OSError, ValueError):
            continue
        for n in manifest.nodes:
            ports.update(p for p in (n.admin_port, n.dicom_port, n.hl7_port) if p)
            ports.update(n.extra_ports)
    return ports
