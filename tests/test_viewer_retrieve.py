"""The viewer opens studies from a real simlab PACS: C-FIND, then C-MOVE to itself or C-GET,
and every failure reported exactly as the PACS (or the network) gave it.

One PACS and one viewer serve the module; three studies are stored into the PACS once with DCMTK
storescu. Each test that changes an AE table or a setting restores it in `finally`.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from simlab.client.admin import AdminApiError
from simlab.common.safe_paths import fanned_path
from simlab.runtime.ports import free_ports
from tests import dicom_files as df
from tests.conftest import RunningNode, requires_dcmtk, start_pacs
from tests.viewer_fixtures import (
    RunningViewer,
    ViewerLab,
    register_viewer_in_pacs,
    start_viewer,
    viewer_lab,  # noqa: F401 (fixture)
)

pytestmark = [requires_dcmtk, pytest.mark.dcmtk]


@dataclass
class Lab:
    pacs: RunningNode
    viewer: RunningViewer
    studies: dict[str, df.Ids] = field(default_factory=dict)
    sops: dict[str, set[str]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("viewer-qr")
    pacs = start_pacs(root / "pacs")
    try:
        viewer = start_viewer(root / "viewer", pacs)
        try:
            register_viewer_in_pacs(pacs, viewer)
            lab = Lab(pacs, viewer)
            files: list[Path] = []
            layout = {
                "V1": [(df.ct, "CT", 3)],
                "V2": [(df.mr, "MR", 2), (df.secondary_capture, "OT", 1)],
                "V3": [(df.ct, "CT", 1)],
            }
            for key, series_list in layout.items():
                study = df.Ids(patient_id=f"PID-{key}", accession=f"ACC-{key}")
                lab.studies[key], lab.sops[key] = study, set()
                for number, (maker, modality, count) in enumerate(series_list, start=1):
                    series_uid = df.new_uid()
                    for instance in range(1, count + 1):
                        ids = df.Ids(
                            **{**study.__dict__, "series_uid": series_uid, "modality": modality}
                        )
                        ids.sop_uid, ids.series_number, ids.instance_number = (
                            df.new_uid(),
                            number,
                            instance,
                        )
                        lab.sops[key].add(ids.sop_uid)
                        files.append(df.write(maker(ids), root / "in"))
            sent = df.storescu(pacs, *files)
            assert sent.returncode == 0, sent.stdout
            yield lab
        finally:
            viewer.stop()
    finally:
        pacs.stop()


def open_fails(viewer: RunningViewer, body: dict) -> AdminApiError:
    with pytest.raises(AdminApiError) as info:
        viewer.admin.post("/studies/open", body)
    return info.value


def held_sops(viewer: RunningViewer, study_uid: str) -> set[str]:
    try:
        detail = viewer.admin.get(f"/studies/{study_uid}")
    except AdminApiError as exc:
        assert exc.status == 404
        return set()
    return {i["sop_uid"] for i in detail["instance_list"]}


def forget(viewer: RunningViewer, study_uid: str) -> None:
    try:
        viewer.admin.delete(f"/studies/{study_uid}")
    except AdminApiError as exc:
        assert exc.status == 404


@contextmanager
def pacs_ae_entry(lab: Lab, port: int | None = None, present: bool = True) -> Iterator[None]:
    """The viewer's PACS AE table entry changed for the block, then restored."""
    title = lab.viewer.ae_title
    if present:
        register_viewer_in_pacs(lab.pacs, lab.viewer, port)
    else:
        lab.pacs.admin.delete(f"/ae-table/{title}")
    try:
        yield
    finally:
        register_viewer_in_pacs(lab.pacs, lab.viewer)


