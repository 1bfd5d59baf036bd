"""The scenario file's schema: what an instructor writes in YAML, validated by pydantic.

A scenario is data, never code: every field here is a value, a reference by name (a patient or an
order `ref`), or a `${ref.field}` placeholder filled from the seeded data. Unknown keys are
errors, so a typo in a scenario file is reported (with its line) instead of silently ignored.
`simlab scenario schema` prints the JSON Schema of `Scenario` for editor autocompletion.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

REF = r"^[a-z][a-z0-9_]{0,39}$"
"""Names an instructor gives to patients, orders, faults, objectives, hints, questions."""
NODE = r"^([a-z][a-z0-9-]{0,39}|ADMIN_WS)$"


class Strict(BaseModel):
    """Every scenario model forbids unknown keys (a typo must show, not be ignored)."""

    model_config = ConfigDict(extra="forbid")


Level = Literal["novice", "intermediate", "expert"]
CpsaSection = Annotated[int, Field(ge=1, le=8)]
CiipDomain = Literal[
    "procurement",
    "project management",
    "operations",
    "communications",
    "training and education",
    "image management",
    "information technology",
    "systems management",
    "clinical engineering",
    "medical informatics",
]
Topic = Literal[
    "dicom",
    "hl7 and integration",
    "networking",
    "storage and archive",
    "data integrity",
    "workflow",
    "incident management",
]


class Domains(Strict):
    """Which certification content the scenario exercises (protocol-codes.md, last section)."""

    cpsa: list[CpsaSection] = Field(default_factory=list, description="CPSA exam sections 1-8")
    ciip: list[CiipDomain] = Field(default_factory=list, description="CIIP (ABII) domains")
    topics: list[Topic] = Field(default_factory=list, description="simlab's own topic tags")


# ------------------------------------------------------------------------------------ seed data
class PatientSeed(Strict):
    """A patient registered at the RIS before the scenario starts (ADT^A04 reaches the PACS)."""

    ref: str = Field(pattern=REF)
    name: str | None = Field(default=None, description="DICOM PN, e.g. LEE^ANNA; Faker if absent")
    birth_date: str | None = Field(default=None, pattern=r"^\d{8}$")
    sex: Literal["F", "M", "O"] | None = None


class OrderSeed(Strict):
    """An order placed at the RIS (ORM^O01 to the PACS), scheduled for a modality node."""

    ref: str = Field(pattern=REF)
    patient: str = Field(pattern=REF)
    station: str = Field(pattern=NODE, description="The modality node, e.g. ct-1")
    procedure: str | None = Field(default=None, description="Procedure code, e.g. CTHEAD")
    performed: bool = Field(
        default=False,
        description="Performed before the faults fire (a prior study in the PACS)",
    )
    later: bool = Field(
        default=False,
        description="Placed during the scenario by a `place` activity, not at seeding "
        "(so RIS-side faults act on it)",
    )

    @model_validator(mode="after")
    def _not_both(self) -> OrderSeed:
        if self.later and self.performed:
            raise ValueError("an order placed later cannot be performed before the start")
        return self


class Topology(Strict):
    """Which nodes of the department this scenario's lab runs (all when empty)."""

    nodes: list[str] = Field(default_factory=list)
    images_per_series: int | None = Field(
        default=4,
        ge=1,
        le=500,
        description="Images each modality acquires per series (small keeps the lab quick)",
    )


# ------------------------------------------------------------------------------------- triggers
class Trigger(Strict):
    """When a fault fires or an activity happens. Exactly one of the fields (default: at start).

    - `at: start` fires when the scenario starts (after the steady-state gate);
    - `after: 30` fires 30 seconds after the start;
    - `on: {event: studies_stored, count: 3}` fires when the PACS has stored the third new
      study since the start (events: studies_stored, instances_stored, fault_fired,
      activity_done, objective_met).
    """

    at: Literal["start"] | None = None
    after: float | None = Field(default=None, ge=0, le=24 * 3600)
    on: EventTrigger | None = None

    @model_validator(mode="after")
    def _one(self) -> Trigger:
        given = [x for x in (self.at, self.after, self.on) if x is not None]
        if len(given) > 1:
            raise ValueError("a trigger has one of 'at', 'after' or 'on'")
        if not given:
            self.at = "start"
        return self


