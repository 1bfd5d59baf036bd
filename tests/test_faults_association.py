"""Association faults: inject → the real rejection shows → revert → the path works again."""

from __future__ import annotations

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from simlab.client.admin import path_part
from simlab.faults.manager import FaultManager
from simlab.runtime.lab import Lab
from tests.conftest import requires_dcmtk
from tests.dicom_files import dcmtk
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


def delivered(lab: Lab, node: str, procedure_id: str, accession: str) -> None:
    """Retry the modality's failed sends; wait until all its images are sent and in the PACS
    (the whole procedure, so no send is still running when the next test starts)."""
    lab.client(node).post("/queue/retry", {})
    poll(
        lambda: lab.client(node).get("/queue", procedure_id=procedure_id)["items"],
        lambda items: bool(items) and all(i["state"] == "sent" for i in items),
        30,
        f"{node}'s images of {accession} to be sent",
    )
    assert lab.client("pacs").get("/studies", accession=accession)


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
    delivered(fault_lab, "ct-1", proc_id, "ACC-AE7")


def pacs_port(lab: Lab) -> int:
    port = lab.manifest.node("pacs").dicom_port
    assert port is not None
    return port


def echo(lab: Lab, *, port: int | None = None, aet: str = "ADMIN_WS", extra: tuple = ()):
    """DCMTK echoscu from the admin workstation to the PACS (stdout and stderr merged)."""
    return dcmtk(
        "echoscu", "-v", *extra, "-aet", aet, "-aec", "SIMLAB_PACS", "127.0.0.1",
        port or pacs_port(lab), timeout=30,
    )  # fmt: skip


@pytest.mark.timeout(90)
def test_unknown_calling_ae_is_rejected_1_1_3_and_revert_puts_the_row_back(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    before = fault_lab.client("pacs").get("/ae-table")
    faults.inject("f1", "unknown_calling_ae", {})
    assert "CT_1" not in {r["ae_title"] for r in fault_lab.client("pacs").get("/ae-table")}
    proc_id = scan(fault_lab, "ct-1", "MRN-AE3", "ACC-AE3")
    reasons = poll(
        lambda: queue_reasons(fault_lab, "ct-1", proc_id, "failed"),
        bool,
        30,
        "the CT's send to fail",
    )
    assert any("calling AE title not recognised (1/1/3)" in r for r in reasons), reasons
    log = fault_lab.client("pacs").get("/log", contains="REJECTED: CT_1")["lines"]
    assert any("reason 3" in line and "not in the AE table" in line for line in log), log
    faults.revert("f1")
    assert fault_lab.client("pacs").get("/ae-table") == before
    delivered(fault_lab, "ct-1", proc_id, "ACC-AE3")


@pytest.mark.timeout(90)
def test_wrong_destination_port_is_refused_and_revert_delivers(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    before = fault_lab.client("cr-1").get("/config")["destination"]
    faults.inject("f1", "wrong_destination_port", {"node": "cr-1"})
    proc_id = scan(fault_lab, "cr-1", "MRN-PORT", "ACC-PORT")
    reasons = poll(
        lambda: queue_reasons(fault_lab, "cr-1", proc_id, "failed"),
        bool,
        30,
        "the CR's send to fail",
    )
    assert any("127.0.0.1:104" in r and "refused" in r.lower() for r in reasons), reasons
    faults.revert("f1")
    assert fault_lab.client("cr-1").get("/config")["destination"] == before
    delivered(fault_lab, "cr-1", proc_id, "ACC-PORT")


@pytest.mark.timeout(90)
def test_pacs_port_changed_refuses_the_old_port_and_revert_restores_it(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    record = faults.inject("f1", "pacs_port_changed", {})
    new_port = record.state["faulty_port"]
    assert fault_lab.client("pacs").health()["services"]["dicom"] is True
    old = echo(fault_lab)
    assert old.returncode != 0
    assert "Connection refused" in old.stdout, old.stdout
    assert echo(fault_lab, port=new_port).returncode == 0
    faults.revert("f1")
    assert fault_lab.client("pacs").get("/config")["dicom"]["port"] == pacs_port(fault_lab)
    result = echo(fault_lab)
    assert result.returncode == 0, result.stdout


@pytest.mark.timeout(90)
def test_pacs_port_changed_revert_does_not_break_a_fix_on_the_peers(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    """The trainee fixes the peers instead of the PACS: the US is re-pointed at the new port, and
    so is the CR's link on the department network (when the lab has one). The revert moves the
    PACS back and every re-pointed peer to where it was before."""
    us_before = fault_lab.client("us-1").get("/config")["destination"]
    links = _cr_links_to_pacs(fault_lab)
    new_port = faults.inject("f1", "pacs_port_changed", {}).state["faulty_port"]
    fault_lab.client("us-1").patch("/config", {"destination": {"port": new_port}})
    for name in links:
        fault_lab.client("net").patch(f"/links/{path_part(name)}", {"upstream_port": new_port})
    proc_id = scan(fault_lab, "us-1", "MRN-MOVED", "ACC-MOVED")
    delivered(fault_lab, "us-1", proc_id, "ACC-MOVED")
    faults.revert("f1")
    assert fault_lab.client("us-1").get("/config")["destination"] == us_before
    assert _cr_links_to_pacs(fault_lab) == links
    proc_id = scan(fault_lab, "cr-1", "MRN-MOVED2", "ACC-MOVED2")
    delivered(fault_lab, "cr-1", proc_id, "ACC-MOVED2")


def _cr_links_to_pacs(lab: Lab) -> list[str]:
    """Names of the network links from the CR to the PACS DICOM port ([] without a network)."""
    if not any(n.node_id == "net" for n in lab.manifest.nodes):
        return []
    port = pacs_port(lab)
    return [
        link["name"]
        for link in lab.client("net").get("/config")["links"]
        if link["name"].startswith("cr-1") and link["upstream_port"] == port
    ]


@pytest.mark.timeout(90)
def test_calling_ae_changed_is_rejected_1_1_3_and_revert_delivers(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    faults.inject("f1", "calling_ae_changed", {"node": "mr-1"})
    assert fault_lab.client("mr-1").get("/config")["dicom"]["ae_title"] == "MR1"
    proc_id = scan(fault_lab, "mr-1", "MRN-AET", "ACC-AET")
    reasons = poll(
        lambda: queue_reasons(fault_lab, "mr-1", proc_id, "failed"),
        bool,
        30,
        "the MR's send to fail",
    )
    assert any("(1/1/3)" in r for r in reasons), reasons
    log = fault_lab.client("pacs").get("/log", contains="REJECTED: MR1 ")["lines"]
    assert log, "the PACS logs the unknown calling AE MR1"
    faults.revert("f1")
    assert fault_lab.client("mr-1").get("/config")["dicom"]["ae_title"] == "MR_1"
    delivered(fault_lab, "mr-1", proc_id, "ACC-AET")


@pytest.mark.timeout(60)
def test_association_limit_rejects_2_3_2_while_another_association_is_open(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    faults.inject("f1", "association_limit", {})
    ae = AE("ADMIN_WS")
    ae.add_requested_context(Verification)
    held = ae.associate("127.0.0.1", pacs_port(fault_lab), ae_title="SIMLAB_PACS")
    try:
        assert held.is_established
        result = echo(fault_lab)
        assert result.returncode != 0
        assert "Result: Rejected Transient, Source: Service Provider (Presentation Related)" in (
            result.stdout
        )
        assert "Reason: Local Limit Exceeded" in result.stdout
        faults.revert("f1")
        result = echo(fault_lab)
        assert result.returncode == 0, result.stdout
    finally:
        held.release()