def test_open_by_accession_with_c_move_delivers_every_instance(lab: Lab) -> None:
    study = lab.studies["V1"]
    forget(lab.viewer, study.study_uid)
    outcome = lab.viewer.admin.post("/studies/open", {"accession": "ACC-V1"})
    assert outcome["ok"] and outcome["method"] == "c-move"
    assert outcome["find"]["matches"] == 1
    (result,) = outcome["studies"]
    assert result["retrieve"]["status"] == "0x0000"
    assert (result["retrieve"]["completed"], result["retrieve"]["failed"]) == (3, 0)
    assert result["held"]["instances"] == 3 and outcome["instances"] == 3
    assert result["held"]["arrived"] == 3
    assert held_sops(lab.viewer, study.study_uid) == lab.sops["V1"]
    # stored under hashed names, never a path from a UID
    files = [p for p in (lab.viewer.data_dir / "objects").rglob("*.dcm")]
    assert len(files) >= 3 and not any(study.study_uid in str(p) for p in files)
    # the radiologist's worklist: unread, then read
    entry = next(
        e for e in lab.viewer.admin.get("/reading-list") if e["study_uid"] == study.study_uid
    )
    assert (entry["state"], entry["accession"], entry["patient_id"]) == (
        "unread",
        "ACC-V1",
        "PID-V1",
    )
    lab.viewer.admin.post(f"/reading-list/{study.study_uid}/read")
    unread = lab.viewer.admin.get("/reading-list", state="unread")
    assert study.study_uid not in {e["study_uid"] for e in unread}
    (last, *_) = lab.viewer.admin.get("/opens", limit=1)
    assert last["ok"] and last["request"]["accession"] == "ACC-V1" and last["instances"] == 3
    by_uid = lab.viewer.admin.get("/opens", study_uid=study.study_uid)
    assert by_uid and all(study.study_uid in str(o) for o in by_uid)
    assert lab.viewer.admin.get("/opens", accession="NEVER-ASKED") == []
    df.wait_for_log(
        lab.viewer, r"received batch: 3 instance\(s\) stored, 0 refused, from SIMLAB_PACS"
    )
    df.wait_for_log(
        lab.viewer, r"retrieve C-MOVE study .*ACC-V1.*final 0x0000 Success, 3 completed"
    )


def test_open_by_study_uid_brings_every_series(lab: Lab) -> None:
    study = lab.studies["V2"]
    forget(lab.viewer, study.study_uid)
    outcome = lab.viewer.admin.post("/studies/open", {"study_uid": study.study_uid})
    (result,) = outcome["studies"]
    assert result["accession"] == "ACC-V2" and result["expected_instances"] == 3
    assert sorted(s["modality"] for s in result["held"]["series"]) == ["MR", "OT"]
    assert held_sops(lab.viewer, study.study_uid) == lab.sops["V2"]


def test_open_with_c_get_set_in_the_config(lab: Lab) -> None:
    study = lab.studies["V3"]
    forget(lab.viewer, study.study_uid)
    lab.viewer.admin.patch("/config", {"retrieve": {"method": "c-get"}})
    try:
        # C-GET needs no move destination: it works even when the PACS cannot reach the viewer
        with pacs_ae_entry(lab, port=free_ports(1)[0]):
            outcome = lab.viewer.admin.post("/studies/open", {"study_uid": study.study_uid})
    finally:
        lab.viewer.admin.patch("/config", {"retrieve": {"method": "c-move"}})
    assert outcome["method"] == "c-get" and outcome["ok"]
    assert outcome["studies"][0]["retrieve"]["completed"] == 1
    assert held_sops(lab.viewer, study.study_uid) == lab.sops["V3"]
    df.wait_for_log(lab.viewer, r"received batch \(C-GET\): 1 instance\(s\) stored")


