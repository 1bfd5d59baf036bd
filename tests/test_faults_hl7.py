"""HL7 faults on the RIS→PACS interface: inject → the real symptom at the RIS queue and the
PACS (ACK codes, message log, demographics) → revert → the queue drains and RIS and PACS agree."""

from __future__ import annotations

import datetime
import random
from typing import Any

import pytest

from simlab.client.admin import AdminClient
from simlab.faults.base import FaultContext
from simlab.faults.families.hl7 import patch_destination, restore_destination
from simlab.faults.manager import FaultManager
from simlab.runtime.lab import Lab
from tests.lab_fixtures import fault_lab, faults  # noqa: F401 (fixtures)
from tests.polling import poll


def register(lab: Lab, patient_id: str, name: str = "HL7^FAULT") -> None:
    lab.client("ris").post(
        "/patients", {"patient_id": patient_id, "name": name, "birth_date": "19800101", "sex": "F"}
    )


def pacs_patient(lab: Lab, patient_id: str) -> dict[str, Any] | None:
    rows = lab.client("pacs").get("/hl7/patients", limit=10_000)
    return next((r for r in rows if r["patient_id"] == patient_id), None)


def wait_pacs_patient(lab: Lab, patient_id: str, **expected: str) -> dict[str, Any]:
    """Poll the PACS's HL7 registry until the patient is there with the expected fields."""

    def ok(row: dict[str, Any] | None) -> bool:
        return row is not None and all(row.get(k) == v for k, v in expected.items())

    row = poll(lambda: pacs_patient(lab, patient_id), ok, 30, f"PACS patient {patient_id}")
    assert row is not None
    return row


def entries(ris: AdminClient, state: str | None = None) -> list[dict[str, Any]]:
    return ris.get("/queue", state=state) if state else ris.get("/queue")


def entry_for(ris: AdminClient, summary: str, kind: str = "ADT^A04") -> dict[str, Any] | None:
    """The queue entry of one message, by its summary ("patient X") and type."""
    return next((e for e in entries(ris) if e["summary"] == summary and e["type"] == kind), None)


def wait_entry(
    ris: AdminClient, summary: str, done: Any, what: str, kind: str = "ADT^A04"
) -> dict[str, Any]:
    return poll(
        lambda: entry_for(ris, summary, kind), lambda e: e is not None and done(e), 30, what
    )


def assert_drained(lab: Lab) -> None:
    ris = lab.client("ris")
    poll(
        lambda: [e for e in entries(ris) if e["state"] in ("pending", "dead")],
        lambda held: not held,
        30,
        "the RIS queue to drain",
    )


def pacs_message(lab: Lab, control_id: str) -> dict[str, Any] | None:
    rows = lab.client("pacs").get("/hl7/messages", limit=200)
    return next((r for r in rows if r["control_id"] == control_id), None)


