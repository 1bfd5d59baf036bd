"""Objective checks: typed probes of the real state of the lab, each with its evidence.

A check asks a node what a PACS administrator would ask it — over DICOM (a C-ECHO from the
admin workstation or from a node's console), or through its admin API (the PACS index, the RIS
queue, a modality's worklist) — and returns whether it holds and the evidence it saw. The
trainee's own claims never count. The same checks are the steady-state gate before faults fire.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from simlab.client.admin import AdminApiError, AdminClient, path_part
from simlab.client.dicom_scu import echo as dicom_echo
from simlab.runtime.lab import Lab
from simlab.runtime.topology import ADMIN_WORKSTATION_AE


@dataclass
class CheckResult:
    """Whether a check holds, and what it saw (shown in the report as evidence)."""

    ok: bool
    evidence: str


@dataclass
class CheckContext:
    """What checks read: the lab, the seeded data by ref, and a per-evaluation cache."""

    lab: Lab
    refs: dict[str, dict[str, Any]]
    cache: dict[tuple[str, str], Any] = field(default_factory=dict)

    def client(self, node: str) -> AdminClient:
        return self.lab.client(node, timeout=15.0)

    def get(self, node: str, path: str, **query: Any) -> Any:
        """GET through the admin API, cached for one evaluation round (checks share reads)."""
        key = (node, path + repr(sorted(query.items())))
        if key not in self.cache:
            self.cache[key] = self.client(node).get(path, **query)
        return self.cache[key]

    def ref(self, name: str) -> dict[str, Any]:
        try:
            return self.refs[name]
        except KeyError:
            raise KeyError(f"no patient or order {name!r} in this scenario") from None


class Check(BaseModel):
    """Base of every check: `type` selects the class; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    type: str
    kind: ClassVar[str]
    describe: ClassVar[str]

    def evaluate(self, ctx: CheckContext) -> CheckResult:  # pragma: no cover - abstract
        raise NotImplementedError


CHECK_TYPES: dict[str, type[Check]] = {}


def check(cls: type[Check]) -> type[Check]:
    """Class decorator: register a check type under its `kind`."""
    CHECK_TYPES[cls.kind] = cls
    return cls


def evaluate(raw: dict[str, Any], ctx: CheckContext) -> CheckResult:
    """Run one check from its scenario dict; a node that cannot answer is a failed check."""
    model = CHECK_TYPES[raw["type"]].model_validate(raw)
    try:
        return model.evaluate(ctx)
    except AdminApiError as exc:
        return CheckResult(False, f"could not ask the node: {exc}")
    except KeyError as exc:
        return CheckResult(False, str(exc.args[0]))


# ------------------------------------------------------------------------------ connectivity
@check
class EchoCheck(Check):
    """C-ECHO from a node's console (or the admin workstation) to another node succeeds."""

    kind = "echo"
    describe = "C-ECHO from A to B succeeds (PS3.7 9.1.5 Verification)"
    type: Literal["echo"]
    from_: str = Field(alias="from", default=ADMIN_WORKSTATION_AE)
    to: str

    def evaluate(self, ctx: CheckContext) -> CheckResult:
        target = ctx.lab.manifest.node(self.to)
        if self.from_ == ADMIN_WORKSTATION_AE:
            result = dicom_echo(
                target.host, target.dicom_port or 0, target.ae_title or "", ADMIN_WORKSTATION_AE
            )
            return CheckResult(result.ok, f"{ADMIN_WORKSTATION_AE} → {self.to}: {result.text}")
        source = ctx.lab.manifest.node(self.from_)
        peer = _peer_name(source.role, target.role, target.ae_title or "")
        answer = ctx.client(self.from_).post("/dicom/echo", {"ae_title": peer})
        return CheckResult(bool(answer.get("ok")), f"{self.from_} → {self.to}: {answer['text']}")


def _peer_name(source_role: str, target_role: str, target_ae: str) -> str:
    """How a node's console names the peer: a modality by its configured role, others by AE."""
    if source_role == "modality":
        return {"pacs": "destination", "ris": "mwl"}.get(target_role, target_ae)
    return target_ae


@check
class NodeUpCheck(Check):
    """The node's process runs and its admin API answers healthy."""

    kind = "node_up"
    describe = "the node is up and healthy"
    type: Literal["node_up"]
    node: str

    def evaluate(self, ctx: CheckContext) -> CheckResult:
        for status in ctx.lab.status():
            if status.entry.node_id == self.node:
                return CheckResult(status.state == "up", f"{self.node}: {status.state}")
        return CheckResult(False, f"no node {self.node}")


