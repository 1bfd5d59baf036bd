"""A scenario's seed data, made real: patients registered and orders placed at the RIS (so
ADT^A04 and ORM^O01 reach the PACS over MLLP), prior procedures performed at the modalities.

Faker takes the scenario's seed and locale: the same scenario gives the same patients, orders
and images every run. The result is the scenario's `refs`: every patient and order by the name
the instructor gave it, with the identifiers the lab assigned (patient ID, accession number).
"""

from __future__ import annotations

import datetime
import random
import time
from typing import Any

from faker import Faker

from simlab.client.admin import AdminApiError, AdminClient, path_part
from simlab.runtime.lab import Lab, LabError
from simlab.scenarios.schema import OrderSeed, Scenario
from simlab.workflow.day import PROFILE_PROCEDURES

SETTLE_SECONDS = 90.0
"""How long a performed procedure may take to be sent and committed before seeding fails."""

Refs = dict[str, dict[str, Any]]


def seed_lab(lab: Lab, scenario: Scenario) -> Refs:
    """Register the patients, place the orders, perform the prior procedures; return refs."""
    faker = Faker(scenario.locale)
    faker.seed_instance(scenario.seed)
    rng = random.Random(scenario.seed)
    ris = lab.client("ris", timeout=30.0)
    refs: Refs = {}
    for patient in scenario.patients:
        sex = patient.sex or rng.choice(["F", "M"])
        first = faker.first_name_female() if sex == "F" else faker.first_name_male()
        name = patient.name or f"{faker.last_name().upper()}^{first.upper()}"
        birth = patient.birth_date or faker.date_of_birth(minimum_age=18, maximum_age=90).strftime(
            "%Y%m%d"
        )
        row = ris.post("/patients", {"name": name, "birth_date": birth, "sex": sex})
        refs[patient.ref] = {
            "kind": "patient",
            "patient_id": row["patient_id"],
            "name": row.get("name", name),
            "birth_date": birth,
            "sex": sex,
        }
    for index, order in enumerate(scenario.orders):
        if not order.later:
            refs[order.ref] = place_order(lab, order, refs, *order_rng(scenario, index))
    performed = [o for o in scenario.orders if o.performed]
    for order in performed:
        perform(lab, refs[order.ref])
    for order in performed:
        wait_settled(lab, refs[order.ref])
    return refs


def order_rng(scenario: Scenario, index: int) -> tuple[random.Random, Faker]:
    """The seeded chance of one order, whether placed at seeding or later in the scenario."""
    faker = Faker(scenario.locale)
    faker.seed_instance(scenario.seed * 7919 + index)
    return random.Random(scenario.seed * 104_729 + index), faker


def place_order(
    lab: Lab,
    order: OrderSeed,
    refs: Refs,
    rng: random.Random,
    faker: Faker,
) -> dict[str, Any]:
    """Place one order at the RIS for today. The RIS picks the Scheduled Station AE from its
    own modality map, as a real RIS does; the scenario names a station only when that map
    would pick another one."""
    ris = lab.client("ris", timeout=30.0)
    day = datetime.date.today().strftime("%Y%m%d")
    station = lab.manifest.node(order.station)
    profile = lab.client(order.station).get("/config")["profile"]
    procedures = dict(PROFILE_PROCEDURES.get(profile, [("GEN", "General examination")]))
    code = order.procedure or sorted(procedures)[rng.randrange(len(procedures))]
    meaning = procedures.get(code, code)
    minutes = 8 * 60 + rng.randrange(0, 8 * 60, 5)
    patient = refs[order.patient]
    mapped = ris.get("/config").get("modality_stations", {}).get(profile)
    body: dict[str, Any] = {} if mapped == station.ae_title else {"station_ae": station.ae_title}
    row = ris.post(
        "/orders",
        {
            **body,
            "patient_id": patient["patient_id"],
            "modality": profile,
            "start_date": day,
            "start_time": f"{minutes // 60:02d}{minutes % 60:02d}00",
            "procedure_code": code,
            "procedure_meaning": meaning,
            "referring_physician": faker.name().replace(" ", "^", 1),
            "performing_physician": "RADIOLOGIST^ON^DUTY",
        },
    )
    return {
        "kind": "order",
        "accession": row["accession"],
        "patient_id": patient["patient_id"],
        "patient_name": patient["name"],
        "station": order.station,
        "station_ae": row.get("station_ae") or station.ae_title,
        "modality": profile,
        "procedure_code": code,
        "procedure_id": None,
        "study_uid": None,
    }


def perform(lab: Lab, order: dict[str, Any]) -> dict[str, Any]:
    """The technologist's day: worklist, start (MPPS), acquire (C-STORE), complete (commit)."""
    modality = lab.client(order["station"], timeout=60.0)
    _query_until_listed(modality, order["accession"])
    proc = modality.post("/procedures/start", {"accession_number": order["accession"]})
    return _finish(modality, order, proc)


def _query_until_listed(modality: AdminClient, accession: str, attempts: int = 3) -> None:
    """Query the worklist until the order shows, as a technologist presses "refresh" again
    after a slow answer (a busy RIS can miss the modality's ARTIM timer once). When it never
    shows, the start that follows fails with the modality's own message."""
    for attempt in range(attempts):
        try:
            answer = modality.post("/worklist/query", {})
        except AdminApiError:
            answer = {}
        if any(i.get("accession_number") == accession for i in answer.get("items", [])):
            return
        if attempt + 1 < attempts:
            time.sleep(1.0)


def walk_in(lab: Lab, order: dict[str, Any]) -> dict[str, Any]:
    """The patient keyed by hand at the console (no worklist): what operators do when MWL fails."""
    modality = lab.client(order["station"], timeout=60.0)
    proc = modality.post(
        "/patients/unscheduled",
        {
            "patient_id": order["patient_id"],
            "patient_name": order["patient_name"],
            "accession_number": order["accession"],
        },
    )
    modality.post("/procedures/start", {"procedure_id": proc["id"]})
    return _finish(modality, order, proc)


def _finish(modality: AdminClient, order: dict[str, Any], proc: dict[str, Any]) -> dict[str, Any]:
    order["procedure_id"] = proc["id"]
    order["study_uid"] = proc.get("study_instance_uid")
    modality.post(f"/procedures/{path_part(proc['id'])}/acquire", {})
    modality.post(f"/procedures/{path_part(proc['id'])}/complete", {})
    return order


def wait_settled(lab: Lab, order: dict[str, Any], timeout: float = SETTLE_SECONDS) -> None:
    """Wait (bounded) until the procedure's images are all sent and its commitment answered."""
    modality = lab.client(order["station"])
    deadline = time.monotonic() + timeout
    while True:
        proc = modality.get(f"/procedures/{path_part(order['procedure_id'])}")
        total = sum(len(s["instances"]) for s in proc.get("series", []))
        queue = proc.get("queue", {})
        commitments = proc.get("commitments") or []
        if (
            queue.get("sent", 0) >= total
            and commitments
            and commitments[-1]["state"]
            not in (
                "pending",
                "requested",
                "waiting",
            )
        ):
            return
        if time.monotonic() > deadline:
            raise LabError(
                f"seeding: {order['accession']} at {order['station']} did not settle "
                f"({proc.get('send_summary')})"
            )
        time.sleep(0.2)
