"""The department a lab starts: which nodes, their AE titles, peers and config files.

The default department: PACS, RIS, one CT, MR, CR and US modality, and a reading workstation,
with the administrator's workstation (where DCMTK runs) known to the PACS, RIS and viewer.
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
from simlab.common.modality_config import ModalityConfig
from simlab.common.ris_config import Hl7Destination, RisConfig
from simlab.common.viewer_config import VIEWER_AE_TITLE, viewer_config

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


@dataclass(frozen=True)
class ModalityStation:
    """One modality of the default department."""

    node_id: str
    ae_title: str
    profile: str
    station_name: str
    display_name: str


DEPARTMENT_MODALITIES = (
    ModalityStation("ct-1", "CT_1", "CT", "CT01", "CT scanner, room 1"),
    ModalityStation("mr-1", "MR_1", "MR", "MR01", "MR scanner, room 2"),
    ModalityStation("cr-1", "CR_1", "CR", "CR01", "Radiography (CR), room 3"),
    ModalityStation("us-1", "US_1", "US", "US01", "Ultrasound, room 4"),
)
RIS_AE_TITLE = "SIMLAB_RIS"
VIEWER_NODE = "viewer"


def default_department(allocate: Callable[[int], list[int]]) -> list[NodeSpec]:
    """The nodes a plain `simlab lab up` starts, with ports from `allocate(n)`.

    IHE Scheduled Workflow: the RIS sends ADT/ORM to the PACS over MLLP and serves the
    modalities' worklist and MPPS; the modalities store to the PACS and ask it for storage
    commitment; the viewer retrieves from the PACS. Every AE table lists exactly the peers a
    well-run department would configure, plus the administrator's workstation.
    """
    pacs_dicom, pacs_hl7, pacs_admin = allocate(3)
    ris_dicom, ris_hl7, ris_admin = allocate(3)
    viewer_dicom, viewer_admin = allocate(2)
    modality_ports = {m.node_id: allocate(2) for m in DEPARTMENT_MODALITIES}
    admin_ws = RemoteAe(
        ae_title=ADMIN_WORKSTATION_AE,
        host="127.0.0.1",
        port=ADMIN_WORKSTATION_PORT,
        description="Administrator workstation (DCMTK tools)",
    )
    modality_aes = [
        RemoteAe(
            ae_title=m.ae_title,
            host="127.0.0.1",
            port=modality_ports[m.node_id][0],
            description=m.display_name,
        )
        for m in DEPARTMENT_MODALITIES
    ]
    pacs = pacs_config(
        dicom_port=pacs_dicom,
        hl7_port=pacs_hl7,
        admin_port=pacs_admin,
        ae_table=[
            admin_ws,
            *modality_aes,
            RemoteAe(
                ae_title=VIEWER_AE_TITLE,
                host="127.0.0.1",
                port=viewer_dicom,
                description="Reading workstation",
            ),
        ],
    )
    pacs_ae = RemoteAe(
        ae_title=pacs.dicom.ae_title, host="127.0.0.1", port=pacs_dicom, description="PACS"
    )
    ris_ae = RemoteAe(
        ae_title=RIS_AE_TITLE, host="127.0.0.1", port=ris_dicom, description="RIS (MWL, MPPS)"
    )
    ris = RisConfig(
        node_id="ris",
        display_name="RIS (Order Filler / DSS)",
        admin=AdminSettings(port=ris_admin),
        dicom=DicomSettings(ae_title=RIS_AE_TITLE, port=ris_dicom),
        hl7=Hl7Settings(port=ris_hl7, application=RIS_AE_TITLE, facility="RADIOLOGY"),
        ae_table=[admin_ws, *modality_aes],
        destinations=[
            Hl7Destination(
                name="pacs",
                port=pacs_hl7,
                application=pacs.hl7.application,
                facility=pacs.hl7.facility,
            )
        ],
        modality_stations={m.profile: m.ae_title for m in DEPARTMENT_MODALITIES},
    )
    viewer = viewer_config(dicom_port=viewer_dicom, admin_port=viewer_admin, pacs_port=pacs_dicom)
    viewer = viewer.model_copy(update={"ae_table": [*viewer.ae_table, admin_ws]})
    modalities = [
        ModalityConfig(
            node_id=m.node_id,
            display_name=m.display_name,
            profile=m.profile,
            station_name=m.station_name,
            admin=AdminSettings(port=modality_ports[m.node_id][1]),
            dicom=DicomSettings(ae_title=m.ae_title, port=modality_ports[m.node_id][0]),
            destination=pacs_ae,
            mwl=ris_ae,
            mpps=ris_ae,
        )
        for m in DEPARTMENT_MODALITIES
    ]
    return [
        NodeSpec(module="simlab.nodes.pacs", config=pacs),
        NodeSpec(module="simlab.nodes.ris", config=ris),
        NodeSpec(module="simlab.nodes.viewer", config=viewer),
        *(NodeSpec(module="fake_modalities.node", config=m) for m in modalities),
    ]
