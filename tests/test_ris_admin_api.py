"""The RIS admin API: patient and order actions queue the right HL7, numbering is deterministic,
config changes are validated and applied live, and a queue edit must be HL7."""

from __future__ import annotations

from pathlib import Path

import pytest

from simlab.client.admin import AdminApiError
from simlab.common.hl7_messages import read_header
from simlab.common.uids import RIS_UID_ROOT
from tests.conftest import requires_dcmtk
from tests.dicom_files import dcmtk
from tests.ris_fixtures import RIS_AE, order, register, start_ris


def script(ris) -> list[dict]:
    """The same sequence of requests, for the determinism check."""
    register(ris, "", "Alpha^Anna")
    register(ris, "", "Beta^Bert")
    first = order(ris, "RIS000001")
    second = order(ris, "RIS000002", modality="MR")
    return [first, second]


def test_generated_numbers_are_deterministic(tmp_path: Path):
    results = []
    for run in ("a", "b"):
        ris = start_ris(tmp_path / run, pacs_hl7_port=9)  # nothing listens: messages stay queued
        try:
            orders = script(ris)
            results.append(
                (
                    [
                        (o["accession"], o["requested_procedure_id"], o["sps_id"], o["study_uid"])
                        for o in orders
                    ],
                    [r["control_id"] for r in ris.admin.get("/queue")],
                )
            )
        finally:
            ris.stop()
    assert results[0] == results[1]
    numbers, controls = results[0]
    assert numbers[0] == ("ACC000001", "RP000001", "SPS000001", f"{RIS_UID_ROOT}.1.1")
    assert numbers[1][0] == "ACC000002" and numbers[1][3] == f"{RIS_UID_ROOT}.1.2"
    assert len(set(controls)) == len(controls) == 4


@requires_dcmtk
def test_patient_and_order_actions_queue_hl7_and_config_is_validated(tmp_path: Path):
    ris = start_ris(tmp_path / "ris", pacs_hl7_port=9)
    try:
        ris.admin.patch("/config", {"destinations": [{"port": 9, "enabled": False}]})
        register(ris, "A1", "Old^Name")
        register(ris, "A2", "Dup^Licate")
        ris.admin.patch("/patients/A1", {"name": "New^Name", "sex": "M"})
        ris.admin.post("/patients/A1/merge", {"prior_id": "A2"})
        acc = order(ris, "A1")["accession"]
        ris.admin.delete(f"/orders/{acc}")
        assert ris.admin.get(f"/orders/{acc}")["status"] == "CANCELLED"
        kinds = [r["type"] for r in ris.admin.get("/queue")]
        assert kinds == ["ADT^A04", "ADT^A04", "ADT^A08", "ADT^A40", "ORM^O01 NW", "ORM^O01 CA"]
        a40 = ris.admin.get("/queue")[3]["message"]
        assert "\rMRG|A2^^^^MR" in a40 and "PID|1||A1^^^^MR||New^Name" in a40
        assert ris.admin.get("/patients/A2")["status"] == "merged"
        assert ris.admin.get("/stats")["queue"]["pending"] == 6

        with pytest.raises(AdminApiError) as err:
            order(ris, "NOBODY")
        assert err.value.status == 404
        with pytest.raises(AdminApiError) as err:
            order(ris, "A1", start_date="tomorrow")
        assert err.value.status == 422
        with pytest.raises(AdminApiError) as err:
            ris.admin.patch("/config", {"queue": {"max_attempts": 0}})
        assert err.value.status == 422
        with pytest.raises(AdminApiError) as err:
            ris.admin.put("/queue/1", {"message": "not hl7 at all"})
        assert err.value.status == 422
        second = ris.admin.get("/queue/2")
        with pytest.raises(AdminApiError) as err:  # a control ID of another message
            ris.admin.put("/queue/1", {"message": second["message"]})
        assert err.value.status == 409
        edited = ris.admin.get("/queue/1")["message"].replace("Old^Name", "Edited^Name")
        row = ris.admin.put("/queue/1", {"message": edited})
        assert row["state"] == "pending" and "Edited^Name" in row["message"]
        assert read_header(row["message"]).control_id == row["control_id"]

        # AE table changes apply live: a new modality can query at once.
        result = dcmtk("echoscu", "-aet", "XR_NEW", "-aec", RIS_AE, "127.0.0.1", ris.dicom_port)
        assert result.returncode != 0
        ris.admin.put("/ae-table/XR_NEW", {"host": "127.0.0.1", "port": 104})
        result = dcmtk("echoscu", "-aet", "XR_NEW", "-aec", RIS_AE, "127.0.0.1", ris.dicom_port)
        assert result.returncode == 0, result.stdout
        assert ris.config.ae_entry("XR_NEW") is not None  # persisted
        health = ris.admin.health()
        assert health["services"]["dicom"] and health["services"]["hl7"]
    finally:
        ris.stop()
