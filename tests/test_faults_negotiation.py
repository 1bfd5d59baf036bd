"""Negotiation faults: inject → the presentation context is rejected with its real result (3 or
4) in the modality's queue and the PACS log → revert → the retry delivers."""

from __future__ import annotations

import pytest

from simlab.faults.manager import FaultManager
from simlab.runtime.lab import Lab
from tests.conftest import requires_dcmtk
from tests.lab_fixtures import fault_lab, faults  # noqa: F401 (fixtures)
from tests.polling import poll
from tests.test_faults_association import delivered, queue_reasons, scan

pytestmark = [requires_dcmtk]

RLE_LOSSLESS = "1.2.840.10008.1.2.5"


def failed_reasons(lab: Lab, node: str, procedure_id: str) -> set[str]:
    return poll(
        lambda: queue_reasons(lab, node, procedure_id, "failed"),
        bool,
        30,
        f"{node}'s send to fail",
    )


def pacs_log(lab: Lab, contains: str) -> list[str]:
    return lab.client("pacs").get("/log", contains=contains, lines=50)["lines"]


@pytest.mark.timeout(90)
def test_sop_class_not_accepted_gives_result_3_and_revert_delivers(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    faults.inject("f1", "sop_class_not_accepted", {"sop_class": "CTImageStorage"})
    proc_id = scan(fault_lab, "ct-1", "MRN-SOP", "ACC-SOP")
    reasons = failed_reasons(fault_lab, "ct-1", proc_id)
    assert reasons == {
        "no presentation context accepted for CT Image Storage (abstract syntax not supported)"
    }, reasons
    assert any(
        "CT Image Storage (3 abstract syntax not supported)" in line
        for line in pacs_log(fault_lab, "association accepted: CT_1")
    )
    faults.revert("f1")
    assert fault_lab.client("pacs").get("/config")["rejected_sop_classes"] == []
    delivered(fault_lab, "ct-1", proc_id, "ACC-SOP")


@pytest.mark.timeout(90)
def test_transfer_syntax_not_accepted_gives_result_4_and_revert_delivers(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    before = fault_lab.client("pacs").get("/config")["accepted_transfer_syntaxes"]
    faults.inject("f1", "transfer_syntax_not_accepted", {})
    proc_id = scan(fault_lab, "cr-1", "MRN-TS", "ACC-TS")
    reasons = failed_reasons(fault_lab, "cr-1", proc_id)
    assert reasons == {
        "no presentation context accepted for Computed Radiography Image Storage "
        "(transfer syntaxes not supported)"
    }, reasons
    assert any(
        "(4 transfer syntaxes not supported)" in line
        for line in pacs_log(fault_lab, "association accepted: CR_1")
    )
    faults.revert("f1")
    assert fault_lab.client("pacs").get("/config")["accepted_transfer_syntaxes"] == before
    delivered(fault_lab, "cr-1", proc_id, "ACC-TS")


@pytest.mark.timeout(90)
def test_modality_proposing_rle_is_refused_and_the_pacs_side_fix_survives_the_revert(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    """Result 4 for the modality's RLE images; the trainee fixes it on the PACS (accepts RLE),
    the queued images go through; the instructor's revert then leaves the PACS fix alone."""
    faults.inject("f1", "modality_proposes_unaccepted_ts", {"node": "us-1"})
    assert RLE_LOSSLESS not in fault_lab.client("pacs").get("/config")["accepted_transfer_syntaxes"]
    proc_id = scan(fault_lab, "us-1", "MRN-RLE", "ACC-RLE")
    reasons = failed_reasons(fault_lab, "us-1", proc_id)
    assert reasons == {
        "no presentation context accepted for Ultrasound Image Storage "
        "(transfer syntaxes not supported)"
    }, reasons

    accepted = fault_lab.client("pacs").get("/config")["accepted_transfer_syntaxes"]
    fault_lab.client("pacs").patch(
        "/config", {"accepted_transfer_syntaxes": [*accepted, RLE_LOSSLESS]}
    )
    delivered(fault_lab, "us-1", proc_id, "ACC-RLE")
    faults.revert("f1")
    assert fault_lab.client("pacs").get("/config")["accepted_transfer_syntaxes"] == [
        *accepted,
        RLE_LOSSLESS,
    ]
    us = fault_lab.client("us-1").get("/config")
    assert us["acquisition"]["transfer_syntax"] == "1.2.840.10008.1.2.1"
