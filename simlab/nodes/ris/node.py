"""RisNode: owns the live config and wires database, queue, HL7, DICOM and admin API."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from simlab.common.admin_server import AdminServer
from simlab.common.config import load_config, resolve, save_config
from simlab.common.node_logging import setup_node_logging
from simlab.common.ris_config import RisConfig
from simlab.nodes.ris.admin_routes import build_routes
from simlab.nodes.ris.dicom_service import RisDicomService
from simlab.nodes.ris.hl7_service import RisHl7Service
from simlab.nodes.ris.outbound import OutboundQueue
from simlab.nodes.ris.scheduling import Scheduler
from simlab.nodes.ris.store import DB_FILE, RisStore


class RisNode:
    """The RIS process. Services read `self.config` at each use, so an admin change (AE table,
    destination, queue policy) applies without a restart."""

    def __init__(self, config_path: Path, config: RisConfig, token: str) -> None:
        self.config_path = config_path
        self._config = config
        self._config_lock = threading.Lock()
        self.token = token
        self.started_at = time.time()
        self.logger = setup_node_logging(config.node_id, self.log_file)
        self.store = RisStore(resolve(config_path, config.data_dir) / DB_FILE)
        self.queue = OutboundQueue(self.store, self.get_config, self.logger)
        self.scheduler = Scheduler(self.store, self.queue, self.get_config, self.logger)
        self.hl7 = RisHl7Service(self.get_config, self.store, self.scheduler, self.logger)
        self.dicom = RisDicomService(self.get_config, self.store, self.scheduler, self.logger)
        self.admin = AdminServer(
            config.admin.host, config.admin.port, token, build_routes(self), self.logger
        )

    @property
    def log_file(self) -> Path:
        return resolve(self.config_path, self._config.log_file)

    def get_config(self) -> RisConfig:
        """The config in force now."""
        return self._config

    def start(self) -> None:
        self.store.open()
        self.dicom.start()
        self.hl7.start()
        self.queue.start()
        self.admin.start()
        cfg = self._config
        pending = self.store.queue_counts()
        self.logger.info(
            "RIS %s started: DICOM %s@%s:%d, HL7 %s:%d, admin %s:%d; outbound queue: %d pending,"
            " %d dead",
            cfg.node_id,
            cfg.dicom.ae_title,
            cfg.dicom.host,
            cfg.dicom.port,
            cfg.hl7.host,
            cfg.hl7.port,
            cfg.admin.host,
            cfg.admin.port,
            pending["pending"],
            pending["dead"],
        )

    def stop(self) -> None:
        self.logger.info("RIS %s stopping", self._config.node_id)
        self.admin.stop()
        self.queue.stop()
        self.hl7.stop()
        self.dicom.stop()
        self.store.close()

    def apply_config(self, new: RisConfig, *, persist: bool = True) -> list[str]:
        """Make `new` the config in force; persist it; restart listeners whose address changed."""
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
            self.queue.sync_destinations()
        self.logger.info(
            "config applied%s", f" (restarted: {', '.join(restarted)})" if restarted else ""
        )
        return restarted

    def reload(self) -> list[str]:
        """Re-read the config file from disk."""
        return self.apply_config(load_config(RisConfig, self.config_path), persist=False)
