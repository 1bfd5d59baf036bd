"""The PACS Storage SCP and archive: what a C-STORE Success promises, and every way it refuses.

DCMTK's storescu is the modality; the assertions read its output, the PACS log, the admin API and
the files on disk. The index contract the HL7 service relies on (ADT A08 / A40) is exercised on an
archive opened in-process.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pynetdicom import AE
from pynetdicom import _config as pynetdicom_config
from pynetdicom.sop_class import CTImageStorage

from simlab.common.config import RemoteAe
from simlab.nodes.pacs.archive import Archive
from simlab.nodes.pacs.query import STUDY_ROOT, QueryService
from simlab.runtime.topology import pacs_config
from tests import dicom_files as df
from tests.conftest import DCMTK_DEFAULT_AES, RunningNode, requires_dcmtk, start_pacs

DATASET_OFFSET_AFTER_META = 132
"""Preamble (128) + 'DICM' (4): the File Meta group follows."""


def _dataset_bytes(path: Path) -> bytes:
    """The data set part of a Part 10 file (after the File Meta Information group)."""
    raw = path.read_bytes()
    ds = dcmread(path, stop_before_pixels=True)
    meta_len = int(ds.file_meta.FileMetaInformationGroupLength)
    return raw[DATASET_OFFSET_AFTER_META + 12 + meta_len :]


def _stored_path(node: RunningNode, sop_uid: str) -> Path:
    digest = hashlib.sha256(sop_uid.encode()).hexdigest()
    return node.data_dir / "objects" / digest[:2] / digest[2:4] / f"{digest}.dcm"


def _tmp_files(node: RunningNode) -> list[Path]:
    tmp = node.data_dir / "tmp"
    return sorted(tmp.iterdir()) if tmp.exists() else []


@requires_dcmtk
@pytest.mark.dcmtk
def test_storescu_files_are_archived_verbatim_and_indexed(
    pacs_node: RunningNode, tmp_path: Path
) -> None:
    ids, cts = df.study_files(tmp_path / "in", count=3)
    others = [
        df.write(df.mr(), tmp_path / "in"),
        df.write(df.secondary_capture(), tmp_path / "in"),
        df.write(df.enhanced_ct(), tmp_path / "in"),
    ]
    result = df.storescu(pacs_node, *cts, *others)
    assert result.returncode == 0, result.stdout
    assert result.stdout.count("Received Store Response (Success)") == 6

    stats = pacs_node.admin.get("/stats")
    assert (stats["instances"], stats["studies"]) == (6, 4)
    assert stats["bytes_stored"] == sum(p.stat().st_size for p in df.object_files(pacs_node))
    study = pacs_node.admin.get(f"/studies/{ids.study_uid}")
    assert study["patient_id"] == "PID001" and study["accession"] == "ACC001"
    assert study["modalities"] == ["CT"] and study["instance_count"] == 3
    assert [i["calling_ae"] for i in study["series"][0]["instances"]] == ["STORESCU"] * 3

    for source in [*cts, *others]:
        sop_uid = dcmread(source, stop_before_pixels=True).SOPInstanceUID
        stored = _stored_path(pacs_node, sop_uid)
        assert stored.is_file(), f"{sop_uid} not at its hashed path"
        assert _dataset_bytes(stored) == _dataset_bytes(source), "data set not stored as received"
        meta = dcmread(stored, stop_before_pixels=True).file_meta
        assert meta.SourceApplicationEntityTitle == "STORESCU"
        assert meta.MediaStorageSOPInstanceUID == sop_uid
        if shutil.which("dciodvfy"):
            check = df.dcmtk("dciodvfy", "-filename", stored)
            errors = [line for line in check.stdout.splitlines() if line.startswith("Error")]
            assert errors == [], f"{stored.name}: {errors}"
    first_uid = dcmread(cts[0], stop_before_pixels=True).SOPInstanceUID
    dump = df.dcmtk("dcmdump", _stored_path(pacs_node, first_uid))
    assert dump.returncode == 0 and "DOE^JOHN" in dump.stdout, dump.stdout
    line = df.wait_for_log(pacs_node, r"C-STORE Enhanced CT Image Storage .* from STORESCU: 0x0000")
    assert "Success" in line
    df.wait_for_log(pacs_node, r"association released: STORESCU .*6 object\(s\) stored, 0 refused")
    assert _tmp_files(pacs_node) == []


@requires_dcmtk
@pytest.mark.dcmtk
def test_concurrent_storescu_processes_are_all_indexed(
    pacs_node: RunningNode, tmp_path: Path
) -> None:
    batches = []
    for n in range(4):
        base = df.Ids(patient_id=f"CONC{n}", accession=f"CONC{n}")
        batches.append(df.study_files(tmp_path / f"b{n}", count=5, ids=base)[1])
    procs = [
        subprocess.Popen(
            ["storescu", "-aec", pacs_node.ae_title, "127.0.0.1", str(pacs_node.dicom_port)]
            + [str(p) for p in batch],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for batch in batches
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
    stats = pacs_node.admin.get("/stats")
    assert (stats["instances"], stats["studies"], stats["patients"]) == (20, 4, 4)
    assert len(df.object_files(pacs_node)) == 20
    assert _tmp_files(pacs_node) == []


@requires_dcmtk
@pytest.mark.dcmtk
def test_quota_refuses_with_a700_and_leaves_no_trace(
    pacs_node: RunningNode, tmp_path: Path
) -> None:
    _, files = df.study_files(tmp_path, count=4)
    one = df.storescu(pacs_node, files[0])
    assert "Received Store Response (Success)" in one.stdout
    size = df.object_files(pacs_node)[0].stat().st_size
    pacs_node.admin.patch("/config", {"storage": {"quota_bytes": 2 * size + size // 2}})

    result = df.storescu(pacs_node, *files[1:], extra=["--no-halt"])
    assert result.stdout.count("Received Store Response (Success)") == 1
    assert result.stdout.count("Received Store Response (Refused: OutOfResources)") == 2
    assert pacs_node.admin.get("/stats")["instances"] == 2
    assert len(df.object_files(pacs_node)) == 2
    refused = dcmread(files[3], stop_before_pixels=True).SOPInstanceUID
    assert not _stored_path(pacs_node, refused).exists()
    assert _tmp_files(pacs_node) == []
    line = df.wait_for_log(pacs_node, rf"C-STORE CT Image Storage {refused} from STORESCU")
    assert "0xA700 Refused: Out of resources (quota" in line


@pytest.fixture
def tiny_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 640 KiB tmpfs: a disk that really fills up (needs root; skipped otherwise)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=640k,mode=0755", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@requires_dcmtk
@pytest.mark.dcmtk
def test_real_enospc_is_a700_without_half_files_and_recovers(
    tiny_filesystem: Path, tmp_path: Path
) -> None:
    node = start_pacs(tmp_path / "pacs", data_dir=str(tiny_filesystem / "data"))
    try:
        files = [df.write(df.ct(size=256), tmp_path / "in") for _ in range(8)]  # ~132 KiB each
        result = df.storescu(node, *files, extra=["--no-halt"])
        stored = result.stdout.count("Received Store Response (Success)")
        refused = result.stdout.count("Received Store Response (Refused: OutOfResources)")
        assert stored >= 1 and refused >= 1 and stored + refused == 8, result.stdout
        line = df.wait_for_log(node, r"0xA700 Refused: Out of resources \(disk full")
        assert "No space left on device" in line or "index cannot grow" in line

        stats = node.admin.get("/stats")
        data = tiny_filesystem / "data"
        objects = [p for p in (data / "objects").rglob("*.dcm")]
        assert stats["instances"] == stored == len(objects)
        assert list((data / "tmp").iterdir()) == []
        for study in node.admin.get("/studies"):  # the administrator frees space
            node.admin.delete(f"/studies/{study['study_uid']}")
        again = df.storescu(node, files[-1])
        assert "Received Store Response (Success)" in again.stdout, again.stdout
    finally:
        node.stop()


@requires_dcmtk
@pytest.mark.dcmtk
def test_duplicate_policies(pacs_node: RunningNode, tmp_path: Path) -> None:
    ids = df.Ids()
    first = df.write(df.ct(ids), tmp_path, "first.dcm")
    renamed = df.ct(df.Ids(**{**ids.__dict__, "patient_name": "DOE^JOHNNY"}))
    second = df.write(renamed, tmp_path, "second.dcm")
    stored = _stored_path(pacs_node, ids.sop_uid)

    assert "Success" in df.storescu(pacs_node, first).stdout
    pacs_node.admin.patch("/config", {"storage": {"duplicate_policy": "keep"}})
    assert "Received Store Response (Success)" in df.storescu(pacs_node, second).stdout
    assert dcmread(stored).PatientName == "DOE^JOHN"

    pacs_node.admin.patch("/config", {"storage": {"duplicate_policy": "overwrite"}})
    assert "Received Store Response (Success)" in df.storescu(pacs_node, second).stdout
    assert dcmread(stored).PatientName == "DOE^JOHNNY"
    assert df.wait_for_log(pacs_node, r"previous copy overwritten")

    pacs_node.admin.patch("/config", {"storage": {"duplicate_policy": "reject"}})
    result = df.storescu(pacs_node, first)
    assert "Received Store Response (Unknown Status: 0x111)" in result.stdout, result.stdout
    line = df.wait_for_log(pacs_node, r"0x0111 Duplicate SOP Instance")
    assert "dcm4chee" in line
    assert dcmread(stored).PatientName == "DOE^JOHNNY"
    stats = pacs_node.admin.get("/stats")
    assert stats["instances"] == 1 and len(df.object_files(pacs_node)) == 1
    assert stats["bytes_stored"] == stored.stat().st_size


@requires_dcmtk
@pytest.mark.dcmtk
@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_hostile_uids_and_patient_ids_stay_inside_the_objects_dir(
    pacs_node: RunningNode, tmp_path: Path
) -> None:
    hostile = df.Ids(
        sop_uid="../../../../escaped",
        patient_id="../../etc/passwd",
        study_uid="/tmp/evil/study",
        series_uid="..\\..\\series",
    )
    result = df.storescu(pacs_node, df.write(df.ct(hostile), tmp_path / "in"))
    assert "Received Store Response (Success)" in result.stdout, result.stdout
    objects_dir = (pacs_node.data_dir / "objects").resolve()
    files = [p.resolve() for p in df.object_files(pacs_node)]
    assert files == [_stored_path(pacs_node, hostile.sop_uid).resolve()]
    assert all(objects_dir in p.parents for p in files)
    everything = {p.name for p in pacs_node.node_dir.rglob("*")}
    assert not {"escaped", "passwd", "study", "evil"} & everything
    assert not Path("/tmp/evil").exists()
    patients = pacs_node.admin.get("/patients")
    assert [p["patient_id"] for p in patients] == ["../../etc/passwd"]


# --- malformed requests, sent with pynetdicom so the bytes are exactly ours ---------------------


def _file_with_raw_dataset(path: Path, meta_uid: str, dataset: bytes) -> Path:
    """A Part 10 file: a valid File Meta group (SOP Instance UID `meta_uid`) and `dataset` bytes
    exactly as given; pynetdicom's chunked send puts those bytes on the wire untouched."""
    meta = Dataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = meta_uid
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    meta.ImplementationClassUID = "2.25.1"
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_file_meta_info(fp, meta)
    path.write_bytes(b"\0" * 128 + b"DICM" + fp.getvalue() + dataset)
    return path


