"""RisNode: wires database, queue, HL7, DICOM and admin API together around the live config."""

from __future__ import annotations

from pathlib import Path

from simlab.common.admin_server import AdminServer
from simlab.common.live_config import LiveConfigNode
from simlab.common.ris_config import RisConfig
from simlab.nodes.ris.admin_routes import build_routes
from simlab.nodes.ris.dicom_service import RisDicomService
from simlab.nodes.ris.hl7_service import RisHl7Service
from simlab.nodes.ris.outbound import OutboundQueue
from simlab.nodes.ris.scheduling import Scheduler
from simlab.nodes.ris.store import DB_FILE, RisStore


class RisNode(LiveConfigNode[RisConfig]):
    """The RIS process. Services read `get_config()` at each use, so an admin change (AE table,
    destination, queue policy) applies without a restart."""

    def __init__(self, config_path: Path, config: RisConfig, token: str) -> None:
        super().__init__(config_path, config, token)
        self.store = RisStore(self.data_dir / DB_FILE)
        self.queue = OutboundQueue(self.store, self.get_config, self.logger)
        self.scheduler = Scheduler(self.store, self.queue, self.get_config, self.logger)
        self.hl7 = RisHl7Service(self.get_config, self.store, self.scheduler, self.logger)
        self.dicom = RisDicomService(self.get_config, self.store, self.scheduler, self.logger)
        self.admin = AdminServer(
            config.admin.host, config.admin.port, token, build_routes(self), self.logger
        )

    def start(self) -> None:
        self.store.open()
        self.dicom.start()
        self.hl7.start()
        self.queue.start()
        self.admin.start()
        cfg = self.get_config()
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
        self.logger.info("RIS %s stopping", self.get_config().node_id)
        self.admin.stop()
        self.queue.stop()
        self.hl7.stop()
        self.dicom.stop()
        self.store.close()

    def _config_changed(self, old: RisConfig, new: RisConfig) -> list[str]:
        """Restart the listeners whose address changed, start a sender for any new destination
        and wake the senders so a changed queue policy applies now; the rest applies on next use."""
        restarted = []
        if self.dicom.apply_config(old, new):
            restarted.append("dicom")
        if self.hl7.apply_config(old, new):
            restarted.append("hl7")
        self.queue.sync_destinations()
        return restarted
