"""Worklist / MPPS faults: inject → the modality's real C-FIND answers 0 items while the RIS has
them (or the RIS never hears MPPS) → revert → the worklist shows the items again."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from simlab.faults.manager import FaultManager
from simlab.runtime.lab import Lab
from simlab.runtime.topology import ADMIN_WORKSTATION_AE
from tests.conftest import requires_dcmtk
from tests.dicom_files import dcmtk
from tests.lab_fixtures import fault_lab, faults  # noqa: F401 (fixtures)

TODAY = datetime.date.today().strftime("%Y%m%d")
SPS = "ScheduledProcedureStepSequence[0]"


def place(lab: Lab, patient_id: str, modality: str = "CT") -> dict[str, Any]:
    """Register a patient at the RIS and schedule one procedure today (default station)."""
    ris = lab.client("ris")
    ris.post("/patients", {"patient_id": patient_id, "name": "MWL^FAULT", "sex": "M"})
    return ris.post(
        "/orders", {"patient_id": patient_id, "modality": modality, "start_date": TODAY}
    )


def worklist(lab: Lab, node: str = "ct-1") -> dict[str, Any]:
    """The modality queries its worklist with its configured keys (a real C-FIND)."""
    return lab.client(node).post("/worklist/query", {})


def accessions(result: dict[str, Any]) -> set[str]:
    return {i["accession_number"] for i in result["items"]}


def findscu_accessions(lab: Lab, out: Path, station: str) -> list[str]:
    """findscu -W from the administrator's workstation, for `station` today."""
    ris = next(n for n in lab.manifest.nodes if n.node_id == "ris")
    result = dcmtk(
        "findscu", "-v", "-W", "-X", "-od", out, "-aet", ADMIN_WORKSTATION_AE, "-aec", ris.ae_title,
        "-k", f"{SPS}.ScheduledStationAETitle={station}",
        "-k", f"{SPS}.ScheduledProcedureStepStartDate={TODAY}",
        "-k", "AccessionNumber", "127.0.0.1", ris.dicom_port, timeout=30,
    )  # fmt: skip
    assert "Received Final Find Response (Success)" in result.stdout, result.stdout
    return sorted(str(dcmread(p).AccessionNumber) for p in out.glob("rsp*.dcm"))


@requires_dcmtk
@pytest.mark.timeout(60)
def test_station_mismatch_at_the_modality_empties_its_worklist(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
    tmp_path: Path,
) -> None:
    order = place(fault_lab, "MWLSTA1")
    assert order["accession"] in accessions(worklist(fault_lab))

    faults.inject("sta", "mwl_station_mismatch", {"node": "ct-1"})
    empty = worklist(fault_lab)
    assert empty["items"] == [] and empty["filters"]["station_ae_title"] == "CT01"
    # The RIS has the step all along, under CT_1: the administrator's own query shows it.
    assert order["accession"] in findscu_accessions(fault_lab, tmp_path, "CT_1")
    log = fault_lab.client("ris").get("/log", contains="MWL C-FIND from CT_1")["lines"]
    assert "CT01" in log[-1] and "0 match" in log[-1]

    faults.revert("sta")
    assert order["accession"] in accessions(worklist(fault_lab))


@pytest.mark.timeout(60)
def test_station_mismatch_at_the_ris_schedules_under_another_station(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    ris = fault_lab.client("ris")
    faults.inject("sta-ris", "mwl_station_mismatch", {"node": "ct-1", "side": "ris"})
    order = place(fault_lab, "MWLSTA2")
    assert order["station_ae"] == "CT01"
    assert order["accession"] not in accessions(worklist(fault_lab))
    assert [i["accession"] for i in ris.get("/worklist", station="CT01")] == [order["accession"]]

    faults.revert("sta-ris")
    ris.post(f"/orders/{order['accession']}/cancel", {})  # the clerk reschedules it
    again = ris.post("/orders", {"patient_id": "MWLSTA2", "modality": "CT", "start_date": TODAY})
    assert again["station_ae"] == "CT_1"
    assert again["accession"] in accessions(worklist(fault_lab))


@pytest.mark.timeout(60)
def test_date_filter_empties_the_worklist(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    order = place(fault_lab, "MWLDATE", modality="MR")
    assert order["accession"] in accessions(worklist(fault_lab, "mr-1"))

    record = faults.inject("date", "mwl_date_filter", {"node": "mr-1"})
    empty = worklist(fault_lab, "mr-1")
    assert empty["items"] == []
    assert empty["filters"]["date"] == record.state["date"] != TODAY

    faults.revert("date")
    assert order["accession"] in accessions(worklist(fault_lab, "mr-1"))


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("mode", "error"),
    [("disabled", "no MPPS destination"), ("wrong_port", "Connection refused")],
)
def test_mpps_not_sent_leaves_the_order_scheduled(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
    mode: str,
    error: str,
) -> None:
    ris, us = fault_lab.client("ris"), fault_lab.client("us-1")
    first = place(fault_lab, f"MWLMPPS1{mode}", modality="US")
    second = place(fault_lab, f"MWLMPPS2{mode}", modality="US")

    faults.inject("mpps", "mpps_not_sent", {"node": "us-1", "mode": mode})
    worklist(fault_lab, "us-1")
    proc = us.post("/procedures/start", {"accession_number": first["accession"]})
    assert proc["mpps"][-1]["ok"] is False
    assert error in proc["mpps"][-1]["error"]
    assert ris.get(f"/orders/{first['accession']}")["status"] == "SCHEDULED"
    assert first["accession"] in {i["accession"] for i in ris.get("/worklist", station="US_1")}

    faults.revert("mpps")
    worklist(fault_lab, "us-1")
    other = us.post("/procedures/start", {"accession_number": second["accession"]})
    assert other["mpps"][-1]["ok"] is True
    assert ris.get(f"/orders/{second['accession']}")["status"] == "IN_PROGRESS"
    for p in (proc, other):
        us.post(f"/procedures/{p['id']}/discontinue")


@pytest.mark.timeout(60)
def test_order_not_scheduled_is_missing_from_the_worklist(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    ris = fault_lab.client("ris")
    order = place(fault_lab, "MWLORD", modality="CR")
    assert order["accession"] in accessions(worklist(fault_lab, "cr-1"))

    faults.inject("ord", "order_not_scheduled", {"accession": order["accession"]})
    assert ris.get(f"/orders/{order['accession']}")["status"] == "CANCELLED"
    items = worklist(fault_lab, "cr-1")["items"]
    assert order["study_uid"] not in {i["study_instance_uid"] for i in items}

    faults.revert("ord")
    items = worklist(fault_lab, "cr-1")["items"]
    back = [i for i in items if i["study_instance_uid"] == order["study_uid"]]
    assert len(back) == 1 and back[0]["patient_id"] == "MWLORD"
