"""The department a lab starts: which nodes, their AE titles, peers and config files.

The default department: PACS, RIS, one CT, MR, CR and US modality, and a reading workstation,
with the administrator's workstation (where DCMTK runs) known to the PACS, RIS and viewer.
The nodes talk to each other through the department network (node `net`, a TCP fault proxy):
every peer is configured with a link's port on the proxy, which forwards to the real service.
The administrator's workstation still reaches every node directly.
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
from simlab.common.proxy_config import Link, ProxyConfig
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
NETWORK_NODE = "net"
"""The department network node: the TCP fault proxy every inter-node link goes through."""


def link_name(client: str, service: str, protocol: str = "") -> str:
    """A link's name reads as an arrow: 'ct-1->pacs', 'ris->pacs:hl7'."""
    return f"{client}->{service}" + (f":{protocol}" if protocol else "")


def network_config(*, admin_port: int, links: list[Link]) -> ProxyConfig:
    """The department network node with its links (no toxics: a healthy network)."""
    return ProxyConfig(
        node_id=NETWORK_NODE,
        display_name="Department network",
        admin=AdminSettings(port=admin_port),
        links=links,
    )


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
    (net_admin,) = allocate(1)
    links: list[Link] = []

    def via_net(client: str, service: str, port: int, description: str, protocol: str = "") -> int:
        """Add a link client -> service to the department network; returns its listen port."""
        (listen,) = allocate(1)
        links.append(
            Link(
                name=link_name(client, service, protocol),
                listen_port=listen,
                upstream_port=port,
                description=description,
            )
        )
        return listen

    modality_links = {
        m.node_id: (
            via_net(m.node_id, "pacs", pacs_dicom, f"{m.display_name} -> PACS (DICOM store)"),
            via_net(m.node_id, "ris", ris_dicom, f"{m.display_name} -> RIS (MWL, MPPS)"),
        )
        for m in DEPARTMENT_MODALITIES
    }
    ris_to_pacs = via_net("ris", "pacs", pacs_hl7, "RIS -> PACS (HL7 ADT/ORM over MLLP)", "hl7")
    pacs_to_viewer = via_net("pacs", VIEWER_NODE, viewer_dicom, "PACS -> viewer (C-MOVE)")
    viewer_to_pacs = via_net(VIEWER_NODE, "pacs", pacs_dicom, "Viewer -> PACS (Q/R)")
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
                port=pacs_to_viewer,
                description="Reading workstation (via the department network)",
            ),
        ],
    )

    def pacs_ae(node_id: str) -> RemoteAe:
        return RemoteAe(
            ae_title=pacs.dicom.ae_title,
            host="127.0.0.1",
            port=modality_links[node_id][0],
            description="PACS (via the department network)",
        )

    def ris_ae(node_id: str) -> RemoteAe:
        return RemoteAe(
            ae_title=RIS_AE_TITLE,
            host="127.0.0.1",
            port=modality_links[node_id][1],
            description="RIS (MWL, MPPS; via the department network)",
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
                port=ris_to_pacs,
                application=pacs.hl7.application,
                facility=pacs.hl7.facility,
            )
        ],
        modality_stations={m.profile: m.ae_title for m in DEPARTMENT_MODALITIES},
    )
    viewer = viewer_config(
        dicom_port=viewer_dicom, admin_port=viewer_admin, pacs_port=viewer_to_pacs
    )
    viewer = viewer.model_copy(update={"ae_table": [*viewer.ae_table, admin_ws]})
    modalities = [
        ModalityConfig(
            node_id=m.node_id,
            display_name=m.display_name,
            profile=m.profile,
            station_name=m.station_name,
            admin=AdminSettings(port=modality_ports[m.node_id][1]),
            dicom=DicomSettings(ae_title=m.ae_title, port=modality_ports[m.node_id][0]),
            destination=pacs_ae(m.node_id),
            mwl=ris_ae(m.node_id),
            mpps=ris_ae(m.node_id),
        )
        for m in DEPARTMENT_MODALITIES
    ]
    return [
        NodeSpec(module="simlab.nodes.pacs", config=pacs),
        NodeSpec(module="simlab.nodes.ris", config=ris),
        NodeSpec(module="simlab.nodes.viewer", config=viewer),
        *(NodeSpec(module="fake_modalities.node", config=m) for m in modalities),
        NodeSpec(
            module="simlab.nodes.proxy", config=network_config(admin_port=net_admin, links=links)
        ),
    ]
