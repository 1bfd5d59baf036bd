"""The viewer's Storage SCP with DCMTK storescu as the independent peer, its association policy,
bad input on its port, durability across a restart, and the admin console.

One viewer serves the module; its AE table knows the PACS and DCMTK's STORESCU. No PACS is needed:
the Q/R provider is a port nothing listens on.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from simlab.client.admin import AdminApiError
from simlab.common.config import RemoteAe
from simlab.runtime.ports import free_ports
from tests import dicom_files as df
from tests.conftest import requires_dcmtk
from tests.viewer_fixtures import RunningViewer, start_viewer

pytestmark = [requires_dcmtk, pytest.mark.dcmtk]


@pytest.fixture(scope="module")
def viewer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningViewer]:
    root = tmp_path_factory.mktemp("viewer-scp")
    node = start_viewer(
        root / "viewer",
        pacs_port=free_ports(1)[0],
        extra_ae=[RemoteAe(ae_title="STORESCU", host="127.0.0.1", port=11112)],
    )
    try:
        yield node
    finally:
        node.stop()


def send(viewer: RunningViewer, tmp: Path, aet: str = "STORESCU", count: int = 2, **ids):
    study, files = df.study_files(tmp / "in", count=count, ids=df.Ids(**ids))
    return study, files, df.storescu(viewer, *files, aet=aet)


def test_storescu_from_a_known_calling_ae_is_stored_and_indexed(
    viewer: RunningViewer, tmp_path: Path
) -> None:
    study, files, result = send(viewer, tmp_path, accession="ACC-S1", patient_name="ROE^JANE")
    assert result.returncode == 0, result.stdout
    assert result.stdout.count("Received Store Response (Success)") == 2
    detail = viewer.admin.get(f"/studies/{study.study_uid}")
    assert (detail["accession"], detail["patient_name"], detail["source_ae"]) == (
        "ACC-S1",
        "ROE^JANE",
        "STORESCU",
    )
    assert {i["sop_uid"] for i in detail["instance_list"]} == {
        dcmread(f).SOPInstanceUID for f in files
    }
    assert all(i["source_ae"] == "STORESCU" for i in detail["instance_list"])
    reading = {e["study_uid"]: e["state"] for e in viewer.admin.get("/reading-list")}
    assert reading[study.study_uid] == "unread"
    # the stored file is the object as sent, with File Meta naming the source AE
    stored = [p for p in (viewer.data_dir / "objects").rglob("*.dcm")]
    sops = {dcmread(p).SOPInstanceUID: dcmread(p) for p in stored}
    one = sops[dcmread(files[0]).SOPInstanceUID]
    assert one.file_meta.SourceApplicationEntityTitle == "STORESCU"
    assert one.PixelData == dcmread(files[0]).PixelData
    assert not list((viewer.data_dir / "tmp").iterdir())
    df.wait_for_log(viewer, r"received batch: 2 instance\(s\) stored, 0 refused, from STORESCU")


def test_unknown_calling_ae_is_rejected_with_reason_3(viewer: RunningViewer, tmp_path: Path):
    _, _, result = send(viewer, tmp_path, aet="STRANGER", count=1)
    assert result.returncode != 0
    assert "Result: Rejected Permanent, Source: Service User" in result.stdout
    assert "Reason: Calling AE Title Not Recognized" in result.stdout
    df.wait_for_log(
        viewer,
        r"association REJECTED: STRANGER .* result 1 \(rejected-permanent\), source 1 "
        r"\(service-user\), reason 3 \(calling AE title not recognised\) \(not in the AE table\)",
    )


def test_wrong_called_ae_is_rejected_with_reason_7(viewer: RunningViewer, tmp_path: Path):
    _, files = df.study_files(tmp_path, count=1)
    result = df.dcmtk(
        "storescu", "-aet", "STORESCU", "-aec", "SIMLAB_PACS", "127.0.0.1",
        viewer.dicom_port, files[0],
    )  # fmt: skip
    assert "Reason: Called AE Title Not Recognized" in result.stdout
    df.wait_for_log(viewer, r"reason 7 \(called AE title not recognised\) \(we are SIMLAB_VIEWER\)")


def test_garbage_on_the_dicom_port_does_not_stop_the_service(
    viewer: RunningViewer, tmp_path: Path
) -> None:
    payloads = (
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # not a PDU type
        b"\x01\x00\xff\xff\xff\xff" + b"\x00" * 64,  # A-ASSOCIATE-RQ claiming 4 GiB, then silence
        bytes(range(256)) * 4,
    )
    socks = []
    for payload in payloads:
        sock = socket.create_connection(("127.0.0.1", viewer.dicom_port), timeout=5)
        sock.sendall(payload)
        socks.append(sock)
    try:
        # served while the garbage connections are still open
        echo = df.dcmtk("echoscu", "-aet", "STORESCU", "-aec", viewer.ae_title, "127.0.0.1",
                        viewer.dicom_port)  # fmt: skip
        assert echo.returncode == 0, echo.stdout
        _, _, result = send(viewer, tmp_path, count=1)
        assert result.returncode == 0, result.stdout
        # and each garbage connection is closed by the viewer (A-ABORT or stall timeout)
        deadline = time.monotonic() + 10
        for sock in socks:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ConnectionResetError):
                while sock.recv(4096):
                    pass
    finally:
        for sock in socks:
            sock.close()
    assert viewer.admin.health()["services"] == {"dicom": True}
    df.wait_for_log(viewer, r"closed after .* without an association")


def test_ae_table_changes_apply_live(viewer: RunningViewer, tmp_path: Path) -> None:
    viewer.admin.put("/ae-table/CT_ROOM_2", {"host": "127.0.0.1", "port": 104})
    _, _, accepted = send(viewer, tmp_path / "a", aet="CT_ROOM_2", count=1)
    assert accepted.returncode == 0, accepted.stdout
    assert viewer.admin.delete("/ae-table/CT_ROOM_2") == {"removed": "CT_ROOM_2"}
    _, _, refused = send(viewer, tmp_path / "b", aet="CT_ROOM_2", count=1)
    assert "Reason: Calling AE Title Not Recognized" in refused.stdout
    with pytest.raises(AdminApiError) as info:
        viewer.admin.delete("/ae-table/CT_ROOM_2")
    assert info.value.status == 404
    titles = {e["ae_title"] for e in viewer.admin.get("/ae-table")}
    assert titles == {"SIMLAB_PACS", "STORESCU"}
    assert "CT_ROOM_2" not in viewer.config_path.read_text()


def test_config_patch_is_validated_persisted_and_restarts_only_on_address_change(
    viewer: RunningViewer, tmp_path: Path
) -> None:
    for bad in (
        {"retrieve": {"method": "c-teleport"}},
        {"dicom": {"port": 70000}},
        {"retrieve": {"provider": {"ae_title": "X" * 17}}},
        {"no_such_key": 1},
    ):
        with pytest.raises(AdminApiError) as info:
            viewer.admin.patch("/config", bad)
        assert info.value.status == 422, bad
    answer = viewer.admin.patch("/config", {"retrieve": {"query_model": "patient_root"}})
    assert answer["restarted"] == []
    assert viewer.config.retrieve.query_model == "patient_root"
    viewer.admin.patch("/config", {"retrieve": {"query_model": "study_root"}})
    old_port = viewer.dicom_port
    (new_port,) = free_ports(1)
    answer = viewer.admin.patch("/config", {"dicom": {"port": new_port}})
    try:
        assert answer["restarted"] == ["dicom"]
        assert viewer.admin.health()["dicom_port"] == new_port
        _, _, result = send(viewer, tmp_path, count=1)  # storescu follows viewer.dicom_port
        assert result.returncode == 0, result.stdout
    finally:
        viewer.admin.patch("/config", {"dicom": {"port": old_port}})
    # an edit by hand, then /reload
    text = viewer.config_path.read_text().replace('"c-move"', '"c-get"')
    viewer.config_path.write_text(text)
    try:
        assert viewer.admin.post("/reload")["config"]["retrieve"]["method"] == "c-get"
    finally:
        viewer.admin.patch("/config", {"retrieve": {"method": "c-move"}})


def test_delete_study_removes_files_and_rows(viewer: RunningViewer, tmp_path: Path) -> None:
    study, _, result = send(viewer, tmp_path, count=2)
    assert result.returncode == 0
    before = viewer.admin.get("/stats")
    assert viewer.admin.delete(f"/studies/{study.study_uid}") == {
        "deleted": study.study_uid,
        "instances": 2,
    }
    after = viewer.admin.get("/stats")
    assert after["instances"] == before["instances"] - 2
    assert len(list((viewer.data_dir / "objects").rglob("*.dcm"))) == after["instances"]
    with pytest.raises(AdminApiError) as info:
        viewer.admin.get(f"/studies/{study.study_uid}")
    assert info.value.status == 404
    with pytest.raises(AdminApiError):
        viewer.admin.post(f"/reading-list/{study.study_uid}/read")


def test_studies_survive_a_restart_and_stale_temp_files_go(
    viewer: RunningViewer, tmp_path: Path
) -> None:
    study, _, result = send(viewer, tmp_path, count=1, accession="ACC-KEEP")
    assert result.returncode == 0
    viewer.admin.post(f"/reading-list/{study.study_uid}/read")
    (viewer.data_dir / "tmp" / "deadbeef.part").write_bytes(b"half an object")
    viewer.kill9()
    viewer.start()
    assert viewer.admin.get("/studies", accession="ACC-KEEP")[0]["study_uid"] == study.study_uid
    entry = next(e for e in viewer.admin.get("/reading-list") if e["study_uid"] == study.study_uid)
    assert entry["state"] == "read"
    assert not (viewer.data_dir / "tmp" / "deadbeef.part").exists()
    df.wait_for_log(viewer, r"recovery: removed 1 unfinished temp file")


def test_health_stats_and_log(viewer: RunningViewer) -> None:
    health = viewer.admin.health()
    assert (health["role"], health["ae_title"], health["retrieve_method"]) == (
        "viewer",
        "SIMLAB_VIEWER",
        "c-move",
    )
    assert health["qr_provider"]["ae_title"] == "SIMLAB_PACS"
    stats = viewer.admin.get("/stats")
    assert {"studies", "unread_studies", "instances", "bytes_stored", "dicom", "opens"} <= set(
        stats
    )
    lines = viewer.admin.get("/log", lines=5, contains="DICOM listener")["lines"]
    assert lines and all("DICOM listener" in line for line in lines)
    with pytest.raises(AdminApiError) as info:
        type(viewer.admin)(viewer.admin.base_url, "wrong-token-wrong-token").health()
    assert info.value.status == 401


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_uids_never_become_paths(viewer: RunningViewer, tmp_path: Path) -> None:
    ids = df.Ids(sop_uid="../../../../escape", study_uid="../../study", accession="ACC-EVIL")
    evil = df.write(df.ct(ids), tmp_path, "evil.dcm")
    result = df.storescu(viewer, evil)
    assert result.returncode == 0, result.stdout
    (study,) = viewer.admin.get("/studies", accession="ACC-EVIL")
    assert study["study_uid"] == "../../study" and study["instances"] == 1
    root = viewer.node_dir.parent
    assert not [p for p in root.rglob("*escape*")] and not [p for p in root.rglob("study")]
    objects = viewer.data_dir / "objects"
    assert all(len(p.stem) == 64 for p in objects.rglob("*.dcm"))