class EventTrigger(Strict):
    event: Literal[
        "studies_stored", "instances_stored", "fault_fired", "activity_done", "objective_met"
    ]
    count: int = Field(default=1, ge=1, le=100_000)
    ref: str | None = Field(default=None, description="fault/activity/objective id for *_fired")


Trigger.model_rebuild()


class FaultSpec(Strict):
    """A fault of the catalog (`simlab faults list`), its parameters and when it fires."""

    id: str = Field(pattern=REF)
    type: str
    params: dict[str, Any] = Field(default_factory=dict)
    trigger: Trigger = Field(default_factory=Trigger)


class ActivitySpec(Strict):
    """Something the department does during the scenario (so the fault's symptom shows).

    `perform: ct_head` has the order's modality run the whole procedure (worklist, MPPS,
    images, commitment); `action: {...}` is any admin action, done as the department (e.g. a
    registration clerk correcting a name at the RIS).
    """

    id: str = Field(pattern=REF)
    place: str | None = Field(
        default=None, pattern=REF, description="An order ref (`later: true`) placed now"
    )
    perform: str | None = Field(default=None, pattern=REF)
    walk_in: str | None = Field(
        default=None, pattern=REF, description="An order ref keyed by hand (no worklist)"
    )
    action: dict[str, Any] | None = None
    trigger: Trigger = Field(default_factory=Trigger)

    @model_validator(mode="after")
    def _one(self) -> ActivitySpec:
        given = (self.place, self.perform, self.walk_in, self.action)
        if sum(x is not None for x in given) != 1:
            raise ValueError(
                "an activity has exactly one of 'place', 'perform', 'walk_in' or 'action'"
            )
        return self


# ----------------------------------------------------------------------------------- the ticket
class Ticket(Strict):
    """What the trainee reads: a service-desk ticket, as a clinician would write it."""

    reporter: str = Field(description="Who opened the ticket, e.g. 'Dr. Lee, radiology'")
    priority: Literal["low", "normal", "high", "critical"] = "normal"
    subject: str
    body: str


