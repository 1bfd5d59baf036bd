"""Network faults through the real department: a toxic (or a partition) on the network node,
the symptom where the sender sees it (DCMTK over the link, the CT's send queue, the RIS's HL7
queue), then revert and the path works again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from simlab.client.admin import path_part
from simlab.faults.base import inverse_patch
from simlab.faults.manager import FaultManager
from simlab.runtime.lab import Lab
from tests.conftest import requires_dcmtk
from tests.dicom_files import dcmtk
from tests.lab_fixtures import fault_lab, faults  # noqa: F401 (fixtures)
from tests.polling import poll

pytestmark = [requires_dcmtk]

FAST_CT = {
    "association_timeout": 2.0,
    "acquisition": {"images_per_series": 2},
    "send_queue": {"backoff_initial": 60.0},
}
"""The CT with a short association/DIMSE timeout, two images a series, and no automatic retry
within a test (the test retries after the revert, as an operator would)."""


@pytest.fixture
def fast_ct(fault_lab: Lab) -> Iterator[None]:  # noqa: F811
    client = fault_lab.client("ct-1")
    before = client.get("/config")
    client.patch("/config", FAST_CT)
    try:
        yield
    finally:
        client.patch("/config", inverse_patch(before, FAST_CT))


def link(lab: Lab, name: str) -> dict[str, Any]:
    return lab.client("net").get(f"/links/{path_part(name)}")


def echo(lab: Lab, port: int, *extra: object) -> tuple[int, str, float]:
    """echoscu from the admin workstation to the PACS at `port`; (exit code, output, seconds)."""
    start = time.monotonic()
    result = dcmtk(
        "echoscu", "-v", *extra, "-aet", "ADMIN_WS", "-aec", "SIMLAB_PACS", "127.0.0.1", port,
        timeout=30,
    )  # fmt: skip
    return result.returncode, result.stdout, time.monotonic() - start


def scan(lab: Lab, patient_id: str, accession: str) -> str:
    """Key a patient by hand at the CT, start and acquire; returns the procedure id."""
    client = lab.client("ct-1")
    proc = client.post(
        "/patients/unscheduled",
        {"patient_id": patient_id, "patient_name": "NET^TEST", "accession_number": accession},
    )
    client.post("/procedures/start", {"procedure_id": proc["id"]})
    client.post(f"/procedures/{proc['id']}/acquire")
    return proc["id"]


def failed_reasons(lab: Lab, procedure_id: str) -> set[str]:
    """Once none of the procedure's images is pending or sending: the failure texts."""

    def fetch() -> list[dict[str, Any]]:
        return lab.client("ct-1").get("/queue", procedure_id=procedure_id)["items"]

    items = poll(
        fetch,
        lambda rows: bool(rows) and all(r["state"] in ("failed", "sent") for r in rows),
        30,
        "the CT's send to end",
    )
    return {i["reason"] for i in items if i["state"] == "failed"}


def delivered(lab: Lab, procedure_id: str, accession: str) -> None:
    """Retry the CT's failed sends; wait until all its images are in the PACS."""
    lab.client("ct-1").post("/queue/retry", {})
    poll(
        lambda: lab.client("ct-1").get("/queue", procedure_id=procedure_id)["items"],
        lambda items: bool(items) and all(i["state"] == "sent" for i in items),
        30,
        f"the CT's images of {accession} to be sent",
    )
    assert lab.client("pacs").get("/studies", accession=accession)


@pytest.mark.timeout(90)
def test_black_hole_times_out_echo_and_the_ct_send(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
    fast_ct: None,
) -> None:
    via_net = link(fault_lab, "ct-1->pacs")["listen_port"]
    faults.inject("f1", "network_black_hole", {})
    code, out, took = echo(fault_lab, via_net, "-ta", "2")
    assert code != 0, out
    assert took < 15
    direct = fault_lab.manifest.node("pacs").dicom_port
    assert echo(fault_lab, direct)[0] == 0  # the PACS itself is fine
    proc_id = scan(fault_lab, "MRN-NBH", "ACC-NBH")
    reasons = failed_reasons(fault_lab, proc_id)
    assert any("no A-ASSOCIATE response" in r for r in reasons), reasons
    assert link(fault_lab, "ct-1->pacs")["bytes_dropped"] > 0
    faults.revert("f1")
    assert link(fault_lab, "ct-1->pacs")["toxics"] == []
    assert echo(fault_lab, via_net)[0] == 0
    delivered(fault_lab, proc_id, "ACC-NBH")