# -------------------------------------------------------------------------------- the archive
@check
class StudyInPacsCheck(Check):
    """The order's study is in the PACS: once, complete, with the RIS's demographics."""

    kind = "study_in_pacs"
    describe = "the study for an order is in the PACS (instances, demographics)"
    type: Literal["study_in_pacs"]
    order: str
    instances: int | Literal["all"] | None = "all"
    demographics: bool = True
    node: str = "pacs"

    def evaluate(self, ctx: CheckContext) -> CheckResult:
        order = ctx.ref(self.order)
        rows = ctx.get(self.node, "/studies", accession=order["accession"])
        if not rows:
            return CheckResult(False, f"no study with accession {order['accession']} in the PACS")
        if len(rows) > 1:
            return CheckResult(False, f"{len(rows)} studies share accession {order['accession']}")
        study = rows[0]
        notes = [f"study {study['study_uid']} ({study['instance_count']} images)"]
        ok = True
        expected = self.instances
        if expected == "all":
            expected = _acquired(ctx, order)
        if expected is not None and study["instance_count"] != expected:
            ok = False
            notes.append(f"expected {expected} images")
        if self.demographics:
            patient = _ris_patient(ctx, order["patient_id"])
            diffs = _demographic_diffs(study, patient)
            if diffs:
                ok = False
                notes.append("differs from the RIS: " + "; ".join(diffs))
            else:
                notes.append("demographics match the RIS")
        return CheckResult(ok, ", ".join(notes))


def _acquired(ctx: CheckContext, order: dict[str, Any]) -> int | None:
    """How many images the modality acquired for the order (None when it never did)."""
    station, proc_id = order.get("station"), order.get("procedure_id")
    if not station or not proc_id:
        return None
    proc = ctx.get(station, f"/procedures/{path_part(proc_id)}")
    return sum(len(s["instances"]) for s in proc.get("series", []))


def _ris_patient(ctx: CheckContext, patient_id: str) -> dict[str, Any]:
    row = ctx.get("ris", f"/patients/{path_part(patient_id)}")
    return row.get("patient", row)


def _demographic_diffs(study: dict[str, Any], patient: dict[str, Any]) -> list[str]:
    out = []
    for pacs_key, ris_key, label in (
        ("patient_id", "patient_id", "Patient ID"),
        ("patient_name", "name", "name"),
        ("birth_date", "birth_date", "birth date"),
        ("sex", "sex", "sex"),
    ):
        a, b = study.get(pacs_key) or "", patient.get(ris_key) or ""
        if a != b:
            out.append(f"{label} PACS {a!r} / RIS {b!r}")
    return out


@check
class StudyMatchesOrderCheck(Check):
    """The PACS holds the order (from ORM^O01) and a study that reconciles with it: same
    accession and Patient ID — what a PACS's "unmatched studies" worklist checks."""

    kind = "study_matches_order"
    describe = "the PACS has the order (HL7) and its study matches it (accession, Patient ID)"
    type: Literal["study_matches_order"]
    order: str

    def evaluate(self, ctx: CheckContext) -> CheckResult:
        order = ctx.ref(self.order)
        accession, patient_id = order["accession"], order["patient_id"]
        known = [o for o in ctx.get("pacs", "/orders", limit=10_000) if o["accession"] == accession]
        studies = ctx.get("pacs", "/studies", accession=accession)
        if not known:
            return CheckResult(False, f"the PACS has no order {accession} (no ORM^O01 for it)")
        if not studies:
            return CheckResult(False, f"the PACS has order {accession} but no study for it")
        wrong = [s["study_uid"] for s in studies if s.get("patient_id") != patient_id]
        if wrong or known[0].get("patient_id") != patient_id:
            return CheckResult(False, f"order {accession} and its study disagree on Patient ID")
        return CheckResult(True, f"order {accession} and its study match (patient {patient_id})")


@check
class PatientStudiesCheck(Check):
    """How many studies the PACS files under a patient (a merge or a split shows here)."""

    kind = "patient_studies"
    describe = "the PACS holds N studies for a patient"
    type: Literal["patient_studies"]
    patient: str
    count: int = Field(ge=0)

    def evaluate(self, ctx: CheckContext) -> CheckResult:
        patient_id = ctx.ref(self.patient)["patient_id"]
        rows = ctx.get("pacs", "/studies", patient_id=patient_id)
        return CheckResult(
            len(rows) == self.count,
            f"{len(rows)} studies under patient ID {patient_id} (expected {self.count})",
        )


