"""A simulated working day of IHE Scheduled Workflow, and its reconciliation report.

Patients are registered and orders placed at the RIS (ADT^A04, ORM^O01 to the PACS over MLLP);
each modality queries its worklist (C-FIND MWL), performs its procedures (MPPS N-CREATE, images
by C-STORE, MPPS N-SET COMPLETED, storage commitment); the reading workstation opens every
study (C-FIND + C-MOVE). The report then asks of every order what a PACS administrator asks:
is the study in the PACS, complete, with the RIS's demographics, MPPS completed, committed, and
retrievable by the viewer? Everything is decided by the seed: same seed, same day.
"""

from __future__ import annotations

import contextlib
import datetime
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from faker import Faker

from simlab.client.admin import AdminApiError, AdminClient

PROFILE_PROCEDURES = {
    "CT": [("CTHEAD", "CT head without contrast"), ("CTCHEST", "CT chest with contrast")],
    "MR": [("MRBRAIN", "MR brain"), ("MRKNEE", "MR knee left")],
    "CR": [("CRCHEST", "Chest X-ray PA"), ("CRHAND", "Hand X-ray right")],
    "DX": [("DXCHEST", "Chest X-ray PA"), ("DXHAND", "Hand X-ray right")],
    "US": [("USABD", "Ultrasound abdomen"), ("USRUQ", "Ultrasound right upper quadrant")],
}
LOCALES = ["en_US", "de_DE", "fr_FR"]
"""Faker locales of the department's patients (Latin-1 names: Müller, Lefèvre)."""
SETTLE_SECONDS = 120.0
"""How long the day waits for queues (HL7, C-STORE, commitment) to drain before reporting."""

Progress = Callable[[str, int, int], None]
"""Called with (stage, done, total) while the day runs."""


@dataclass
class OrderCheck:
    """One line of the reconciliation report."""

    accession: str
    patient_id: str
    patient_name: str
    modality: str
    station: str
    checks: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(self.checks.values())


@dataclass
class DayReport:
    """The reconciliation of a simulated day."""

    seed: int
    orders: list[OrderCheck]
    seconds: float

    @property
    def ok(self) -> bool:
        return bool(self.orders) and all(o.ok for o in self.orders)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "ok": self.ok,
            "seconds": round(self.seconds, 2),
            "orders": [
                {
                    "accession": o.accession,
                    "patient_id": o.patient_id,
                    "patient_name": o.patient_name,
                    "modality": o.modality,
                    "station": o.station,
                    "ok": o.ok,
                    "checks": o.checks,
                    "notes": o.notes,
                }
                for o in self.orders
            ],
        }


CHECKS = ("in_pacs", "instances", "demographics", "mpps_completed", "committed", "retrieved")


@dataclass
class _Order:
    accession: str
    patient: dict[str, Any]
    modality: str
    station_node: str
    station_ae: str
    procedure_id: str = ""
    sent: int = 0


