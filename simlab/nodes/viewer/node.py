"""ViewerNode: owns the live config and wires store, Storage SCP, Q/R SCU and admin API."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from simlab.common.admin_server import AdminServer
from simlab.common.config import load_config, resolve, save_config
from simlab.common.node_logging import setup_node_logging
from simlab.common.viewer_config import ViewerConfig
from simlab.nodes.viewer.admin_routes import build_routes
from simlab.nodes.viewer.retrieve import Retriever
from simlab.nodes.viewer.storage_scp import StorageService
from simlab.nodes.viewer.store import ViewerStore


class ViewerNode:
    """The viewer process. Services read `get_config()` at each use, so an admin change (AE
    table, Q/R provider, retrieve method) applies to the next association without a restart."""

    def __init__(self, config_path: Path, config: ViewerConfig, token: str) -> None:
        self.config_path = config_path
        self._config = config
        self._config_lock = threading.Lock()
        self.started_at = time.time()
        self.logger = setup_node_logging(config.node_id, self.log_file)
        self.store = ViewerStore(resolve(config_path, config.data_dir))
        self.storage = StorageService(self.get_config, self.store, self.logger)
        self.retriever = Retriever(self.get_config, self.store, self.storage, self.logger)
        self.admin = AdminServer(
            config.admin.host, config.admin.port, token, build_routes(self), self.logger
        )

    @property
    def log_file(self) -> Path:
        return resolve(self.config_path, self._config.log_file)

    def get_config(self) -> ViewerConfig:
        """The config in force now."""
        return self._config

    def start(self) -> None:
        removed = self.store.open()
        if removed:
            self.logger.warning("recovery: removed %d unfinished temp file(s)", removed)
        self.storage.start()
        self.admin.start()
        cfg = self._config
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
        self.logger.info("viewer %s stopping", self._config.node_id)
        self.admin.stop()
        self.storage.stop()
        self.store.close()

    def apply_config(self, new: ViewerConfig, *, persist: bool = True) -> list[str]:
        """Make `new` the config in force; persist it; restart the listener only when its
        address changed. Returns the names of the services restarted."""
        with self._config_lock:
            old = self._config
            if persist:
                save_config(new, self.config_path)
            self._config = new
            restarted = ["dicom"] if self.storage.apply_config(old, new) else []
        self.logger.info(
            "config applied%s", f" (restarted: {', '.join(restarted)})" if restarted else ""
        )
        return restarted

    def reload(self) -> list[str]:
        """Re-read the config file from disk (an edit by hand, or a 'stale config' fault)."""
        return self.apply_config(load_config(ViewerConfig, self.config_path), persist=False)