def _encode(ds: Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    return fp.getvalue()


def _send_raw(node: RunningNode, path: Path) -> Dataset:
    ae = AE("STORESCU")
    ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.1")
    previous = pynetdicom_config.STORE_SEND_CHUNKED_DATASET
    pynetdicom_config.STORE_SEND_CHUNKED_DATASET = True
    assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title=node.ae_title)
    try:
        assert assoc.is_established
        return assoc.send_c_store(path)
    finally:
        pynetdicom_config.STORE_SEND_CHUNKED_DATASET = previous
        assoc.release()


def test_malformed_data_sets_are_refused_with_named_statuses(
    pacs_node: RunningNode, tmp_path: Path
) -> None:
    good = df.ct()
    body = _encode(good)
    cases = {
        "truncated": (good.SOPInstanceUID, body[:-7], 0xC000, "cut short"),
        "garbage": (good.SOPInstanceUID, b"\x17\x42" * 40, 0xC000, ""),
        "uid mismatch": (df.new_uid(), body, 0xA900, "differs"),
    }
    no_uid = df.ct()
    del no_uid.SOPInstanceUID
    cases["no SOP Instance UID"] = (df.new_uid(), _encode(no_uid), 0xA900, "missing")
    for name, (meta_uid, dataset, status, comment) in cases.items():
        path = _file_with_raw_dataset(tmp_path / f"{name}.dcm", meta_uid, dataset)
        answer = _send_raw(pacs_node, path)
        assert answer.Status == status, f"{name}: 0x{answer.Status:04X}"
        assert comment in answer.get("ErrorComment", ""), f"{name}: {answer}"
    assert pacs_node.admin.get("/stats")["instances"] == 0
    assert df.object_files(pacs_node) == [] and _tmp_files(pacs_node) == []
    df.wait_for_log(pacs_node, r"0xC000 Error: Cannot understand \(cannot parse the data set")