# ------------------------------------------------------------------------------------ objectives
class Objective(Strict):
    """A named, weighted check on the real state of the lab (see simlab.scenarios.checks)."""

    id: str = Field(pattern=REF)
    title: str
    check: dict[str, Any] = Field(description="{type: <check type>, ...its parameters}")
    weight: float = Field(default=1.0, gt=0, le=100)
    fail_message: str = Field(default="", description="What the trainee sees while it fails")
    reveal: str = Field(
        default="start",
        description="'start', or the id of the objective whose success reveals this one",
    )

    @field_validator("check")
    @classmethod
    def _has_type(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(value.get("type"), str):
            raise ValueError("a check needs a 'type' (see `simlab scenario checks`)")
        return value


class Hint(Strict):
    """A hint in tiers: a nudge, then where to look, then the fix; costs points when taken."""

    id: str = Field(pattern=REF)
    text: str
    cost: float = Field(default=5, ge=0, le=100)


class Penalties(Strict):
    """Collateral damage and its price (design.md section 4)."""

    data_lost: float = Field(
        default=20, ge=0, description="Per study with acknowledged images now missing"
    )
    unrelated_config_change: float = Field(
        default=5, ge=0, description="Per config key changed outside `allowed_changes`"
    )
    needless_restart: float = Field(
        default=5, ge=0, description="Per restart or stop of a node not in `restart_ok`"
    )
    time_per_minute_over: float = Field(default=1, ge=0)
    time_max: float = Field(default=15, ge=0)
    allowed_changes: list[str] = Field(
        default_factory=list,
        description="Config keys a fix may change: 'node:dotted.key', '*' wildcards",
    )
    restart_ok: list[str] = Field(default_factory=list, description="Nodes a fix may restart")


class Question(Strict):
    """A root-cause question, as in the certification exams: multiple choice or short answer."""

    id: str = Field(pattern=REF)
    text: str
    choices: dict[str, str] | None = Field(default=None, description="key -> text")
    answer: str | None = Field(default=None, description="The right choice key")
    accepted: list[str] | None = Field(default=None, description="Accepted short answers")
    points: float = Field(default=10, ge=0, le=100)

    @model_validator(mode="after")
    def _answerable(self) -> Question:
        if self.choices is not None:
            if self.answer not in (self.choices or {}):
                raise ValueError("'answer' must be one of the keys of 'choices'")
        elif not self.accepted:
            raise ValueError("a question has 'choices' with 'answer', or 'accepted' answers")
        return self


class WrongFix(Strict):
    """A tempting wrong fix: the tests check that it is penalised."""

    title: str
    actions: list[dict[str, Any]]
    why: str = Field(description="Why it is wrong (shown in the debrief)")
    max_percent: float = Field(
        default=70, ge=0, le=100, description="The score it may reach at most"
    )
    settle_seconds: float = Field(
        default=15, ge=0, le=300, description="How long the tests let the lab react to it"
    )


class Scenario(Strict):
    """One scenario file."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,60}$")
    title: str
    level: Level
    domains: Domains = Field(default_factory=Domains)
    expected_minutes: float = Field(gt=0, le=480)
    summary: str = Field(description="One paragraph for the catalog preview")
    seed: int = Field(default=1, ge=0)
    locale: str = Field(default="en_US", pattern=r"^[a-z]{2}_[A-Z]{2}$")
    team: bool = Field(default=False, description="An incident-rehearsal scenario for a team")
    topology: Topology = Field(default_factory=Topology)
    patients: list[PatientSeed] = Field(default_factory=list)
    orders: list[OrderSeed] = Field(default_factory=list)
    faults: list[FaultSpec] = Field(default_factory=list)
    activity: list[ActivitySpec] = Field(default_factory=list)
    ticket: Ticket
    objectives: list[Objective] = Field(min_length=1)
    hints: list[Hint] = Field(default_factory=list)
    penalties: Penalties = Field(default_factory=Penalties)
    questions: list[Question] = Field(default_factory=list)
    debrief: str
    solution: list[dict[str, Any]] = Field(
        min_length=1, description="The reference solution: admin actions, in order"
    )
    wrong_fixes: list[WrongFix] = Field(default_factory=list)
    points: float = Field(default=100, gt=0, le=1000, description="What the objectives are worth")
    pass_percent: float = Field(default=70, ge=0, le=100)

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        """Every name used is defined once (patients, orders, ids), every ref resolves."""
        for what, items in (
            ("patient", self.patients),
            ("order", self.orders),
            ("fault", self.faults),
            ("activity", self.activity),
            ("objective", self.objectives),
            ("hint", self.hints),
            ("question", self.questions),
        ):
            ids = [getattr(i, "ref", None) or i.id for i in items]
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            if dupes:
                raise ValueError(f"{what} ids used twice: {', '.join(dupes)}")
        patients = {p.ref for p in self.patients}
        orders = {o.ref for o in self.orders}
        for order in self.orders:
            if order.patient not in patients:
                raise ValueError(f"order {order.ref}: no patient {order.patient!r}")
        later = {o.ref for o in self.orders if o.later}
        for act in self.activity:
            ref = act.place or act.perform or act.walk_in
            if ref and ref not in orders:
                raise ValueError(f"activity {act.id}: no order {ref!r}")
            if act.place and act.place not in later:
                raise ValueError(f"activity {act.id}: order {act.place} is not `later: true`")
        objectives = {o.id for o in self.objectives}
        for obj in self.objectives:
            if obj.reveal != "start" and obj.reveal not in objectives:
                raise ValueError(f"objective {obj.id}: reveal after unknown objective")
        nodes = set(self.topology.nodes)
        if nodes:
            for order in self.orders:
                if order.station not in nodes:
                    raise ValueError(f"order {order.ref}: station {order.station} not in topology")
        return self


PLACEHOLDER = re.compile(r"\$\{([a-z][a-z0-9_-]*)\.([A-Za-z0-9_.\[\]-]+)\}")
"""Filled in at run time, never evaluated:
- `${ct_head.accession}`: a field of a seeded patient or order;
- `${pacs.dicom_port}`: a field of a node (ae_title, host, dicom_port, hl7_port, admin_port);
- `${baseline.ct-1.destination.port}`: a node's config key as it was before any fault fired;
- `${faults.poison.entry}`: what an active fault recorded (e.g. the queue entry it poisoned),
  for reference solutions only — a trainee finds it by looking."""
