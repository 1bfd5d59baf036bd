"""Shared fixtures: real node processes on free loopback ports, in a fresh directory per test."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from simlab.client.admin import AdminClient
from simlab.common.config import PacsConfig, RemoteAe, load_config
from simlab.runtime.ports import free_ports
from simlab.runtime.process import (
    NodeProcess,
    kill_now,
    spawn_node,
    stop_process,
    wait_healthy,
)
from simlab.runtime.topology import pacs_config, write_node_dir

DCMTK_DEFAULT_AES = ["ECHOSCU", "STORESCU", "FINDSCU", "MOVESCU", "GETSCU"]
"""DCMTK's default calling AE titles; the test PACS knows them so plain commands work."""


@dataclass
class RunningNode:
    """A node process started by a test, with what a test needs to talk to it."""

    module: str
    node_dir: Path
    config_path: Path
    admin: AdminClient
    process: NodeProcess
    extra_pids: list[int] = field(default_factory=list)

    @property
    def config(self) -> PacsConfig:
        return load_config(PacsConfig, self.config_path)

    @property
    def ae_title(self) -> str:
        return self.config.dicom.ae_title

    @property
    def dicom_port(self) -> int:
        return self.config.dicom.port

    @property
    def hl7_port(self) -> int:
        return self.config.hl7.port

    @property
    def log_path(self) -> Path:
        return self.node_dir / "node.log"

    @property
    def data_dir(self) -> Path:
        return self.node_dir / "data"

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def start(self, timeout: float = 20.0) -> None:
        self.process = spawn_node(self.module, self.config_path, self.node_dir / "stderr.log")
        wait_healthy(self.process, self.admin, timeout, self.log_path, self.node_dir / "stderr.log")

    def kill9(self) -> None:
        kill_now(self.process.pid)

    def stop(self) -> None:
        stop_process(self.process.pid)

    def restart(self) -> None:
        self.stop()
        self.start()


def start_pacs(node_dir: Path, ae_table: list[RemoteAe] | None = None, **overrides) -> RunningNode:
    """Write a PACS config under node_dir and start the node; waits until healthy."""
    dicom_port, hl7_port, admin_port = free_ports(3)
    if ae_table is None:
        ae_table = [RemoteAe(ae_title=t, host="127.0.0.1", port=11112) for t in DCMTK_DEFAULT_AES]
    config = pacs_config(
        dicom_port=dicom_port, hl7_port=hl7_port, admin_port=admin_port, ae_table=ae_table
    )
    if overrides:
        config = config.model_copy(update=overrides)
    token = secrets.token_hex(16)
    config_path = write_node_dir(node_dir, config, token)
    admin = AdminClient(f"http://127.0.0.1:{admin_port}", token)
    node = RunningNode(
        module="simlab.nodes.pacs",
        node_dir=node_dir,
        config_path=config_path,
        admin=admin,
        process=NodeProcess(node_id=config.node_id, popen=None, pid=-1),
    )
    node.start()
    return node


@pytest.fixture
def pacs_node(tmp_path: Path) -> Iterator[RunningNode]:
    """A fresh PACS process (AE SIMLAB_PACS) that knows DCMTK's default AE titles."""
    node = start_pacs(tmp_path / "pacs")
    try:
        yield node
    finally:
        node.stop()


def node_processes(root: Path) -> list[int]:
    """Every node process on the machine whose command line names a file under `root`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(root) in cmd and ("simlab.nodes" in cmd or "fake_modalities.node" in cmd):
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="session", autouse=True)
def _no_node_outlives_the_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A test that times out (pytest-timeout) can be interrupted before its teardown stops the
    nodes it started; whatever node runs from this session's temp dir is stopped at the end."""
    yield
    for pid in node_processes(tmp_path_factory.getbasetemp()):
        stop_process(pid, grace=2.0)


def dcmtk_available() -> bool:
    return shutil.which("echoscu") is not None


requires_dcmtk = pytest.mark.skipif(
    not dcmtk_available(), reason="DCMTK is not installed (the README's test command installs it)"
)
