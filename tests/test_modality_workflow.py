"""The modality's Scheduled Workflow end to end, with real peers on real sockets.

DCMTK wlmscpfs (worklist) -> modality C-FIND; MPPS N-CREATE to a recording SCP; images generated
from the worklist item and C-STOREd to the simlab PACS; MPPS N-SET COMPLETED with the Performed
Series Sequence; Storage Commitment N-ACTION and the PACS's N-EVENT-REPORT recorded per instance.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest

from simlab.client.admin import AdminApiError
from simlab.common.config import RemoteAe
from simlab.runtime.ports import free_ports
from tests.conftest import requires_dcmtk, start_pacs
from tests.modality_fixtures import (
    MODALITY_AE,
    MppsScp,
    WorklistScp,
    mpps_scp_fixture,  # noqa: F401 (registers the fixture)
    pacs_destination,
    poll,
    start_modality,
    worklist_scp_fixture,  # noqa: F401 (registers the fixture)
)

pytestmark = [requires_dcmtk, pytest.mark.dcmtk]

STUDY_UID = "1.2.826.0.1.3680043.8.498.1001"


def test_worklist_to_committed_images_in_the_pacs(
    tmp_path: Path, worklist_scp: WorklistScp, mpps_scp: MppsScp
) -> None:
    worklist_scp.add_item(
        "a",
        patient_id="MRN1001",
        patient_name="DOE^JANE",
        accession="ACC1001",
        study_uid=STUDY_UID,
        requested_procedure_id="RP1001",
        sps_id="SPS1001",
    )
    worklist_scp.add_item(
        "b",
        patient_id="MRN2002",
        patient_name="ROE^RICHARD",
        accession="ACC2002",
        study_uid="1.2.826.0.1.3680043.8.498.2002",
        station_ae="MR_1",
        modality="MR",
    )
    pacs = start_pacs(tmp_path / "pacs")
    modality = start_modality(
        tmp_path / "ct-1",
        pacs_destination(pacs),
        pacs=pacs,
        mwl=worklist_scp.remote,
        mpps=mpps_scp.remote,
    )
    try:
        result = modality.admin.post("/worklist/query", {})
        assert result["filters"]["station_ae_title"] == MODALITY_AE
        assert [i["accession_number"] for i in result["items"]] == ["ACC1001"]
        assert modality.admin.get("/worklist")["items"] == result["items"]

        proc = modality.admin.post("/procedures/start", {})
        assert proc["state"] == "in progress"
        assert proc["mpps"][-1] == {"status": "IN PROGRESS", "ok": True, "error": ""}
        (_, mpps_uid, created) = mpps_scp.events[0]
        assert mpps_uid == proc["mpps_uid"]
        step = created.ScheduledStepAttributesSequence[0]
        assert (step.AccessionNumber, step.StudyInstanceUID) == ("ACC1001", STUDY_UID)
        assert step.RequestedProcedureID == "RP1001"
        assert step.ScheduledProcedureStepID == "SPS1001"
        assert created.PatientID == "MRN1001"
        assert created.PerformedStationAETitle == MODALITY_AE

        acquired = modality.admin.post(f"/procedures/{proc['id']}/acquire")
        assert acquired["queued"] == 4
        (series,) = acquired["series"]
        modality.wait_queue("sent", 4)

        done = modality.admin.post(f"/procedures/{proc['id']}/complete")
        assert done["state"] == "completed"
        assert mpps_scp.statuses() == ["IN PROGRESS", "COMPLETED"]
        final = mpps_scp.instances[mpps_uid]
        (performed,) = final.PerformedSeriesSequence
        assert performed.SeriesInstanceUID == series["series_uid"]
        assert [r.ReferencedSOPInstanceUID for r in performed.ReferencedImageSequence] == (
            series["instances"]
        )
        assert performed.RetrieveAETitle == pacs.ae_title

        (study,) = pacs.admin.get("/studies", accession="ACC1001")
        assert study["study_uid"] == STUDY_UID
        (by_patient,) = pacs.admin.get("/studies", patient_id="MRN1001")
        assert by_patient["study_uid"] == STUDY_UID
        detail = pacs.admin.get(f"/studies/{STUDY_UID}")
        stored = sorted(i["sop_uid"] for s in detail["series"] for i in s["instances"])
        assert stored == sorted(series["instances"])

        def committed() -> dict | None:
            commits = modality.admin.get(f"/procedures/{proc['id']}")["commitments"]
            return commits[0] if commits and commits[0]["state"] != "requested" else None

        commitment = poll(committed, 20, "the storage commitment report")
        assert commitment["state"] == "committed", commitment
        assert set(commitment["instances"].values()) == {"committed"}
        assert sorted(commitment["instances"]) == sorted(series["instances"])
        log = modality.log_text()
        assert "MWL query [" in log and ": 1 items" in log
        assert "MPPS N-SET COMPLETED" in log
        assert "storage commitment" in log and "4 committed, 0 failed" in log

        outbox = sorted((modality.data_dir / "outbox" / proc["id"]).glob("*.dcm"))
        ds = pydicom.dcmread(outbox[0])
        assert (ds.PatientID, ds.AccessionNumber, ds.StudyInstanceUID) == (
            "MRN1001",
            "ACC1001",
            STUDY_UID,
        )
        assert ds.RequestAttributesSequence[0].RequestedProcedureID == "RP1001"
        if shutil.which("dciodvfy"):
            out = subprocess.run(
                ["dciodvfy", str(outbox[0])], capture_output=True, text=True, timeout=30
            )
            errors = [line for line in out.stderr.splitlines() if line.startswith("Error")]
            assert errors == [], out.stderr

        with pytest.raises(AdminApiError) as exc:
            modality.admin.post(f"/procedures/{proc['id']}/complete")
        assert exc.value.status == 409
    finally:
        modality.stop()
        pacs.stop()


def test_discontinued_procedure_and_an_empty_worklist(
    tmp_path: Path, worklist_scp: WorklistScp, mpps_scp: MppsScp
) -> None:
    worklist_scp.add_item(
        "a",
        patient_id="MRN3003",
        patient_name="POE^EDGAR",
        accession="ACC3003",
        study_uid="1.2.826.0.1.3680043.8.498.3003",
    )
    destination = pacs_destination_unreachable()
    modality = start_modality(
        tmp_path / "ct-1", destination, mwl=worklist_scp.remote, mpps=mpps_scp.remote
    )
    try:
        # A station AE the RIS does not schedule for: an empty worklist, not an outage.
        empty = modality.admin.post("/worklist/query", {"station_ae_title": "CT_9"})
        assert empty["items"] == []
        items = modality.admin.post("/worklist/query", {})["items"]
        assert len(items) == 1
        proc = modality.admin.post("/procedures/start", {"accession_number": "ACC3003"})
        stopped = modality.admin.post(f"/procedures/{proc['id']}/discontinue")
        assert stopped["state"] == "discontinued"
        assert mpps_scp.statuses() == ["IN PROGRESS", "DISCONTINUED"]
        with pytest.raises(AdminApiError) as exc:
            modality.admin.post("/procedures/start", {})
        assert exc.value.status == 404
    finally:
        modality.stop()


def pacs_destination_unreachable() -> RemoteAe:
    (port,) = free_ports(1)
    return RemoteAe(ae_title="NOWHERE", host="127.0.0.1", port=port)