def test_viewer_missing_from_pacs_ae_table_is_a801(lab: Lab) -> None:
    # A PACS that accepts any caller but moves only to known destinations.
    lab.pacs.admin.patch("/config", {"dicom": {"require_known_calling_ae": False}})
    try:
        with pacs_ae_entry(lab, present=False):
            error = open_fails(lab.viewer, {"accession": "ACC-V1"})
    finally:
        lab.pacs.admin.patch("/config", {"dicom": {"require_known_calling_ae": True}})
    assert error.status == 502
    assert "0xA801 Refused: Move destination unknown" in error.message
    retrieve = error.detail["studies"][0]["retrieve"]
    assert (retrieve["status"], retrieve["completed"]) == ("0xA801", 0)
    (last, *_) = lab.viewer.admin.get("/opens", limit=1)
    assert not last["ok"] and "0xA801" in last["error"]


def test_viewer_unknown_to_a_strict_pacs_is_rejected_with_reason_3(lab: Lab) -> None:
    with pacs_ae_entry(lab, present=False):
        error = open_fails(lab.viewer, {"accession": "ACC-V1"})
    assert error.status == 502
    assert error.detail["association"] == {
        "result": 1,
        "result_text": "rejected-permanent",
        "source": 1,
        "source_text": "service-user",
        "reason": 3,
        "reason_text": "calling AE title not recognised",
    }
    assert "association rejected by SIMLAB_PACS" in error.message


def test_wrong_port_in_pacs_ae_table_is_a702(lab: Lab) -> None:
    study = lab.studies["V1"]
    forget(lab.viewer, study.study_uid)
    with pacs_ae_entry(lab, port=free_ports(1)[0]):
        error = open_fails(lab.viewer, {"study_uid": study.study_uid})
    retrieve = error.detail["studies"][0]["retrieve"]
    assert retrieve["status"] == "0xA702" and "unable to perform sub-operations" in error.message
    assert (retrieve["completed"], retrieve["failed"]) == (0, 3)
    assert set(retrieve["failed_sop_uids"]) == lab.sops["V1"]
    assert held_sops(lab.viewer, study.study_uid) == set()
    df.wait_for_log(lab.viewer, r"retrieve C-MOVE .* final 0xA702 .* 0 completed, 3 failed")


def test_unknown_accession_is_not_found(lab: Lab) -> None:
    error = open_fails(lab.viewer, {"accession": "NO-SUCH-ACC"})
    assert error.status == 404
    assert error.message == "no study with accession NO-SUCH-ACC on SIMLAB_PACS"
    assert error.detail["find"]["matches"] == 0


def test_pacs_down_is_a_clear_connection_error(lab: Lab) -> None:
    (dead,) = free_ports(1)
    good = lab.viewer.config.retrieve.provider.port
    lab.viewer.admin.patch("/config", {"retrieve": {"provider": {"port": dead}}})
    try:
        error = open_fails(lab.viewer, {"accession": "ACC-V1"})
    finally:
        lab.viewer.admin.patch("/config", {"retrieve": {"provider": {"port": good}}})
    assert error.status == 502 and error.detail["stage"] == "connect"
    assert error.message == f"cannot connect to SIMLAB_PACS at 127.0.0.1:{dead}: Connection refused"


def test_patient_root_query_model(lab: Lab) -> None:
    study = lab.studies["V3"]
    forget(lab.viewer, study.study_uid)
    lab.viewer.admin.patch("/config", {"retrieve": {"query_model": "patient_root"}})
    try:
        outcome = lab.viewer.admin.post("/studies/open", {"accession": "ACC-V3"})
    finally:
        lab.viewer.admin.patch("/config", {"retrieve": {"query_model": "study_root"}})
    assert outcome["query_model"] == "patient_root" and outcome["ok"]
    assert held_sops(lab.viewer, study.study_uid) == lab.sops["V3"]
    df.wait_for_log(
        lab.viewer, r"C-FIND STUDY \(Patient Root\) on SIMLAB_PACS for accession ACC-V3"
    )