@requires_dcmtk
@pytest.mark.dcmtk
def test_study_uid_reused_for_another_patient_stays_with_the_first(
    pacs_node: RunningNode, tmp_path: Path
) -> None:
    first = df.Ids(patient_id="PAT-A", patient_name="ALPHA^ANN")
    second = df.Ids(
        patient_id="PAT-B", patient_name="BRAVO^BEN", study_uid=first.study_uid, accession="X9"
    )
    files = [df.write(df.ct(first), tmp_path), df.write(df.ct(second), tmp_path)]
    assert df.storescu(pacs_node, *files).returncode == 0
    study = pacs_node.admin.get(f"/studies/{first.study_uid}")
    assert study["patient_id"] == "PAT-A"
    assert study["file_patient_ids"] == ["PAT-A", "PAT-B"] and study["mixed_patients"]
    names = {i["file_patient_name"] for s in study["series"] for i in s["instances"]}
    assert names == {"ALPHA^ANN", "BRAVO^BEN"}
    assert [p["patient_id"] for p in pacs_node.admin.get("/patients")] == ["PAT-A"]
    line = df.wait_for_log(pacs_node, r"DATA CONFLICT: study")
    assert "belongs to patient PAT-A" in line and "PAT-B" in line


@requires_dcmtk
@pytest.mark.dcmtk
def test_open_repairs_what_a_crash_leaves(pacs_node: RunningNode, tmp_path: Path) -> None:
    ids, files = df.study_files(tmp_path, count=4)
    assert df.storescu(pacs_node, *files).returncode == 0
    uids = [dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files]
    pacs_node.kill9()

    (pacs_node.data_dir / "tmp" / "3f2a.part").write_bytes(b"half an object")
    _stored_path(pacs_node, uids[0]).unlink()  # file lost, row left
    with contextlib.closing(sqlite3.connect(pacs_node.data_dir / "index.sqlite")) as db:
        db.execute("DELETE FROM instances WHERE sop_uid = ?", (uids[1],))  # row lost
        db.commit()
    misplaced = pacs_node.data_dir / "objects" / "00" / "00" / "stray.dcm"
    misplaced.parent.mkdir(parents=True, exist_ok=True)
    os.replace(_stored_path(pacs_node, uids[2]), misplaced)  # file under a wrong name
    pacs_node.start()

    assert _tmp_files(pacs_node) == []
    study = pacs_node.admin.get(f"/studies/{ids.study_uid}")
    indexed = {i["sop_uid"] for s in study["series"] for i in s["instances"]}
    assert indexed == set(uids[1:])
    assert _stored_path(pacs_node, uids[2]).is_file() and not misplaced.exists()
    assert len(df.object_files(pacs_node)) == 3
    df.wait_for_log(pacs_node, r"recovery: removed 1 unfinished temp file")
    df.wait_for_log(pacs_node, rf"recovery: index row of {uids[0]} dropped")
    df.wait_for_log(pacs_node, r"recovery: 2 object file\(s\) without index row, 2 reindexed")


