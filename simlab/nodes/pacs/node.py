"""PacsNode: wires archive, DICOM, HL7 and admin API together around the live config."""

from __future__ import annotations

from pathlib import Path

from simlab.common.admin_server import AdminServer
from simlab.common.config import PacsConfig
from simlab.common.live_config import LiveConfigNode
from simlab.nodes.pacs.admin_routes import build_routes
from simlab.nodes.pacs.archive import Archive
from simlab.nodes.pacs.dicom_service import DicomService
from simlab.nodes.pacs.hl7_service import Hl7Service


class PacsNode(LiveConfigNode[PacsConfig]):
    """The PACS process. Services read `get_config()` at each use, so an admin change (AE
    table, quota, accepted classes) applies to the next association without a restart."""

    def __init__(self, config_path: Path, config: PacsConfig, token: str) -> None:
        super().__init__(config_path, config, token)
        self.archive = Archive(
            self.data_dir, self.get_config, self.logger, config_dir=config_path.resolve().parent
        )
        self.dicom = DicomService(self.get_config, self.archive, self.logger)
        self.hl7 = Hl7Service(self.get_config, self.archive.index, self.data_dir, self.logger)
        self.admin = AdminServer(
            config.admin.host, config.admin.port, token, build_routes(self), self.logger
        )

    def start(self) -> None:
        self.archive.open()
        self.dicom.start()
        self.hl7.start()
        self.admin.start()
        cfg = self.get_config()
        self.logger.info(
            "PACS %s started: DICOM %s@%s:%d, HL7 %s:%d, admin %s:%d",
            cfg.node_id,
            cfg.dicom.ae_title,
            cfg.dicom.host,
            cfg.dicom.port,
            cfg.hl7.host,
            cfg.hl7.port,
            cfg.admin.host,
            cfg.admin.port,
        )

    def stop(self) -> None:
        self.logger.info("PACS %s stopping", self.get_config().node_id)
        self.admin.stop()
        self.hl7.stop()
        self.dicom.stop()
        self.archive.close()

    def _config_changed(self, old: PacsConfig, new: PacsConfig) -> list[str]:
        """Restart the listeners whose address changed; the rest applies on next use."""
        restarted = []
        if self.dicom.apply_config(old, new):
            restarted.append("dicom")
        if self.hl7.apply_config(old, new):
            restarted.append("hl7")
        return restarted