@pytest.mark.timeout(60)
def test_adt_update_not_applied_drifts_demographics_until_resent(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    ris = fault_lab.client("ris")
    register(fault_lab, "HL7A08", "BEFORE^ANNA")
    wait_pacs_patient(fault_lab, "HL7A08", name="BEFORE^ANNA")

    faults.inject("a08", "adt_update_not_applied", {})
    ris.patch("/patients/HL7A08", {"name": "AFTER^ANNA"})
    held = wait_entry(ris, "patient HL7A08", bool, "the A08 entry", kind="ADT^A08")
    assert held["state"] == "filtered"
    assert ris.get("/log", contains="route filter")["lines"]
    assert pacs_message(fault_lab, held["control_id"]) is None
    assert ris.get("/patients/HL7A08")["name"] == "AFTER^ANNA"
    assert pacs_patient(fault_lab, "HL7A08")["name"] == "BEFORE^ANNA"  # the drift

    faults.revert("a08")
    ris.post(f"/queue/{held['id']}/retry", {})  # the administrator's fix: resend the update
    wait_pacs_patient(fault_lab, "HL7A08", name="AFTER^ANNA")
    assert pacs_message(fault_lab, held["control_id"])["ack_code"] == "AA"


@pytest.mark.timeout(60)
def test_merge_not_sent_leaves_the_prior_patient_active_at_the_pacs(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    ris = fault_lab.client("ris")
    register(fault_lab, "HL7OLD", "MERGE^BEN")
    register(fault_lab, "HL7NEW", "MERGE^BEN")
    wait_pacs_patient(fault_lab, "HL7NEW")
    wait_pacs_patient(fault_lab, "HL7OLD")

    faults.inject("a40", "merge_not_sent", {})
    ris.post("/patients/HL7NEW/merge", {"prior_id": "HL7OLD"})
    held = wait_entry(ris, "patient HL7OLD into HL7NEW", bool, "the A40 entry", kind="ADT^A40")
    assert held["state"] == "filtered"
    assert pacs_patient(fault_lab, "HL7OLD")["status"] == "active"  # split record at the PACS

    faults.revert("a40")
    ris.post(f"/queue/{held['id']}/retry", {})
    row = wait_pacs_patient(fault_lab, "HL7OLD", status="merged")
    assert row["merged_into"] == "HL7NEW"


@pytest.mark.timeout(90)
def test_orm_wrong_accession_leaves_the_study_without_an_order(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    ris, pacs, cr = (fault_lab.client(n) for n in ("ris", "pacs", "cr-1"))
    today = datetime.date.today().strftime("%Y%m%d")
    register(fault_lab, "HL7ORM", "ORDER^CARL")

    faults.inject("orm", "orm_wrong_accession", {"prefix": "RAD"})
    order = ris.post("/orders", {"patient_id": "HL7ORM", "modality": "CR", "start_date": today})
    accession = order["accession"]
    pacs_orders = poll(
        lambda: {o["accession"] for o in pacs.get("/orders", limit=10_000)},
        lambda accs: f"RAD{accession}" in accs,
        30,
        "the transformed order at the PACS",
    )
    assert accession not in pacs_orders

    # The modality takes the right accession from the worklist; its study matches no order.
    cr.post("/worklist/query", {})
    proc = cr.post("/procedures/start", {"accession_number": accession})
    cr.post(f"/procedures/{proc['id']}/acquire")
    studies = poll(
        lambda: pacs.get("/studies", accession=accession),
        bool,
        30,
        "the CR study at the PACS",
    )
    assert studies[0]["study_uid"] == order["study_uid"]
    assert accession not in {o["accession"] for o in pacs.get("/orders", limit=10_000)}
    cr.post(f"/procedures/{proc['id']}/complete")
    assert_drained(fault_lab)  # the SC status update went out under the same transform

    faults.revert("orm")
    fixed = ris.post("/orders", {"patient_id": "HL7ORM", "modality": "CR", "start_date": today})
    poll(
        lambda: {o["accession"] for o in pacs.get("/orders", limit=10_000)},
        lambda accs: fixed["accession"] in accs,
        30,
        "the order under its own accession at the PACS",
    )
    ris.post(f"/orders/{fixed['accession']}/cancel", {})
    assert_drained(fault_lab)


@pytest.mark.timeout(60)
def test_wrong_receiving_application_gets_ar_103_and_blocks_the_queue(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    ris = fault_lab.client("ris")
    faults.inject("msh5", "wrong_receiving_application", {"application": "PACS_ARCHIVE"})
    register(fault_lab, "HL7AR1")
    dead = wait_entry(ris, "patient HL7AR1", lambda e: e["state"] == "dead", "the AR")
    assert (dead["ack_code"], dead["ack_error_code"]) == ("AR", 103)
    assert "MSH-5 'PACS_ARCHIVE'" in dead["last_error"]
    logged = pacs_message(fault_lab, dead["control_id"])
    assert logged is not None
    assert (logged["ack_code"], logged["error_code"]) == ("AR", 103)
    register(fault_lab, "HL7AR2")
    behind = entry_for(ris, "patient HL7AR2")
    assert behind is not None and behind["state"] == "pending"
    poll(
        lambda: ris.get("/log", contains="blocked by dead message")["lines"],
        bool,
        15,
        "the blocked-queue log line",
    )
    assert pacs_patient(fault_lab, "HL7AR2") is None

    faults.revert("msh5")
    wait_pacs_patient(fault_lab, "HL7AR1")
    wait_pacs_patient(fault_lab, "HL7AR2")
    assert_drained(fault_lab)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("framing", "ris_error", "pacs_log"),
    [
        ("no_end_block", "timeout waiting for ACK", "no end block 0x1C 0x0D"),
        ("no_start_block", "before the ACK", "before the start block 0x0B"),
        ("lf_end", "before the ACK", "instead of 0x0D"),
    ],
)
def test_broken_framing_gets_no_ack_and_the_ris_retries(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
    framing: str,
    ris_error: str,
    pacs_log: str,
) -> None:
    ris, pacs = fault_lab.client("ris"), fault_lab.client("pacs")
    patient_id = f"HL7FRM{framing.upper()}"
    ctx = FaultContext(lab=fault_lab, rng=random.Random(0))
    quick = patch_destination(ctx, "ris", "pacs", {"ack_timeout": 1.5})  # keep the test short
    try:
        faults.inject("framing", "broken_mllp_framing", {"framing": framing})
        register(fault_lab, patient_id)
        held = wait_entry(
            ris, f"patient {patient_id}", lambda e: ris_error in e["last_error"], ris_error
        )
        assert held["state"] == "pending" and held["attempts"] >= 1
        poll(
            lambda: pacs.get("/log", contains=pacs_log)["lines"],
            bool,
            15,
            "the PACS's framing error",
        )
        assert pacs_message(fault_lab, held["control_id"]) is None
        faults.revert("framing")
        wait_pacs_patient(fault_lab, patient_id)
    finally:
        restore_destination(ctx, "ris", "pacs", quick)
    assert_drained(fault_lab)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("defect", "ack", "error", "location"),
    [
        ("missing_patient_id", "AE", 101, "PID"),
        ("unsupported_event", "AR", 201, "MSH"),
        ("bad_version", "AR", 203, "MSH"),
    ],
)
def test_poison_message_blocks_the_queue_until_deleted(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
    defect: str,
    ack: str,
    error: int,
    location: str,
) -> None:
    ris = fault_lab.client("ris")
    patient_id = f"HL7PSN{error}"
    record = faults.inject("poison", "poison_message", {"defect": defect})
    poison_id = record.state["entry"]
    dead = poll(
        lambda: ris.get(f"/queue/{poison_id}"),
        lambda e: e["state"] == "dead",
        30,
        "the poison message to be refused",
    )
    assert (dead["ack_code"], dead["ack_error_code"]) == (ack, error)
    logged = pacs_message(fault_lab, dead["control_id"])
    assert logged is not None and (logged["ack_code"], logged["error_code"]) == (ack, error)
    assert logged["error_location"].startswith(location)
    register(fault_lab, patient_id)
    poll(
        lambda: ris.get("/log", contains=f"blocked by dead message #{poison_id}")["lines"],
        bool,
        15,
        "head-of-line blocking",
    )
    assert entry_for(ris, f"patient {patient_id}")["state"] == "pending"
    assert pacs_patient(fault_lab, patient_id) is None

    faults.revert("poison")
    assert ris.get(f"/queue/{poison_id}")["state"] == "deleted"
    wait_pacs_patient(fault_lab, patient_id)
    assert_drained(fault_lab)


@pytest.mark.timeout(60)
def test_wrong_destination_port_is_refused_and_the_queue_piles_up(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    ris = fault_lab.client("ris")
    record = faults.inject("port", "hl7_destination_wrong_port", {})
    register(fault_lab, "HL7PRT1")
    register(fault_lab, "HL7PRT2")
    held = wait_entry(
        ris, "patient HL7PRT1", lambda e: "connection refused" in e["last_error"], "refusal"
    )
    assert f":{record.state['port']}" in held["last_error"]
    assert held["state"] == "pending"
    assert entry_for(ris, "patient HL7PRT2")["state"] == "pending"
    assert ris.get("/health")["queue"]["pending"] >= 2

    faults.revert("port")
    wait_pacs_patient(fault_lab, "HL7PRT1")
    wait_pacs_patient(fault_lab, "HL7PRT2")
    assert_drained(fault_lab)