# --- the index contract used by the HL7 service (ADT A08 / A40), in-process -----------------------


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[Archive]:
    cfg = pacs_config(
        dicom_port=104,
        hl7_port=2575,
        admin_port=8080,
        ae_table=[RemoteAe(ae_title=t) for t in DCMTK_DEFAULT_AES],
    )
    arch = Archive(tmp_path / "data", lambda: cfg, logging.getLogger("test-archive"))
    arch.open()
    try:
        yield arch
    finally:
        arch.close()


def _store(arch: Archive, ds: Dataset) -> None:
    status, comment = arch.store(
        _encode(ds), "1.2.840.10008.1.2.1", ds.SOPClassUID, ds.SOPInstanceUID, "CT_1"
    )
    assert status == 0, comment


def _find_patient(arch: Archive, patient_id: str) -> list[Dataset]:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientID = patient_id
    query.PatientName = ""
    query.PatientBirthDate = ""
    query.StudyInstanceUID = ""
    return QueryService(
        arch.index, lambda: pacs_config(dicom_port=1, hl7_port=2, admin_port=3)
    ).find(query, STUDY_ROOT)[1]


def test_adt_a08_update_reaches_queries_and_retrieves(archive: Archive) -> None:
    ids = df.Ids(patient_id="MRN1", patient_name="SMITH^JON", birth_date="19600101")
    _store(archive, df.ct(ids))
    _store(archive, df.ct(df.Ids(patient_id="MRN1", patient_name="SMITH^JON")))
    assert archive.index.update_patient_demographics("UNKNOWN", name="X^Y") == 0
    updated = archive.index.update_patient_demographics(
        "MRN1", name="SMITH^JOHN", birth_date="19610101"
    )
    assert updated == 2
    studies = _find_patient(archive, "MRN1")
    assert {str(s.PatientName) for s in studies} == {"SMITH^JOHN"}
    assert {s.PatientBirthDate for s in studies} == {"19610101"}
    row = archive.index.instance(ids.sop_uid)
    assert row is not None
    retrieved = archive.read_for_retrieve(row)
    assert (str(retrieved.PatientName), retrieved.PatientBirthDate) == ("SMITH^JOHN", "19610101")
    assert row["file_patient_name"] == "SMITH^JON"  # the file keeps what the modality sent


def test_adt_a40_merge_moves_studies_and_removes_the_prior_patient(archive: Archive) -> None:
    _store(archive, df.ct(df.Ids(patient_id="TEMP-77", patient_name="UNKNOWN^TRAUMA")))
    _store(archive, df.mr(df.Ids(patient_id="TEMP-77", patient_name="UNKNOWN^TRAUMA")))
    _store(archive, df.ct(df.Ids(patient_id="MRN9", patient_name="REAL^NAME")))
    assert archive.index.merge_patient("NOBODY", "MRN9") == 0
    moved = archive.index.merge_patient("TEMP-77", "MRN9", target_name="REAL^NAME^Q")
    assert moved == 2
    assert _find_patient(archive, "TEMP-77") == []
    merged = _find_patient(archive, "MRN9")
    assert len(merged) == 3 and {str(s.PatientName) for s in merged} == {"REAL^NAME^Q"}
    assert [p["patient_id"] for p in archive.index.list_patients()] == ["MRN9"]
    assert archive.index.merge_patient("MRN9", "NEW-1") == 3  # target created when missing
    assert archive.index.list_patients()[0]["patient_id"] == "NEW-1"
    assert archive.index.list_studies(patient_id="NEW-1", limit=2, offset=1)[0]["series_count"]
