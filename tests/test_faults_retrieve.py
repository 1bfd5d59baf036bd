"""Retrieve faults: inject → movescu (or the viewer) shows the real status → revert → it works.

The admin's DCMTK `movescu` runs from ADMIN_WS and asks the PACS to move a study to the viewer,
exactly what a radiologist's workstation asks for when a study is opened.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import pytest

from simlab.client.admin import AdminApiError
from simlab.common.viewer_config import VIEWER_AE_TITLE
from simlab.faults.manager import FaultManager
from simlab.runtime.lab import Lab
from simlab.runtime.topology import ADMIN_WORKSTATION_AE
from tests import dicom_files as df
from tests.conftest import requires_dcmtk
from tests.lab_fixtures import fault_lab, faults  # noqa: F401 (fixtures)

pytestmark = [requires_dcmtk]


@pytest.fixture(scope="module")
def study(fault_lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # noqa: F811
    """A two-image study stored in the PACS from the admin workstation; its Study UID."""
    ids, paths = df.study_files(
        tmp_path_factory.mktemp("retrieve"), count=2, ids=df.Ids(accession="ACC-MOVE1")
    )
    result = df.storescu(pacs_entry(fault_lab), *paths, aet=ADMIN_WORKSTATION_AE)
    assert result.returncode == 0, result.stdout
    yield ids.study_uid


def pacs_entry(lab: Lab):
    return next(n for n in lab.manifest.nodes if n.node_id == "pacs")


def movescu(lab: Lab, study_uid: str) -> subprocess.CompletedProcess[str]:
    pacs = pacs_entry(lab)
    return df.dcmtk(
        "movescu", "-d", "-S", "-aet", ADMIN_WORKSTATION_AE, "-aec", pacs.ae_title,
        "-aem", VIEWER_AE_TITLE, "-k", "QueryRetrieveLevel=STUDY",
        "-k", f"StudyInstanceUID={study_uid}", "127.0.0.1", pacs.dicom_port,
    )  # fmt: skip


def pacs_log(lab: Lab) -> str:
    return lab.paths.log("pacs").read_text(encoding="utf-8", errors="replace")


def assert_moved(lab: Lab, study_uid: str) -> None:
    result = movescu(lab, study_uid)
    assert re.search(r"DIMSE Status\s+: 0x0000: Success", result.stdout), result.stdout
    assert "Completed Suboperations       : 2" in result.stdout, result.stdout


@pytest.mark.timeout(60)
def test_move_destination_unknown_is_a801_and_revert_moves(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
    study: str,
) -> None:
    faults.inject("r1", "move_destination_unknown", {})
    assert fault_lab.client("pacs").get("/ae-table") and not any(
        r["ae_title"] == VIEWER_AE_TITLE for r in fault_lab.client("pacs").get("/ae-table")
    )
    result = movescu(fault_lab, study)
    assert "Refused: MoveDestinationUnknown" in result.stdout, result.stdout
    assert "DIMSE Status                  : 0xa801" in result.stdout
    assert f"move destination '{VIEWER_AE_TITLE}' is not in the AE table" in pacs_log(fault_lab)
    faults.revert("r1")
    assert_moved(fault_lab, study)


@pytest.mark.timeout(60)
def test_move_destination_wrong_port_fails_every_sub_operation_a702(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
    study: str,
) -> None:
    faults.inject("r2", "move_destination_wrong_port", {})
    result = movescu(fault_lab, study)
    assert "DIMSE Status                  : 0xa702" in result.stdout, result.stdout
    assert "Failed Suboperations          : 2" in result.stdout
    assert "Completed Suboperations       : 0" in result.stdout
    assert re.search(
        rf"destination {VIEWER_AE_TITLE} at 127\.0\.0\.1:\d+ unreachable \(no TCP connection",
        pacs_log(fault_lab),
    )
    faults.revert("r2")
    assert_moved(fault_lab, study)


@pytest.mark.timeout(60)
def test_viewer_wrong_pacs_ae_is_rejected_1_1_7_and_revert_opens(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
    study: str,
) -> None:
    viewer = fault_lab.client("viewer", timeout=60)
    faults.inject("r3", "viewer_wrong_pacs_ae", {})
    with pytest.raises(AdminApiError) as failed:
        viewer.post("/studies/open", {"study_uid": study})
    association = failed.value.detail["association"]
    assert (association["result"], association["source"], association["reason"]) == (1, 1, 7)
    faults.revert("r3")
    opened = viewer.post("/studies/open", {"study_uid": study})
    assert opened["ok"] is True and opened["instances"] == 2, opened
