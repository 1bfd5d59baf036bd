"""DICOM toolbox actions: echo, find, move, get, store, and a modality's worklist query.

From the administrator's workstation (calling AE ADMIN_WS, as DCMTK's tools with `-aet
ADMIN_WS`), or — for echo — from a node's own console ("Verify"), which runs a real C-ECHO from
that node with its own AE title to one of its configured peers. Find, move and store with `from`
set to a node use that node's AE title as calling AE, as `findscu -aet CT_1` would. A C-GET's
objects land on the admin workstation's disk, in `<lab root>/admin_ws/received/` (received_dir).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from simlab.client import dicom_scu
from simlab.client.admin import AdminApiError
from simlab.client.dicom_scu import ADMIN_WS, DicomResult
from simlab.runtime.lab import Lab
from simlab.workflow.actions.engine import (
    ActionArgs,
    ActionError,
    ActionsBase,
    NodeArgs,
    Outcome,
    action,
)

Level = Literal["PATIENT", "STUDY", "SERIES", "IMAGE"]


class DicomArgs(ActionArgs):
    """Who talks to whom."""

    from_: str = Field(default=ADMIN_WS, alias="from")
    """A node id, or an AE title used from the admin workstation (default ADMIN_WS)."""
    to: str
    """A node id (its DICOM endpoint from the lab's manifest) or an AE title (then give host
    and port)."""
    ae_title: str | None = None
    """Called AE title instead of the target node's own (to try a wrong or an old title)."""
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    timeout: float = Field(default=10.0, gt=0, le=300)


class FindArgs(DicomArgs):
    model: Literal["study", "patient", "worklist"] | None = None
    """Query model; default: worklist for the RIS, study root otherwise."""
    level: Level | None = None
    query: dict[str, Any] = Field(default_factory=dict)
    """Keyword -> value, e.g. {"PatientName": "DOE*"}."""


class MoveArgs(DicomArgs):
    destination: str
    """The Move Destination: an AE title, or a node id (its AE title)."""
    model: Literal["study", "patient"] = "study"
    level: Level | None = None
    query: dict[str, Any]
    timeout: float = Field(default=60.0, gt=0, le=600)


class GetArgs(DicomArgs):
    model: Literal["study", "patient"] = "study"
    level: Level | None = None
    query: dict[str, Any]
    timeout: float = Field(default=60.0, gt=0, le=600)


def received_dir(lab: Lab) -> Path:
    """Where the admin workstation keeps what a C-GET brought back: <lab root>/admin_ws/received."""
    return lab.paths.root / "admin_ws" / "received"


def received_files(lab: Lab) -> list[Path]:
    """The files a C-GET saved on the admin workstation, newest first."""
    directory = received_dir(lab)
    if not directory.is_dir():
        return []
    files = [p for p in directory.iterdir() if p.is_file() and p.suffix == ".dcm"]
    return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)


class StoreArgs(DicomArgs):
    files: list[str] = Field(min_length=1)
    """DICOM Part 10 files (or directories of them) on the admin workstation's disk."""
    timeout: float = Field(default=30.0, gt=0, le=600)


class WorklistArgs(NodeArgs):
    filters: dict[str, Any] = Field(default_factory=dict)
    """Overrides of the modality's worklist query settings for this query only."""


