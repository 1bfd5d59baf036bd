"""ViewerNode: owns the live config and wires store, Storage SCP, Q/R SCU and admin API."""

from __future__ import annotations

from pathlib import Path

from simlab.common.admin_server import AdminServer
from simlab.common.live_config import LiveConfigNode
from simlab.common.viewer_config import ViewerConfig
from simlab.nodes.viewer.admin_routes import build_routes
from simlab.nodes.viewer.retrieve import Retriever
from simlab.nodes.viewer.storage_scp import StorageService
from simlab.nodes.viewer.store import ViewerStore


class ViewerNode(LiveConfigNode[ViewerConfig]):
    """The viewer process. Services read `get_config()` at each use, so an admin change (AE
    table, Q/R provider, retrieve method) applies to the next association without a restart."""

    def __init__(self, config_path: Path, config: ViewerConfig, token: str) -> None:
        super().__init__(config_path, config, token)
        self.store = ViewerStore(self.data_dir)
        self.storage = StorageService(self.get_config, self.store, self.logger)
        self.retriever = Retriever(self.get_config, self.store, self.storage, self.logger)
        self.admin = AdminServer(
            config.admin.host, config.admin.port, token, build_routes(self), self.logger
        )

    def start(self) -> None:
        removed = self.store.open()
        if removed:
            self.logger.warning("recovery: removed %d unfinished temp file(s)", removed)
        self.storage.start()
        self.admin.start()
        cfg = self.get_config()
        provider = cfg.retrieve.provider
        self.logger.info(
            "viewer %s started: DICOM %s@%s:%d, Q/R provider %s@%s:%d (%s, %s), admin %s:%d",
            cfg.node_id,
            cfg.dicom.ae_title,
            cfg.dicom.host,
            cfg.dicom.port,
            provider.ae_title,
            provider.host,
            provider.port,
            cfg.retrieve.query_model,
            cfg.retrieve.method,
            cfg.admin.host,
            cfg.admin.port,
        )

    def stop(self) -> None:
        self.logger.info("viewer %s stopping", self.get_config().node_id)
        self.admin.stop()
        self.storage.stop()
        self.store.close()

    def _config_changed(self, old: ViewerConfig, new: ViewerConfig) -> list[str]:
        """Restart the DICOM listener only when its address changed; the rest applies on next
        use."""
        return ["dicom"] if self.storage.apply_config(old, new) else []
