"""ProxyNode: owns the live config (links, toxics) and wires the forwarder and the admin API."""

from __future__ import annotations

import threading
from pathlib import Path

from simlab.common.admin_server import AdminServer
from simlab.common.live_config import LiveConfigNode
from simlab.common.proxy_config import ProxyConfig
from simlab.nodes.proxy.admin_routes import build_routes
from simlab.nodes.proxy.forwarder import Proxy


class ProxyNode(LiveConfigNode[ProxyConfig]):
    """The network process. The forwarder reads `get_config()` for every chunk it forwards, so
    a toxic set or cleared through the admin API acts on connections already open; a link
    disabled (a partition) or moved is applied before the admin call returns."""

    def __init__(self, config_path: Path, config: ProxyConfig, token: str) -> None:
        super().__init__(config_path, config, token)
        self.edit_lock = threading.Lock()
        """Serialises read-modify-write changes of links and toxics from concurrent requests."""
        self.proxy = Proxy(self.get_config, self.logger)
        self.admin = AdminServer(
            config.admin.host, config.admin.port, token, build_routes(self), self.logger
        )

    def start(self) -> None:
        self.proxy.start()
        self.admin.start()
        cfg = self.get_config()
        self.logger.info(
            "network %s started: %d link(s) on %s, admin %s:%d",
            cfg.node_id,
            len(cfg.links),
            cfg.host,
            cfg.admin.host,
            cfg.admin.port,
        )

    def stop(self) -> None:
        self.logger.info("network %s stopping", self.get_config().node_id)
        self.admin.stop()
        self.proxy.stop()

    def _config_changed(self, old: ProxyConfig, new: ProxyConfig) -> list[str]:
        """Listeners follow the links: closed on a partition, moved with their port."""
        return [f"link {name}" for name in self.proxy.apply()]
