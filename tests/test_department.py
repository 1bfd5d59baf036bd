"""The default department on the local runtime: one order through the whole Scheduled Workflow.

RIS registers the patient and places the order (ADT^A04, ORM^O01 to the PACS over MLLP); the CT
queries its worklist (C-FIND MWL), starts the procedure (MPPS N-CREATE), acquires and sends the
images (C-STORE), completes (MPPS N-SET, storage commitment); the viewer opens the study by
accession (C-FIND + C-MOVE). Every step is a real exchange between real node processes.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any, TypeVar

import pytest

from simlab.runtime.lab import Lab
from simlab.workflow.day import CHECKS, simulate_day
from tests.lab_fixtures import running_lab
from tests.polling import poll

T = TypeVar("T")

DEPARTMENT = ["pacs", "ris", "viewer", "ct-1", "mr-1", "cr-1", "us-1", "net"]


@pytest.fixture(scope="module")
def department(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "dept") as lab:
        yield lab


def test_every_node_of_the_department_is_up(department: Lab) -> None:
    statuses = {st.entry.node_id: st for st in department.status()}
    assert list(statuses) == DEPARTMENT
    assert all(st.state == "up" for st in statuses.values()), statuses
    assert statuses["ct-1"].entry.ae_title == "CT_1"
    assert statuses["ris"].entry.hl7_port and statuses["pacs"].entry.hl7_port


@pytest.mark.timeout(180)
def test_one_order_through_scheduled_workflow(department: Lab) -> None:
    ris, ct, pacs, viewer = (
        department.client(node, timeout=60) for node in ("ris", "ct-1", "pacs", "viewer")
    )
    patient = ris.post("/patients", {"name": "MÜLLER^ANNA", "birth_date": "19700101", "sex": "F"})
    patient_id = patient["patient_id"]
    today = datetime.date.today().strftime("%Y%m%d")
    order = ris.post(
        "/orders",
        {
            "patient_id": patient_id,
            "modality": "CT",
            "start_date": today,
            "start_time": "090000",
            "procedure_code": "CTHEAD",
            "procedure_meaning": "CT head without contrast",
            "referring_physician": "LEE^DR",
            "performing_physician": "RAD^ONE",
        },
    )
    accession = order["accession"]

    # RAD-4: the order reaches the PACS over HL7
    poll(
        lambda: {o["accession"] for o in pacs.get("/orders")},
        lambda accs: accession in accs,
        30,
        "the ORM to reach the PACS",
    )
    # RAD-5: the CT's worklist shows it
    items = ct.post("/worklist/query", {})["items"]
    assert [i["accession_number"] for i in items] == [accession]
    # RAD-6, RAD-8, RAD-7, RAD-10
    proc_id = ct.post("/procedures/start", {"accession_number": accession})["id"]
    ct.post(f"/procedures/{proc_id}/acquire", {})
    ct.post(f"/procedures/{proc_id}/complete", {})
    procedure = poll(
        lambda: ct.get(f"/procedures/{proc_id}"),
        lambda p: p["series"] and p["queue"].get("sent") == _instances(p),
        60,
        "the CT to send every image",
    )
    study = pacs.get("/studies", accession=accession)[0]
    assert study["patient_id"] == patient_id
    assert study["patient_name"] == "MÜLLER^ANNA"
    assert study["mixed_patients"] is False
    assert study["instance_count"] == _instances(procedure)
    assert study["study_uid"] == items[0]["study_instance_uid"]
    poll(
        lambda: ris.get(f"/orders/{accession}")["status"],
        lambda status: status == "COMPLETED",
        30,
        "MPPS COMPLETED to complete the order",
    )
    commitment = poll(
        lambda: ct.get(f"/procedures/{proc_id}")["commitments"],
        lambda rows: bool(rows) and rows[-1]["state"] not in ("pending", "requested", "waiting"),
        30,
        "the storage commitment report",
    )[-1]
    assert commitment["state"] == "committed", commitment
    assert commitment["event_type"] == 1
    # RAD-14/16: the radiologist opens it
    opened = viewer.post("/studies/open", {"accession": accession})
    assert opened["ok"] is True
    assert opened["instances"] == study["instance_count"]


def _instances(procedure: dict[str, Any]) -> int:
    return sum(len(series["instances"]) for series in procedure["series"])


@pytest.mark.timeout(240)
def test_simulate_day_reconciles_every_order_and_is_decided_by_its_seed(department: Lab) -> None:
    """`simlab lab simulate-day` on the running department: every line green; the same seed
    plays the same day (patients and modalities), another seed another one."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "simlab",
            "lab",
            "simulate-day",
            "--home",
            str(department.paths.home),
            "--lab",
            "dept",
            "--studies",
            "6",
            "--seed",
            "3",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert len(report["orders"]) == 6
    for order in report["orders"]:
        assert order["checks"] == dict.fromkeys(CHECKS, True), order

    clients = {
        n.node_id: department.client(n.node_id, timeout=120) for n in department.manifest.nodes
    }
    stations = {
        n.node_id: (clients[n.node_id].health()["profile"], n.ae_title or "")
        for n in department.manifest.nodes
        if n.role == "modality"
    }
    again = simulate_day(clients, stations, studies=6, seed=3)
    other = simulate_day(clients, stations, studies=6, seed=4)
    plan = [(o["patient_name"], o["modality"]) for o in report["orders"]]
    assert [(o.patient_name, o.modality) for o in again.orders] == plan
    assert [(o.patient_name, o.modality) for o in other.orders] != plan
    assert again.ok and other.ok
