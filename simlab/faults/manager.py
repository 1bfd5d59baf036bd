"""Which faults are active in a lab, injecting and reverting them, and the journal entries.

The active faults and their revert states live in `<lab>/faults.json` (written atomically), so
`simlab run`, `simlab admin` in another shell, the TUI's instructor view and a test all see and
undo the same faults.
"""

from __future__ import annotations

import json
import os
import random
import time
import zlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from simlab.client.admin import AdminApiError
from simlab.faults.base import Fault, FaultContext, FaultError
from simlab.faults.catalog import fault_class
from simlab.runtime.lab import Lab, LabError


class ActiveFault(BaseModel):
    """One injected fault: what it is, when, and how to undo it."""

    fault_id: str
    kind: str
    params: dict[str, Any]
    injected_at: float
    state: dict[str, Any] = Field(default_factory=dict)


class FaultManager:
    """Inject and revert faults in one lab, recording both in the lab's journal."""

    def __init__(self, lab: Lab, seed: int = 0) -> None:
        self.lab = lab
        self.seed = seed
        self.path: Path = lab.paths.root / "faults.json"

    # ------------------------------------------------------------------------- persistence
    def active(self) -> list[ActiveFault]:
        if not self.path.exists():
            return []
        raw = json.loads(self.path.read_text(encoding="utf-8"))
        return [ActiveFault.model_validate(item) for item in raw]

    def _write(self, faults: list[ActiveFault]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps([f.model_dump(mode="json") for f in faults], indent=2), encoding="utf-8"
        )
        os.replace(tmp, self.path)

    def context(self, fault_id: str) -> FaultContext:
        """The context a fault runs in; its rng is decided by the lab seed and the fault id."""
        rng = random.Random(self.seed * 1_000_003 + zlib.crc32(fault_id.encode()))
        return FaultContext(lab=self.lab, rng=rng)

    # --------------------------------------------------------------------------- actions
    def inject(
        self, fault_id: str, kind: str, params: dict[str, Any], actor: str = "scenario"
    ) -> ActiveFault:
        """Inject one fault; FaultError when it is already active or the lab refuses it."""
        if any(f.fault_id == fault_id for f in self.active()):
            raise FaultError(f"fault {fault_id} is already active")
        fault = fault_class(kind).from_params(params)
        try:
            state = fault.inject(self.context(fault_id))
        except (AdminApiError, LabError, OSError) as exc:
            self.lab.events.append("fault_failed", fault=fault_id, type=kind, error=str(exc))
            raise FaultError(f"fault {fault_id} ({kind}) could not be injected: {exc}") from exc
        record = ActiveFault(
            fault_id=fault_id,
            kind=kind,
            params=fault.params.model_dump(mode="json"),
            injected_at=time.time(),
            state=state or {},
        )
        self._write([*self.active(), record])
        self.lab.events.append(
            "fault_injected",
            fault=fault_id,
            type=kind,
            family=fault.family,
            nodes=fault.nodes(),
            actor=actor,
        )
        return record

    def revert(self, fault_id: str, actor: str = "instructor") -> None:
        """Undo one active fault; FaultError when no such fault is active."""
        faults = self.active()
        record = next((f for f in faults if f.fault_id == fault_id), None)
        if record is None:
            raise FaultError(f"fault {fault_id} is not active")
        fault = self.build(record)
        try:
            fault.revert(self.context(fault_id), record.state)
        except (AdminApiError, LabError, OSError) as exc:
            raise FaultError(
                f"fault {fault_id} ({record.kind}) could not be reverted: {exc}"
            ) from exc
        self._write([f for f in faults if f.fault_id != fault_id])
        self.lab.events.append("fault_reverted", fault=fault_id, type=record.kind, actor=actor)

    def revert_all(self, actor: str = "instructor") -> list[str]:
        """Revert every active fault, newest first; returns their ids."""
        done = []
        for record in reversed(self.active()):
            self.revert(record.fault_id, actor)
            done.append(record.fault_id)
        return done

    @staticmethod
    def build(record: ActiveFault) -> Fault:
        return fault_class(record.kind).from_params(record.params)
