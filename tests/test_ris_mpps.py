"""The RIS MPPS SCP with a pynetdicom SCU: every N-CREATE / N-SET status of PS3.4 F.7, and the
order's status following the performed procedure step (scheduled → in progress → completed or
discontinued), which also takes it off the worklist."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydicom.uid import generate_uid

from simlab.common.uids import RIS_UID_ROOT
from tests.ris_fixtures import MppsScu, RunningRis, create_attrs, order, register, start_ris

UID_PREFIX = "2.25.7788."


@pytest.fixture(scope="module")
def ris(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRis]:
    node = start_ris(tmp_path_factory.mktemp("ris-mpps"))
    try:
        register(node, "MPPS1", "Dupont^Marie")
        yield node
    finally:
        node.stop()


@pytest.fixture
def scu(ris: RunningRis) -> Iterator[MppsScu]:
    client = MppsScu(ris)
    try:
        yield client
    finally:
        client.close()


def test_in_progress_then_completed_moves_the_order(ris: RunningRis, scu: MppsScu):
    row = order(ris, "MPPS1")
    accession = row["accession"]
    uid = generate_uid(UID_PREFIX)
    assert scu.create(create_attrs(row), uid)[0] == 0x0000
    assert ris.admin.get(f"/orders/{accession}")["status"] == "IN_PROGRESS"
    assert accession not in [i["accession"] for i in ris.admin.get("/worklist")]
    assert scu.set(uid, PerformedProcedureStepDescription="CT head")[0] == 0x0000
    status, _ = scu.set(
        uid,
        PerformedProcedureStepStatus="COMPLETED",
        PerformedProcedureStepEndDate="20261123",
        PerformedProcedureStepEndTime="094500",
    )
    assert status == 0x0000
    assert ris.admin.get(f"/orders/{accession}")["status"] == "COMPLETED"
    mpps = ris.admin.get(f"/mpps/{uid}")
    assert mpps["status"] == "COMPLETED" and mpps["accession"] == accession
    # PS3.4 F.7.2.2: a completed step may no longer be updated.
    status, ds = scu.set(uid, PerformedProcedureStepDescription="late change")
    assert status == 0x0110
    assert ds.ErrorComment == "Performed Procedure Step Object may no longer be updated"
    lines = "\n".join(ris.admin.get("/log", contains="MPPS")["lines"])
    assert f"N-SET from CT_1 uid={uid}: 0x0110" in lines


def test_discontinued_moves_the_order(ris: RunningRis, scu: MppsScu):
    row = order(ris, "MPPS1", modality="MR", station_ae="MR_1")
    uid = generate_uid(UID_PREFIX)
    assert scu.create(create_attrs(row), uid)[0] == 0x0000
    status, _ = scu.set(
        uid,
        PerformedProcedureStepStatus="DISCONTINUED",
        PerformedProcedureStepEndDate="20261123",
        PerformedProcedureStepEndTime="100000",
    )
    assert status == 0x0000
    assert ris.admin.get(f"/orders/{row['accession']}")["status"] == "DISCONTINUED"
    assert scu.set(uid, PerformedProcedureStepStatus="COMPLETED")[0] == 0x0110


def test_n_create_errors(ris: RunningRis, scu: MppsScu):
    uid = generate_uid(UID_PREFIX)
    assert scu.create(create_attrs(None, status="COMPLETED"), uid)[0] == 0x0106
    missing = create_attrs(None)
    del missing.PerformedStationAETitle
    assert scu.create(missing, uid)[0] == 0x0120
    empty = create_attrs(None)
    empty.PerformedProcedureStepID = ""
    assert scu.create(empty, uid)[0] == 0x0121
    no_type2 = create_attrs(None)
    del no_type2.PatientName
    assert scu.create(no_type2, uid)[0] == 0x0120
    # Unscheduled case: no order matches; accepted, then a second create is a duplicate.
    assert scu.create(create_attrs(None), uid)[0] == 0x0000
    assert scu.create(create_attrs(None), uid)[0] == 0x0111
    # No Affected SOP Instance UID in the request: the RIS assigns one under its UID root.
    assert scu.create(create_attrs(None), None)[0] == 0x0000
    assigned = [m["sop_uid"] for m in ris.admin.get("/mpps")]
    assert any(u.startswith(f"{RIS_UID_ROOT}.2.") for u in assigned), assigned


def test_n_set_errors(ris: RunningRis, scu: MppsScu):
    assert scu.set(generate_uid(UID_PREFIX), PerformedProcedureStepDescription="x")[0] == 0x0112
    uid = generate_uid(UID_PREFIX)
    assert scu.create(create_attrs(None), uid)[0] == 0x0000
    assert scu.set(uid, PerformedProcedureStepStatus="FINISHED")[0] == 0x0106
    assert scu.set(uid, PerformedProcedureStepStatus="COMPLETED")[0] == 0x0121  # no end date
    assert ris.admin.get(f"/mpps/{uid}")["status"] == "IN PROGRESS"
