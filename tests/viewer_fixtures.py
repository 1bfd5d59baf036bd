"""Fixtures for the viewer node: a real viewer process next to a real simlab PACS.

`start_viewer` writes a viewer config (its Q/R provider is the given PACS, its AE table holds the
PACS) and starts the node; `register_viewer_in_pacs` puts the viewer's AE title and Storage SCP
port into the PACS AE table, as an administrator does when adding a workstation.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from simlab.client.admin import AdminClient
from simlab.common.config import RemoteAe, load_config
from simlab.common.viewer_config import ViewerConfig, viewer_config
from simlab.runtime.ports import free_ports
from simlab.runtime.process import NodeProcess
from simlab.runtime.topology import write_node_dir
from tests.conftest import RunningNode, start_pacs


@dataclass
class RunningViewer(RunningNode):
    """A viewer process started by a test."""

    @property
    def config(self) -> ViewerConfig:  # type: ignore[override]
        return load_config(ViewerConfig, self.config_path)


def start_viewer(
    node_dir: Path,
    pacs: RunningNode | None = None,
    *,
    pacs_port: int | None = None,
    extra_ae: list[RemoteAe] | None = None,
    **retrieve: object,
) -> RunningViewer:
    """Write a viewer config under node_dir and start the node; waits until healthy."""
    dicom_port, admin_port = free_ports(2)
    config = viewer_config(
        dicom_port=dicom_port,
        admin_port=admin_port,
        pacs_port=pacs.dicom_port if pacs is not None else (pacs_port or 104),
        pacs_ae_title=pacs.ae_title if pacs is not None else "SIMLAB_PACS",
    )
    if extra_ae:
        config = config.model_copy(update={"ae_table": [*config.ae_table, *extra_ae]})
    if retrieve:
        config = config.model_copy(update={"retrieve": config.retrieve.model_copy(update=retrieve)})
    token = secrets.token_hex(16)
    config_path = write_node_dir(node_dir, config, token)
    node = RunningViewer(
        module="simlab.nodes.viewer",
        node_dir=node_dir,
        config_path=config_path,
        admin=AdminClient(f"http://127.0.0.1:{admin_port}", token, timeout=30.0),
        process=NodeProcess(node_id=config.node_id, popen=None, pid=-1),
    )
    node.start()
    return node


def register_viewer_in_pacs(pacs: RunningNode, viewer: RunningViewer, port: int | None = None):
    """Add the viewer (AE title, Storage SCP port) to the PACS AE table."""
    return pacs.admin.put(
        f"/ae-table/{viewer.ae_title}",
        {"host": "127.0.0.1", "port": port or viewer.dicom_port, "description": "reading WS"},
    )


@dataclass
class ViewerLab:
    pacs: RunningNode
    viewer: RunningViewer


@pytest.fixture
def viewer_lab(tmp_path: Path) -> Iterator[ViewerLab]:
    """A PACS and a viewer that know each other."""
    pacs = start_pacs(tmp_path / "pacs")
    try:
        viewer = start_viewer(tmp_path / "viewer", pacs)
        try:
            register_viewer_in_pacs(pacs, viewer)
            yield ViewerLab(pacs, viewer)
        finally:
            viewer.stop()
    finally:
        pacs.stop()