@check
class DemographicsCheck(Check):
    """Every PACS study of the patient carries the RIS's current demographics."""

    kind = "demographics_match"
    describe = "PACS demographics of a patient match the RIS"
    type: Literal["demographics_match"]
    patient: str

    def evaluate(self, ctx: CheckContext) -> CheckResult:
        patient_id = ctx.ref(self.patient)["patient_id"]
        rows = ctx.get("pacs", "/studies", patient_id=patient_id)
        if not rows:
            return CheckResult(False, f"no study for patient ID {patient_id} in the PACS")
        patient = _ris_patient(ctx, patient_id)
        diffs = [d for study in rows for d in _demographic_diffs(study, patient)]
        if diffs:
            return CheckResult(False, "; ".join(sorted(set(diffs))))
        return CheckResult(True, f"{len(rows)} studies match the RIS ({patient.get('name')})")


@check
class NoInstanceLostCheck(Check):
    """Every image a modality was told was stored (C-STORE Success) is still in the PACS."""

    kind = "no_instance_lost"
    describe = "no acknowledged image is missing from the PACS"
    type: Literal["no_instance_lost"]

    def evaluate(self, ctx: CheckContext) -> CheckResult:
        missing, total = lost_instances(ctx)
        if missing:
            return CheckResult(False, f"{len(missing)} of {total} acknowledged images are gone")
        return CheckResult(True, f"all {total} acknowledged images are in the PACS")


def lost_instances(ctx: CheckContext) -> tuple[list[str], int]:
    """SOP Instance UIDs the PACS acknowledged to a modality (C-STORE Success in its send
    queue) that the PACS no longer holds, wherever it files them now."""
    acknowledged: set[str] = set()
    for entry in ctx.lab.manifest.nodes:
        if entry.role != "modality":
            continue
        items = ctx.get(entry.node_id, "/queue", state="sent")["items"]
        acknowledged.update(i["sop_instance"] for i in items)
    if not acknowledged:
        return [], 0
    answer = ctx.client("pacs").post("/instances/held", {"sop_uids": sorted(acknowledged)})
    return sorted(answer["missing"]), len(acknowledged)


# --------------------------------------------------------------------------- workflow and HL7
@check
class WorklistCheck(Check):
    """The modality's own worklist query (its settings, its AE title) shows N items."""

    kind = "worklist"
    describe = "a modality's worklist query returns N items"
    type: Literal["worklist"]
    station: str
    count: int | None = Field(default=None, ge=0)
    min: int | None = Field(default=None, ge=0)
    includes: list[str] = Field(default_factory=list, description="order refs that must show")

    def evaluate(self, ctx: CheckContext) -> CheckResult:
        answer = ctx.client(self.station).post("/worklist/query", {})
        items = answer.get("items", [])
        accessions = {i.get("accession_number") for i in items}
        ok = True
        notes = [f"{self.station} sees {len(items)} worklist items"]
        if self.count is not None and len(items) != self.count:
            ok = False
            notes.append(f"expected {self.count}")
        if self.min is not None and len(items) < self.min:
            ok = False
            notes.append(f"expected at least {self.min}")
        for ref in self.includes:
            accession = ctx.ref(ref)["accession"]
            if accession not in accessions:
                ok = False
                notes.append(f"{accession} ({ref}) is missing")
        if answer.get("error"):
            notes.append(str(answer["error"]))
        return CheckResult(ok, "; ".join(notes))


@check
class MppsCheck(Check):
    """The RIS saw the procedure through MPPS (order status IN PROGRESS / COMPLETED)."""

    kind = "order_status"
    describe = "the RIS order reached a status (MPPS COMPLETED, …)"
    type: Literal["order_status"]
    order: str
    status: Literal["SCHEDULED", "IN PROGRESS", "COMPLETED", "DISCONTINUED"] = "COMPLETED"

    def evaluate(self, ctx: CheckContext) -> CheckResult:
        accession = ctx.ref(self.order)["accession"]
        row = ctx.get("ris", f"/orders/{path_part(accession)}")
        row = row.get("order", row)
        return CheckResult(
            row.get("status") == self.status,
            f"order {accession} is {row.get('status')} at the RIS (expected {self.status})",
        )


