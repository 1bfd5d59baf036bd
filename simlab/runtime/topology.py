"""The department a lab starts: which nodes, their AE titles, peers and config files.

For now the lab holds the PACS and knows the administrator's workstation (where DCMTK runs);
the RIS, modalities and viewer join here as they are built.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from simlab.common.config import (
    AdminSettings,
    DicomSettings,
    Hl7Settings,
    NodeConfig,
    PacsConfig,
    RemoteAe,
    save_config,
)

ADMIN_WORKSTATION_AE = "ADMIN_WS"
"""The AE title an administrator uses for DCMTK tools against the lab (`-aet ADMIN_WS`)."""
ADMIN_WORKSTATION_PORT = 11113
"""Where `movescu --port 11113 -aem ADMIN_WS` receives a C-MOVE from the PACS."""


@dataclass(frozen=True)
class NodeSpec:
    """How to start one node: its module and its config."""

    module: str
    config: NodeConfig


def pacs_config(
    *,
    dicom_port: int,
    hl7_port: int,
    admin_port: int,
    node_id: str = "pacs",
    ae_title: str = "SIMLAB_PACS",
    ae_table: list[RemoteAe] | None = None,
    host: str = "127.0.0.1",
) -> PacsConfig:
    """The PACS of a lab: strict AE policy (as a well-run hospital's is), known peers."""
    if ae_table is None:
        ae_table = [
            RemoteAe(
                ae_title=ADMIN_WORKSTATION_AE,
                host="127.0.0.1",
                port=ADMIN_WORKSTATION_PORT,
                description="Administrator workstation (DCMTK tools)",
            )
        ]
    return PacsConfig(
        node_id=node_id,
        display_name="PACS (Image Manager / Archive)",
        admin=AdminSettings(host=host, port=admin_port),
        dicom=DicomSettings(ae_title=ae_title, host=host, port=dicom_port),
        hl7=Hl7Settings(host=host, port=hl7_port, application="SIMLAB_PACS", facility="RADIOLOGY"),
        ae_table=ae_table,
    )


def write_node_dir(node_dir: Path, config: NodeConfig, token: str) -> Path:
    """Create a node's directory with its config and token file; return the config path."""
    node_dir.mkdir(parents=True, exist_ok=True)
    token_path = node_dir / config.admin.token_file
    token_path.write_text(token + "\n", encoding="utf-8")
    os.chmod(token_path, 0o600)
    config_path = node_dir / "config.json"
    save_config(config, config_path)
    return config_path


def default_department(allocate: Callable[[int], list[int]]) -> list[NodeSpec]:
    """The nodes a plain `simlab lab up` starts, with ports from `allocate(n)`."""
    dicom_port, hl7_port, admin_port = allocate(3)
    return [
        NodeSpec(
            module="simlab.nodes.pacs",
            config=pacs_config(dicom_port=dicom_port, hl7_port=hl7_port, admin_port=admin_port),
        )
    ]
