"""Placeholder until the HL7 service lands: the PACS runs without an HL7 listener."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from simlab.common.config import PacsConfig


class Hl7Service:
    def __init__(
        self,
        get_config: Callable[[], PacsConfig],
        index: object,
        data_dir: Path,
        logger: logging.Logger,
    ) -> None:
        self._logger = logger

    def start(self) -> None:
        self._logger.warning("HL7 listener not built yet")

    def stop(self) -> None:
        pass

    def apply_config(self, old: PacsConfig, new: PacsConfig) -> bool:
        return False

    def message_log(self, limit: int = 100) -> list[dict]:
        return []

    def orders(self, limit: int = 100) -> list[dict]:
        return []

    def registered_patients(self, limit: int = 100) -> list[dict]:
        return []