@dataclass
class Endpoint:
    """A DICOM peer to call."""

    ae_title: str
    host: str
    port: int
    node: str | None = None

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def _peers(config: Any, name: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every AE entry in a config (AE table rows, destination, mwl, mpps, retrieve.provider)
    with the name a node's Verify route knows it by (the field name, or its AE title)."""
    if isinstance(config, dict):
        if {"ae_title", "host", "port"} <= set(config) and name != "dicom":
            yield name, config
            return
        for key, value in config.items():
            yield from _peers(value, key)
    elif isinstance(config, list):
        for item in config:
            if isinstance(item, dict) and "ae_title" in item:
                yield item["ae_title"], item
            else:
                yield from _peers(item, name)


def _result(r: DicomResult, prefix: str, data: Any = None) -> Outcome:
    return Outcome(data if data is not None else r.as_dict(), f"{prefix}: {r.text}", ok=r.ok)


class DicomActions(ActionsBase):
    """dicom.echo, dicom.find, dicom.move, dicom.get, dicom.store, worklist.query."""

    def _target(self, a: DicomArgs) -> Endpoint:
        if a.to in self.node_ids():
            entry = self.entry(a.to)
            if not entry.dicom_port or not entry.ae_title:
                raise ActionError(f"{a.to} has no DICOM service")
            return Endpoint(
                a.ae_title or entry.ae_title, a.host or entry.host, a.port or entry.dicom_port, a.to
            )
        if not (a.host and a.port):
            raise ActionError(
                f"{a.to!r} is not a node of this lab ({', '.join(self.node_ids())}); "
                "to call an AE title give host and port"
            )
        return Endpoint(a.ae_title or a.to, a.host, a.port)

    def _calling(self, a: DicomArgs) -> str:
        if a.from_ in self.node_ids():
            entry = self.entry(a.from_)
            if not entry.ae_title:
                raise ActionError(f"{a.from_} has no DICOM AE title")
            return entry.ae_title
        return a.from_

    @action("dicom.echo", DicomArgs)
    def dicom_echo(self, a: DicomArgs) -> Outcome:
        """C-ECHO from the admin workstation, or a node's Verify button."""
        if a.from_ in self.node_ids():
            return self._node_echo(a)
        target = self._target(a)
        calling = self._calling(a)
        r = dicom_scu.echo(target.host, target.port, target.ae_title, calling, a.timeout)
        return _result(r, f"echo {calling} -> {target}")

    def _node_echo(self, a: DicomArgs) -> Outcome:
        """Ask the node to echo one of its configured peers: the one at the target's address
        when there is one (whatever AE title it is configured with), else by AE title/role."""
        client = self.client(a.from_, timeout=a.timeout + 10)
        body: dict[str, Any] = {"timeout": a.timeout}
        if a.to in self.node_ids() and not (a.host or a.port or a.ae_title):
            target = self._target(a)
            peers = list(_peers(client.get("/config")))
            forwards = self._network_links()
            address = (target.host, target.port)
            by_address = [
                n
                for n, p in peers
                if (p["host"], p["port"]) == address or forwards.get(p["port"]) == address
            ]
            by_title = [n for n, p in peers if p["ae_title"] == target.ae_title]
            names = by_address or by_title
            if not names:
                known = ", ".join(
                    f"{n} ({p['ae_title']}@{p['host']}:{p['port']})" for n, p in peers
                )
                return Outcome(
                    {"peers": [p for _n, p in peers]},
                    f"{a.from_} has no peer configured for {a.to} ({target}); "
                    f"its peers: {known or 'none'}",
                    ok=False,
                )
            body["ae_title"] = names[0]
        else:
            body["ae_title"] = a.ae_title or a.to
            if a.host and a.port:
                body.update(host=a.host, port=a.port)
        answer = client.post("/dicom/echo", body)
        where = f"{answer['calling_ae']} -> {answer['called_ae']}@{answer['host']}:{answer['port']}"
        return Outcome(answer, f"echo from {a.from_} {where}: {answer['text']}", ok=answer["ok"])

    def _network_links(self) -> dict[int, tuple[str, int]]:
        """listen port -> upstream (host, port) of the department network's links: a peer
        configured with a link's port is the service at the link's far end."""
        out: dict[int, tuple[str, int]] = {}
        for entry in self.lab.manifest.nodes:
            if entry.role != "network":
                continue
            try:
                links = self.lab.client(entry.node_id, timeout=5).get("/config").get("links", [])
            except AdminApiError:
                continue
            for link in links:
                out[link["listen_port"]] = (link["upstream_host"], link["upstream_port"])
        return out

    @action("dicom.find", FindArgs)
    def dicom_find(self, a: FindArgs) -> Outcome:
        """C-FIND (study/patient root or modality worklist)."""
        target = self._target(a)
        model = a.model or (
            "worklist" if target.node and self.entry(target.node).role == "ris" else "study"
        )
        query = dict(a.query)
        if a.level:
            if model == "worklist":
                raise ActionError("dicom.find: a worklist query has no level")
            query["QueryRetrieveLevel"] = a.level
        calling = self._calling(a)
        r = dicom_scu.find(
            target.host, target.port, target.ae_title, query, model, calling, a.timeout
        )
        return _result(r, f"find ({model}) {calling} -> {target}")

    @action("dicom.move", MoveArgs)
    def dicom_move(self, a: MoveArgs) -> Outcome:
        """C-MOVE: ask a Q/R SCP to send matching objects to a destination AE."""
        target = self._target(a)
        destination = a.destination
        if destination in self.node_ids():
            destination = self.entry(destination).ae_title or destination
        query = dict(a.query)
        if a.level:
            query["QueryRetrieveLevel"] = a.level
        calling = self._calling(a)
        r = dicom_scu.move(
            target.host,
            target.port,
            target.ae_title,
            destination,
            query,
            a.model,
            calling,
            a.timeout,
        )
        return _result(r, f"move {calling} -> {target} to {destination}")

    @action("dicom.get", GetArgs)
    def dicom_get(self, a: GetArgs) -> Outcome:
        """C-GET: retrieve matching objects to the admin workstation on the same association."""
        target = self._target(a)
        query = dict(a.query)
        if a.level:
            query["QueryRetrieveLevel"] = a.level
        calling = self._calling(a)
        directory = received_dir(self.lab)
        r = dicom_scu.get(
            target.host,
            target.port,
            target.ae_title,
            query,
            directory,
            a.model,
            calling,
            a.timeout,
        )
        data = {
            "ok": r.ok,
            "status": r.status,
            "text": r.text,
            "suboperations": r.details.get("suboperations", {}),
            "files": r.details.get("files", []),
            "directory": str(directory),
        }
        return _result(r, f"get {calling} -> {target}", data)

    @action("dicom.store", StoreArgs)
    def dicom_store(self, a: StoreArgs) -> Outcome:
        """C-STORE files from the admin workstation's disk."""
        target = self._target(a)
        files: list[Path] = []
        for name in a.files:
            path = Path(name)
            if path.is_dir():
                files.extend(sorted(p for p in path.rglob("*") if p.is_file()))
            elif path.is_file():
                files.append(path)
            else:
                raise ActionError(f"dicom.store: no such file {name}")
        calling = self._calling(a)
        r = dicom_scu.store(target.host, target.port, target.ae_title, files, calling, a.timeout)
        return _result(r, f"store {calling} -> {target}")

    @action("worklist.query", WorklistArgs)
    def worklist_query(self, a: WorklistArgs) -> Outcome:
        """Have a modality query its worklist now (as the technologist's console does)."""
        if self.entry(a.node).role != "modality":
            raise ActionError(f"worklist.query: {a.node} is not a modality")
        answer = self.client(a.node).post("/worklist/query", a.filters)
        items = answer.get("items", [])
        return Outcome(answer, f"{a.node}: worklist has {len(items)} item(s)")
