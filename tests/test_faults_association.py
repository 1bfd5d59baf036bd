"""Association faults: inject → the real rejection shows → revert → the path works again."""

from __future__ import annotations

import pytest

from simlab.faults.manager import FaultManager
from simlab.runtime.lab import Lab
from tests.conftest import requires_dcmtk
from tests.lab_fixtures import fault_lab, faults  # noqa: F401 (fixtures)
from tests.polling import poll

pytestmark = [requires_dcmtk]


def scan(lab: Lab, node: str, patient_id: str, accession: str) -> str:
    """Key a patient by hand at the modality, start and acquire; returns the procedure id."""
    client = lab.client(node)
    proc = client.post(
        "/patients/unscheduled",
        {"patient_id": patient_id, "patient_name": "FAULT^TEST", "accession_number": accession},
    )
    client.post("/procedures/start", {"procedure_id": proc["id"]})
    client.post(f"/procedures/{proc['id']}/acquire")
    return proc["id"]


def queue_reasons(lab: Lab, node: str, procedure_id: str, state: str) -> set[str]:
    """The failure texts of a procedure's images in the modality's send queue."""
    items = lab.client(node).get("/queue", procedure_id=procedure_id, state=state)["items"]
    return {i["reason"] for i in items}


@pytest.mark.timeout(90)
def test_wrong_called_ae_is_rejected_1_1_7_and_revert_delivers(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    faults.inject("f1", "wrong_called_ae", {"node": "ct-1", "called_ae": "PACS_MAIN"})
    proc_id = scan(fault_lab, "ct-1", "MRN-AE7", "ACC-AE7")
    reasons = poll(
        lambda: queue_reasons(fault_lab, "ct-1", proc_id, "failed"),
        bool,
        30,
        "the CT's send to fail",
    )
    assert any("1/1/7" in r for r in reasons), reasons
    faults.revert("f1")
    fault_lab.client("ct-1").post("/queue/retry", {})
    poll(
        lambda: fault_lab.client("pacs").get("/studies", accession_number="ACC-AE7"),
        bool,
        30,
        "the study to reach the PACS after the revert",
    )
