"""PacsNode: owns the live config and wires archive, DICOM, HL7 and admin API together."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from simlab.common.admin_server import AdminServer
from simlab.common.config import PacsConfig, load_config, resolve, save_config
from simlab.common.node_logging import setup_node_logging
from simlab.nodes.pacs.admin_routes import build_routes
from simlab.nodes.pacs.archive import Archive
from simlab.nodes.pacs.dicom_service import DicomService
from simlab.nodes.pacs.hl7_service import Hl7Service


class PacsNode:
    """The PACS process. Services read `self.config` at each use, so an admin change (AE table,
    quota, accepted classes) applies to the next association without a restart."""

    def __init__(self, config_path: Path, config: PacsConfig, token: str) -> None:
        self.config_path = config_path
        self._config = config
        self._config_lock = threading.Lock()
        self.token = token
        self.started_at = time.time()
        self.logger = setup_node_logging(config.node_id, self.log_file)
        self.archive = Archive(resolve(config_path, config.data_dir), self.get_config, self.logger)
        self.dicom = DicomService(self.get_config, self.archive, self.logger)
        self.hl7 = Hl7Service(
            self.get_config, self.archive.index, resolve(config_path, config.data_dir), self.logger
        )
        self.admin = AdminServer(
            config.admin.host, config.admin.port, token, build_routes(self), self.logger
        )

    @property
    def log_file(self) -> Path:
        return resolve(self.config_path, self._config.log_file)

    def get_config(self) -> PacsConfig:
        """The config in force now."""
        return self._config

    def start(self) -> None:
        self.archive.open()
        self.dicom.start()
        self.hl7.start()
        self.admin.start()
        cfg = self._config
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
        self.logger.info("PACS %s stopping", self._config.node_id)
        self.admin.stop()
        self.hl7.stop()
        self.dicom.stop()
        self.archive.close()

    def apply_config(self, new: PacsConfig, *, persist: bool = True) -> list[str]:
        """Make `new` the config in force; persist it; restart listeners whose address changed.

        Returns the names of the services that were restarted.
        """
        with self._config_lock:
            old = self._config
            if persist:
                save_config(new, self.config_path)
            self._config = new
            restarted = []
            if self.dicom.apply_config(old, new):
                restarted.append("dicom")
            if self.hl7.apply_config(old, new):
                restarted.append("hl7")
        self.logger.info(
            "config applied%s", f" (restarted: {', '.join(restarted)})" if restarted else ""
        )
        return restarted

    def reload(self) -> list[str]:
        """Re-read the config file from disk (an edit by hand, or a 'stale config' fault)."""
        return self.apply_config(load_config(PacsConfig, self.config_path), persist=False)