@check
class QueueDrainedCheck(Check):
    """A node's outbound queue is empty, and nothing was thrown away on the way."""

    kind = "queue_drained"
    describe = "an outbound queue (RIS HL7, modality C-STORE) is empty with no message lost"
    type: Literal["queue_drained"]
    node: str
    max_deleted: int = Field(default=0, ge=0)

    def evaluate(self, ctx: CheckContext) -> CheckResult:
        role = ctx.lab.manifest.node(self.node).role
        if role == "modality":
            counts = ctx.get(self.node, "/queue")["counts"]
            waiting = {k: v for k, v in counts.items() if k != "sent" and v}
            deleted = counts.get("deleted", 0)
        else:
            rows = ctx.get(self.node, "/queue")
            waiting = {}
            for row in rows:
                if row["state"] in ("pending", "dead"):
                    waiting[row["state"]] = waiting.get(row["state"], 0) + 1
            deleted = len(ctx.get(self.node, "/queue", state="deleted"))
        waiting.pop("deleted", None)
        ok = not waiting and deleted <= self.max_deleted
        text = ", ".join(f"{v} {k}" for k, v in sorted(waiting.items())) or "empty"
        return CheckResult(ok, f"{self.node} queue: {text}; {deleted} deleted")


@check
class ViewerOpensCheck(Check):
    """The reading workstation can open the study now (C-FIND + C-MOVE/C-GET from the PACS)."""

    kind = "viewer_opens"
    describe = "the viewer retrieves an order's study"
    type: Literal["viewer_opens"]
    order: str
    node: str = "viewer"

    def evaluate(self, ctx: CheckContext) -> CheckResult:
        accession = ctx.ref(self.order)["accession"]
        try:
            answer = ctx.client(self.node).post("/studies/open", {"accession": accession})
        except AdminApiError as exc:
            return CheckResult(False, f"viewer could not open {accession}: {exc.message}")
        ok = bool(answer.get("ok", True)) and answer.get("received", 1) > 0
        return CheckResult(ok, f"viewer opened {accession}: {_short(answer)}")


def _short(answer: dict[str, Any]) -> str:
    keys = ("status", "received", "instances", "text", "summary")
    return ", ".join(f"{k}={answer[k]}" for k in keys if k in answer) or "ok"


@check
class ConfigCheck(Check):
    """A config key of a node has a value (dotted path; `ae_table[CT_1].port` for rows)."""

    kind = "config_equals"
    describe = "a node's config key equals a value"
    type: Literal["config_equals"]
    node: str
    key: str
    value: Any = None

    def evaluate(self, ctx: CheckContext) -> CheckResult:
        flat = flatten_config(ctx.get(self.node, "/config"))
        actual = flat.get(self.key, "<absent>")
        return CheckResult(actual == self.value, f"{self.node} {self.key} = {actual!r}")


@check
class AeKnownCheck(Check):
    """A node's AE table has a row for an AE title (optionally with host/port)."""

    kind = "ae_known"
    describe = "a node's AE table lists an AE title"
    type: Literal["ae_known"]
    node: str
    ae_title: str
    port_of: str | None = Field(default=None, description="must point at this node's port")

    def evaluate(self, ctx: CheckContext) -> CheckResult:
        rows = ctx.get(self.node, "/ae-table")
        row = next((r for r in rows if r["ae_title"] == self.ae_title), None)
        if row is None:
            return CheckResult(False, f"{self.ae_title} is not in the {self.node} AE table")
        if self.port_of:
            expected = ctx.lab.manifest.node(self.port_of).dicom_port
            ok = row["port"] == expected
            return CheckResult(ok, f"{self.ae_title} → {row['host']}:{row['port']}")
        return CheckResult(True, f"{self.ae_title} → {row['host']}:{row['port']}")


def flatten_config(config: Any, prefix: str = "") -> dict[str, Any]:
    """{'dicom.port': 4242, 'ae_table[CT_1].port': 4101, …}: rows keyed by AE title or name."""
    out: dict[str, Any] = {}
    if isinstance(config, dict):
        for key, value in config.items():
            out.update(flatten_config(value, f"{prefix}.{key}" if prefix else key))
    elif isinstance(config, list) and all(
        isinstance(r, dict) and ("ae_title" in r or "name" in r) for r in config
    ):
        for row in config:
            name = row.get("ae_title") or row.get("name")
            out.update(flatten_config(row, f"{prefix}[{name}]"))
        if not config:
            out[prefix] = []
    else:
        out[prefix] = config
    return out


def key_matches(pattern: str, node: str, key: str) -> bool:
    """`ct-1:destination.*` matches node ct-1's key destination.port; only `*` and `?` are
    wildcards (brackets are literal, as in `pacs:ae_table[CT_1].port`)."""
    want_node, _, want_key = pattern.partition(":")
    return _glob(want_node).fullmatch(node) is not None and (
        _glob(want_key or "*").fullmatch(key) is not None
    )


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(
        "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    )


Evaluator = Callable[[dict[str, Any], CheckContext], CheckResult]
