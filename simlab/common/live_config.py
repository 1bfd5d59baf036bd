"""The config in force on a running node, changed atomically, persisted, and re-read on reload.

Every node has the same contract with its administrator: a change through the admin API is
validated, written to `config.json` (atomically) and applied to the next association without a
restart; a listener restarts only when its own address changed; `reload` picks up an edit made
by hand (or by a 'stale config' fault). This base class holds that contract once.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Generic, TypeVar

from simlab.common.config import NodeConfig, load_config, resolve, save_config
from simlab.common.node_logging import setup_node_logging

C = TypeVar("C", bound=NodeConfig)


class LiveConfigNode(Generic[C]):
    """Base of a node process: identity, log, token and the live config.

    Subclasses build their services in `__init__` after calling this one, and override
    `_config_changed` to restart what an address change needs.
    """

    def __init__(self, config_path: Path, config: C, token: str) -> None:
        self.config_path = config_path
        self._config = config
        self._config_lock = threading.Lock()
        self.token = token
        self.started_at = time.time()
        self.logger = setup_node_logging(config.node_id, self.log_file)

    @property
    def log_file(self) -> Path:
        return resolve(self.config_path, self._config.log_file)

    @property
    def data_dir(self) -> Path:
        return resolve(self.config_path, self._config.data_dir)

    def get_config(self) -> C:
        """The config in force now."""
        return self._config

    def apply_config(self, new: C, *, persist: bool = True) -> list[str]:
        """Make `new` the config in force, persisting it first; returns the services restarted.

        Raises OSError when a listener cannot bind its new address.
        """
        with self._config_lock:
            old = self._config
            if persist:
                save_config(new, self.config_path)
            self._config = new
            restarted = self._config_changed(old, new)
        self.logger.info(
            "config applied%s", f" (restarted: {', '.join(restarted)})" if restarted else ""
        )
        return restarted

    def reload(self) -> list[str]:
        """Re-read the config file from disk."""
        return self.apply_config(load_config(type(self._config), self.config_path), persist=False)

    def _config_changed(self, old: C, new: C) -> list[str]:
        """Apply what changed between `old` and `new`; return the names of services restarted."""
        return []
