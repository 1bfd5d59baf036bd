"""The fault contract: a small class with inject / revert / symptom, and what it may act through.

Faults are data-driven: a scenario names a fault `type` and gives its `params`; the class
validates the params (pydantic, so a scenario file with a wrong key is refused with a clear
message), `inject` changes the real world and returns what `revert` needs to undo it. The revert
state is JSON, persisted in the lab directory, so an instructor can revert a fault from another
process (or after the scenario runner crashed).
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar, get_args

from pydantic import ConfigDict

from simlab.client.admin import AdminClient, path_part
from simlab.common.config import StrictModel
from simlab.runtime.lab import Lab

Family = Literal[
    "association",
    "negotiation",
    "data",
    "storage",
    "hl7",
    "worklist",
    "retrieve",
    "network",
    "process",
]
FAMILIES: tuple[Family, ...] = get_args(Family)

RevertState = dict[str, Any]
"""What `inject` returns and `revert` receives: JSON-serialisable."""


class FaultParams(StrictModel):
    """Base of every fault's parameters: unknown keys are errors (a typo in a scenario shows)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeParams(FaultParams):
    """Parameters of a fault that acts on one node."""

    node: str


class FaultError(RuntimeError):
    """A fault could not be injected or reverted (the message says why and on which node)."""


@dataclass
class FaultContext:
    """What a fault may act through: the lab (processes, files), its nodes' admin APIs, a seed.

    `rng` is seeded from the scenario's seed and the fault's id, so a fault that picks something
    (which study to corrupt, which message to poison) picks the same thing every run.
    """

    lab: Lab
    rng: random.Random

    def client(self, node_id: str, timeout: float = 15.0) -> AdminClient:
        return self.lab.client(node_id, timeout=timeout)

    def has_node(self, node_id: str) -> bool:
        return any(n.node_id == node_id for n in self.lab.manifest.nodes)

    def config(self, node_id: str) -> dict[str, Any]:
        return self.client(node_id).get("/config")

    def patch_config(self, node_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        """PATCH a node's live config; returns the inverse patch that restores what was there.

        The inverse holds the old value of every key the patch touched (None where the key did
        not exist, which the node's merge deletes), so `restore_config` undoes exactly this
        change and nothing the trainee changed elsewhere.
        """
        before = self.config(node_id)
        self.client(node_id).patch("/config", patch)
        return inverse_patch(before, patch)

    def restore_config(self, node_id: str, inverse: dict[str, Any]) -> None:
        self.client(node_id).patch("/config", inverse)

    def ae_entry(self, node_id: str, ae_title: str) -> dict[str, Any] | None:
        """The node's AE-table row for `ae_title`, or None."""
        rows = self.client(node_id).get("/ae-table")
        return next((r for r in rows if r["ae_title"] == ae_title), None)

    def put_ae(self, node_id: str, row: dict[str, Any]) -> None:
        body = {k: v for k, v in row.items() if k != "ae_title"}
        self.client(node_id).put(f"/ae-table/{path_part(row['ae_title'])}", body)

    def delete_ae(self, node_id: str, ae_title: str) -> None:
        self.client(node_id).delete(f"/ae-table/{path_part(ae_title)}")


def inverse_patch(before: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """The merge patch that turns `merge(before, patch)` back into `before` for the keys touched."""
    out: dict[str, Any] = {}
    for key, value in patch.items():
        old = before.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            out[key] = inverse_patch(old, value)
        else:
            out[key] = old
    return out


class Fault(ABC):
    """One failure a PACS administrator meets. Subclasses set the class attributes and params.

    Class attributes:
        kind: the `type` a scenario uses (snake_case, unique).
        family: one of the nine families of design.md section 3.
        title: one line for catalogs ("Modality sends to a wrong Called AE").
        symptom: what the trainee sees, with the real codes ("A-ASSOCIATE-RJ 1/1/7 ...").
        root_cause: what is really wrong, for the debrief and the instructor view.
        Params: the pydantic model of the parameters.
    """

    kind: ClassVar[str]
    family: ClassVar[Family]
    title: ClassVar[str]
    symptom: ClassVar[str]
    root_cause: ClassVar[str]
    Params: ClassVar[type[FaultParams]] = FaultParams

    def __init__(self, params: FaultParams) -> None:
        self.params = params

    @classmethod
    def from_params(cls, raw: dict[str, Any]) -> Fault:
        return cls(cls.Params.model_validate(raw))

    def nodes(self) -> list[str]:
        """The nodes this fault touches (for the instructor view and the steady-state gate)."""
        node = getattr(self.params, "node", None)
        return [node] if node else []

    @abstractmethod
    def inject(self, ctx: FaultContext) -> RevertState:
        """Break the lab; return what `revert` needs. Raise FaultError when it cannot."""

    @abstractmethod
    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        """Undo `inject` (idempotent: reverting what the trainee already fixed is harmless)."""

    def describe(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "family": self.family,
            "title": self.title,
            "symptom": self.symptom,
            "root_cause": self.root_cause,
            "nodes": self.nodes(),
            "params": self.params.model_dump(mode="json"),
        }


FAULT_TYPES: dict[str, type[Fault]] = {}
"""Every fault class by `kind`, filled by `@register` as the family modules are imported."""

F = TypeVar("F", bound=type[Fault])


def register(cls: F) -> F:
    """Class decorator: add a fault class to the catalog (kinds must be unique)."""
    if cls.kind in FAULT_TYPES and FAULT_TYPES[cls.kind] is not cls:
        raise ValueError(f"fault kind {cls.kind!r} registered twice")
    if cls.family not in FAMILIES:
        raise ValueError(f"fault {cls.kind}: unknown family {cls.family!r}")
    FAULT_TYPES[cls.kind] = cls
    return cls