def simulate_day(
    clients: dict[str, AdminClient],
    stations: dict[str, tuple[str, str]],
    *,
    studies: int,
    seed: int,
    progress: Progress | None = None,
    day: datetime.date | None = None,
) -> DayReport:
    """Play a day with `studies` orders and return its reconciliation.

    Args:
        clients: admin clients by node id; needs 'ris', 'pacs', 'viewer' and the modalities.
        stations: modality node id -> (profile, AE title), e.g. {'ct-1': ('CT', 'CT_1')}.
        studies: how many orders the day has.
        seed: decides patients, orders and the modality of each order.
        progress: optional callback for progress output.
        day: the scheduled date (today by default: the modalities ask for today's worklist).
    """
    started = time.monotonic()
    say = progress or (lambda _stage, _done, _total: None)
    rng = random.Random(seed)
    faker = Faker(LOCALES)
    faker.seed_instance(seed)
    day = day or datetime.date.today()
    ris = clients["ris"]

    orders: list[_Order] = []
    patients: list[dict[str, Any]] = []
    node_ids = sorted(stations)
    for index in range(studies):
        if patients and rng.random() < 0.15:
            patient = rng.choice(patients)  # a patient with a second examination today
        else:
            patient = _register(ris, faker, rng)
            patients.append(patient)
        node_id = node_ids[rng.randrange(len(node_ids))]
        profile, ae_title = stations[node_id]
        code, meaning = rng.choice(PROFILE_PROCEDURES[profile])
        minutes = 7 * 60 + index * (10 * 60 // max(studies, 1))
        order = ris.post(
            "/orders",
            {
                "patient_id": patient["patient_id"],
                "modality": profile,
                "station_ae": ae_title,
                "start_date": day.strftime("%Y%m%d"),
                "start_time": f"{minutes // 60:02d}{minutes % 60:02d}00",
                "procedure_code": code,
                "procedure_meaning": meaning,
                "referring_physician": faker.name().replace(" ", "^", 1),
                "performing_physician": "RADIOLOGIST^ON^DUTY",
            },
        )
        orders.append(_Order(order["accession"], patient, profile, node_id, ae_title))
        say("orders placed", index + 1, studies)

    done = 0
    for node_id in node_ids:
        modality = clients[node_id]
        mine = [o for o in orders if o.station_node == node_id]
        if not mine:
            continue
        modality.post("/worklist/query", {})
        for order in mine:
            proc = modality.post("/procedures/start", {"accession_number": order.accession})
            order.procedure_id = proc["id"]
            modality.post(f"/procedures/{order.procedure_id}/acquire", {})
            modality.post(f"/procedures/{order.procedure_id}/complete", {})
            done += 1
            say("procedures performed", done, studies)

    _settle(clients, orders, say)
    viewer = clients["viewer"]
    for index, order in enumerate(orders):
        with contextlib.suppress(AdminApiError):  # a failed open is what the report shows
            viewer.post("/studies/open", {"accession": order.accession})
        say("studies read", index + 1, studies)

    report = [_reconcile(clients, order) for order in orders]
    return DayReport(seed=seed, orders=report, seconds=time.monotonic() - started)


def _register(ris: AdminClient, faker: Faker, rng: random.Random) -> dict[str, Any]:
    sex = rng.choice(["F", "M"])
    first = faker.first_name_female() if sex == "F" else faker.first_name_male()
    name = f"{faker.last_name().upper()}^{first.upper()}"
    birth = faker.date_of_birth(minimum_age=1, maximum_age=95).strftime("%Y%m%d")
    return ris.post("/patients", {"name": name, "birth_date": birth, "sex": sex})


def _settle(clients: dict[str, AdminClient], orders: list[_Order], say: Progress) -> None:
    """Wait (bounded) until every procedure's images are sent and its commitment answered."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        pending = 0
        for order in orders:
            proc = clients[order.station_node].get(f"/procedures/{order.procedure_id}")
            total = sum(len(s["instances"]) for s in proc.get("series", []))
            queue = proc.get("queue", {})
            commitments = proc.get("commitments") or []
            settled = queue.get("sent", 0) + queue.get("failed", 0) >= total and (
                commitments and commitments[-1]["state"] not in ("pending", "requested", "waiting")
            )
            pending += 0 if settled else 1
        say("images sent and committed", len(orders) - pending, len(orders))
        if not pending:
            return
        time.sleep(0.5)


def _reconcile(clients: dict[str, AdminClient], order: _Order) -> OrderCheck:
    """What an administrator checks for one order, from the nodes' own records."""
    check = OrderCheck(
        order.accession,
        order.patient["patient_id"],
        order.patient["name"],
        order.modality,
        order.station_ae,
    )
    proc = clients[order.station_node].get(f"/procedures/{order.procedure_id}")
    expected = sum(len(s["instances"]) for s in proc.get("series", []))
    rows = clients["pacs"].get("/studies", accession=order.accession)
    check.checks["in_pacs"] = len(rows) == 1
    study = rows[0] if rows else {}
    check.checks["instances"] = bool(study) and study.get("instance_count") == expected
    if study and study.get("instance_count") != expected:
        check.notes.append(f"PACS holds {study.get('instance_count')} of {expected} images")
    ris_patient = clients["ris"].get(f"/patients/{order.patient['patient_id']}")
    ris_patient = ris_patient.get("patient", ris_patient)
    same = bool(study) and all(
        (study.get(pacs_key) or "") == (ris_patient.get(ris_key) or "")
        for pacs_key, ris_key in (
            ("patient_id", "patient_id"),
            ("patient_name", "name"),
            ("birth_date", "birth_date"),
            ("sex", "sex"),
        )
    )
    check.checks["demographics"] = same
    if study and not same:
        check.notes.append(f"PACS {study.get('patient_name')!r} / RIS {ris_patient.get('name')!r}")
    ris_order = clients["ris"].get(f"/orders/{order.accession}")
    check.checks["mpps_completed"] = ris_order.get("status") == "COMPLETED"
    commitments = proc.get("commitments") or []
    check.checks["committed"] = bool(commitments) and commitments[-1]["state"] == "committed"
    opens = clients["viewer"].get("/opens", accession=order.accession)
    check.checks["retrieved"] = bool(opens) and opens[0].get("ok") is True
    return check