def test_stopped_pacs_is_connection_refused(viewer_lab: ViewerLab) -> None:  # noqa: F811
    viewer_lab.pacs.stop()
    error = open_fails(viewer_lab.viewer, {"study_uid": "1.2.3.4"})
    port = viewer_lab.pacs.dicom_port
    assert error.status == 502
    assert error.message == f"cannot connect to SIMLAB_PACS at 127.0.0.1:{port}: Connection refused"
    (last, *_) = viewer_lab.viewer.admin.get("/opens")
    assert last["stage"] == "connect" and not last["ok"]
    df.wait_for_log(viewer_lab.viewer, r"open Study Instance UID 1\.2\.3\.4 failed: cannot connect")


def test_silent_pacs_is_a_timeout(lab: Lab) -> None:
    """A peer that accepts TCP but never answers the A-ASSOCIATE-RQ: ARTIM expires."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    port = server.getsockname()[1]
    good = lab.viewer.config.retrieve.provider.port
    lab.viewer.admin.patch(
        "/config", {"retrieve": {"provider": {"port": port}, "connect_timeout": 1.0}}
    )
    try:
        error = open_fails(lab.viewer, {"accession": "ACC-V1"})
    finally:
        lab.viewer.admin.patch(
            "/config", {"retrieve": {"provider": {"port": good}, "connect_timeout": 5.0}}
        )
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()
    assert error.status == 504
    assert "timed out during negotiation (ARTIM 1 s)" in error.message


def test_bad_open_requests_are_400(lab: Lab) -> None:
    for body in (
        {},
        {"accession": "A", "study_uid": "1.2"},
        {"study_uid": "../../etc"},
        {"accession": "x" * 17},
        {"accession": "A", "method": "c-teleport"},
        {"accession": "A", "extra": 1},
    ):
        error = open_fails(lab.viewer, body)
        assert error.status == 400, body


def test_one_instance_the_viewer_cannot_store_is_b000(lab: Lab) -> None:
    """A directory squats on one object's hashed file name: the viewer answers that C-STORE
    sub-operation 0x0110, the PACS finishes the C-MOVE with 0xB000 and the failed UID."""
    study = lab.studies["V1"]
    forget(lab.viewer, study.study_uid)
    victim = sorted(lab.sops["V1"])[0]
    blocker = fanned_path(lab.viewer.data_dir / "objects", victim, ".dcm")
    blocker.mkdir(parents=True)
    try:
        error = open_fails(lab.viewer, {"accession": "ACC-V1"})
    finally:
        blocker.rmdir()
    retrieve = error.detail["studies"][0]["retrieve"]
    assert retrieve["status"] == "0xB000"
    assert (retrieve["completed"], retrieve["failed"]) == (2, 1)
    assert retrieve["failed_sop_uids"] == [victim]
    assert error.detail["studies"][0]["held"]["instances"] == 2
    assert error.detail["studies"][0]["held"]["arrived"] == 2
    assert "final 0xB000 Warning, 2 completed, 1 failed" in error.message
    df.wait_for_log(lab.viewer, rf"C-STORE CT Image Storage {victim} from SIMLAB_PACS: 0x0110")


def test_pacs_that_never_answers_the_c_find_is_a_dimse_timeout(lab: Lab) -> None:
    """A hung Q/R SCP (here a pynetdicom stand-in): the association is up, no response comes."""
    release = threading.Event()

    def hang(_event):
        release.wait(10)
        yield 0x0000, None

    fake = AE("SIMLAB_PACS")
    fake.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    server = fake.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_FIND, hang)])
    good = lab.viewer.config.retrieve.provider.port
    lab.viewer.admin.patch(
        "/config",
        {"retrieve": {"provider": {"port": server.server_address[1]}, "dimse_timeout": 1.0}},
    )
    try:
        error = open_fails(lab.viewer, {"accession": "ACC-V1"})
    finally:
        lab.viewer.admin.patch(
            "/config", {"retrieve": {"provider": {"port": good}, "dimse_timeout": 60.0}}
        )
        release.set()
        server.shutdown()
    assert error.status == 504
    assert error.message == (
        "timeout: no C-FIND response from SIMLAB_PACS within 1 s (DIMSE timeout); "
        "association aborted"
    )