@pytest.mark.timeout(60)
def test_latency_beyond_the_artim_timer_then_revert(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    via_net = link(fault_lab, "viewer->pacs")["listen_port"]
    faults.inject(
        "f1", "network_latency", {"link": "viewer->pacs", "latency_ms": 1500, "jitter_ms": 0}
    )
    code, out, took = echo(fault_lab, via_net, "-ta", "1")
    assert code != 0, out  # the A-ASSOCIATE-AC comes 3 s late: the ARTIM timer fired first
    assert took < 10
    log = fault_lab.client("net").get("/log", contains="network_latency")["lines"]
    assert any("delays" in line for line in log), log
    faults.revert("f1")
    code, out, fast = echo(fault_lab, via_net, "-ta", "1")
    assert code == 0, out
    assert fast < 2.0


@pytest.mark.timeout(90)
def test_bandwidth_makes_the_c_store_time_out(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
    fast_ct: None,
) -> None:
    faults.inject("f1", "network_bandwidth", {"rate_kb_s": 16})
    proc_id = scan(fault_lab, "MRN-NBW", "ACC-NBW")
    reasons = failed_reasons(fault_lab, proc_id)
    assert any("no C-STORE response" in r or "aborted" in r for r in reasons), reasons
    faults.revert("f1")
    delivered(fault_lab, proc_id, "ACC-NBW")


@pytest.mark.timeout(90)
def test_connection_reset_aborts_the_association_mid_send(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
    fast_ct: None,
) -> None:
    resets = link(fault_lab, "ct-1->pacs")["resets"]
    faults.inject("f1", "connection_reset", {})
    proc_id = scan(fault_lab, "MRN-NRS", "ACC-NRS")
    reasons = failed_reasons(fault_lab, proc_id)
    assert any("no C-STORE response" in r or "aborted" in r for r in reasons), reasons
    assert link(fault_lab, "ct-1->pacs")["resets"] > resets
    faults.revert("f1")
    delivered(fault_lab, proc_id, "ACC-NRS")


@pytest.mark.timeout(90)
def test_pdu_cut_off_aborts_the_store(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
    fast_ct: None,
) -> None:
    faults.inject("f1", "pdu_truncated", {})  # ct-1->pacs, 32 KB: inside the first P-DATA
    proc_id = scan(fault_lab, "MRN-NPT", "ACC-NPT")
    reasons = failed_reasons(fault_lab, proc_id)
    assert any("no C-STORE response" in r or "aborted" in r for r in reasons), reasons
    assert link(fault_lab, "ct-1->pacs")["limited"] >= 1
    faults.revert("f1")
    delivered(fault_lab, proc_id, "ACC-NPT")


def _register(lab: Lab, name: str) -> str:
    return lab.client("ris").post(
        "/patients", {"name": name, "birth_date": "19800101", "sex": "F"}
    )["patient_id"]


def _pacs_entries(lab: Lab, patient_id: str) -> list[dict[str, Any]]:
    """The RIS's outbound queue entries to the PACS about a patient."""
    rows = lab.client("ris").get("/queue", destination="pacs")
    return [r for r in rows if patient_id in r["message"]]


def _retry_and_wait_sent(lab: Lab, patient_id: str) -> None:
    for row in _pacs_entries(lab, patient_id):
        if row["state"] != "sent":
            lab.client("ris").post(f"/queue/{row['id']}/retry")
    poll(
        lambda: _pacs_entries(lab, patient_id),
        lambda rows: bool(rows) and all(r["state"] == "sent" for r in rows),
        30,
        "the RIS's HL7 to reach the PACS",
    )
    registered = {p.get("patient_id") for p in lab.client("pacs").get("/hl7/patients")}
    assert patient_id in registered


@pytest.mark.timeout(90)
def test_partition_piles_up_hl7_in_the_ris_queue_then_drains(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    faults.inject("f1", "network_partition", {"a": "ris", "b": "pacs"})
    hl7 = link(fault_lab, "ris->pacs:hl7")
    assert hl7["enabled"] is False and hl7["listening"] is False
    assert link(fault_lab, "ct-1->pacs")["enabled"] is True  # only the two nodes are cut
    patient_id = _register(fault_lab, "PARTITION^PAT")
    rows = poll(
        lambda: _pacs_entries(fault_lab, patient_id),
        lambda rows: bool(rows) and rows[0]["attempts"] >= 1 and rows[0]["state"] == "pending",
        30,
        "the ADT to fail and stay queued",
    )
    assert "refused" in rows[0]["last_error"].lower(), rows[0]
    faults.revert("f1")
    assert link(fault_lab, "ris->pacs:hl7")["listening"] is True
    _retry_and_wait_sent(fault_lab, patient_id)


@pytest.mark.timeout(90)
def test_hl7_message_cut_off_is_retried_and_piles_up(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    faults.inject("f1", "pdu_truncated", {"link": "ris->pacs:hl7", "bytes": 60})
    patient_id = _register(fault_lab, "TRUNCATED^PAT")
    rows = poll(
        lambda: _pacs_entries(fault_lab, patient_id),
        lambda rows: bool(rows) and rows[0]["attempts"] >= 1 and rows[0]["state"] != "sent",
        30,
        "the cut-off ADT to fail",
    )
    assert rows[0]["last_error"], rows[0]
    poll(
        lambda: fault_lab.client("pacs").get("/log", contains="in the middle of a message")[
            "lines"
        ],
        bool,
        10,
        "the PACS to log the cut-off MLLP message",
    )
    faults.revert("f1")
    _retry_and_wait_sent(fault_lab, patient_id)


@pytest.mark.timeout(60)
def test_network_faults_refuse_unknown_links(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    from simlab.faults.base import FaultError

    with pytest.raises(FaultError, match="no link"):
        faults.inject("f1", "network_latency", {"link": "ct-9->pacs"})
    with pytest.raises(FaultError, match="no link between"):
        faults.inject("f2", "network_partition", {"a": "ct-1", "b": "mr-1"})
    assert all(lk["toxics"] == [] for lk in fault_lab.client("net").get("/links"))
