"""Query/Retrieve: C-FIND at every level of both models, C-MOVE to a real destination and to
broken ones, C-GET on the same association.

One PACS is loaded once with four patients; the tests only read from it (they add AE table
entries, which nothing else depends on). DCMTK's findscu/movescu/getscu are the viewers;
findscu writes every response to a file (-X) so the assertions read real data sets. Exact
status codes and counts are also checked with a pynetdicom SCU.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
)

from simlab.runtime.ports import free_ports
from tests import dicom_files as df
from tests.conftest import RunningNode, requires_dcmtk, start_pacs

pytestmark = [requires_dcmtk, pytest.mark.dcmtk]


@dataclass
class Corpus:
    node: RunningNode
    studies: dict[str, df.Ids] = field(default_factory=dict)
    """Study key (A1, A2, B1, C1, D1) -> its ids."""
    sops: dict[str, list[str]] = field(default_factory=dict)
    """Study key -> SOP Instance UIDs, in instance order."""
    series: dict[str, list[str]] = field(default_factory=dict)


PATIENTS = {
    "A": dict(patient_id="QR-A", patient_name="SMITH^ANNA", birth_date="19800101", sex="F"),
    "B": dict(patient_id="QR-B", patient_name="Smithers^Bob", birth_date="19751212", sex="M"),
    "C": dict(patient_id="QR-C", patient_name="JONES^CAROL", birth_date="19900505", sex="F"),
    "D": dict(patient_id="QR-D", patient_name="ΠΑΠΑΔΟΠΟΥΛΟΣ^ΝΙΚΟΣ", birth_date="", sex="M"),
}
STUDIES = [
    # key, patient, date, time, [(maker, modality, count)]
    ("A1", "A", "20240115", "093000", [(df.ct, "CT", 3)]),
    ("A2", "A", "20240302", "140000", [(df.mr, "MR", 2)]),
    ("B1", "B", "20231231", "230000", [(df.ct, "CT", 2), (df.secondary_capture, "OT", 1)]),
    ("C1", "C", "20240210", "080000", [(df.ct, "CT", 1)]),
    ("D1", "D", "20240220", "120000", [(df.ct, "CT", 1)]),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    root = tmp_path_factory.mktemp("qr")
    node = start_pacs(root / "pacs")
    corpus = Corpus(node)
    files: list[Path] = []
    try:
        for key, patient, date, time_, series_list in STUDIES:
            study = df.Ids(
                **PATIENTS[patient], study_date=date, study_time=time_, accession=f"ACC-{key}"
            )
            corpus.studies[key] = study
            corpus.sops[key] = []
            corpus.series[key] = []
            for number, (maker, modality, count) in enumerate(series_list, start=1):
                series_uid = df.new_uid()
                corpus.series[key].append(series_uid)
                for instance in range(1, count + 1):
                    ids = df.Ids(
                        **{**study.__dict__, "series_uid": series_uid, "sop_uid": df.new_uid()},
                    )
                    ids.series_number, ids.instance_number, ids.modality = (
                        number,
                        instance,
                        modality,
                    )
                    ds = maker(ids)
                    if patient == "D":
                        ds.SpecificCharacterSet = "ISO_IR 192"
                    corpus.sops[key].append(ids.sop_uid)
                    files.append(df.write(ds, root / "in"))
        sent = df.storescu(node, *files)
        assert sent.returncode == 0, sent.stdout
        yield corpus
    finally:
        node.stop()


def findscu(node: RunningNode, out: Path, model: str, *keys: str) -> list[Dataset]:
    """findscu with -X: every response data set written to a file, read back with pydicom."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("rsp*.dcm"):
        old.unlink()
    args = ["findscu", "-v", model, "-X", "-od", out, "-aec", node.ae_title]
    for key in keys:
        args += ["-k", key]
    result = df.dcmtk(*args, "127.0.0.1", node.dicom_port)
    assert result.returncode == 0, result.stdout
    assert "Received Final Find Response (Success)" in result.stdout, result.stdout
    return [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def values(responses: list[Dataset], keyword: str) -> set[str]:
    return {str(r.get(keyword, "")) for r in responses}


def test_patient_level_wildcard_is_case_insensitive_with_counts(
    corpus: Corpus, tmp_path: Path
) -> None:
    rsp = findscu(
        corpus.node, tmp_path, "-P", "QueryRetrieveLevel=PATIENT", "PatientName=smith*",
        "PatientID", "PatientBirthDate", "NumberOfPatientRelatedStudies",
        "NumberOfPatientRelatedInstances",
    )  # fmt: skip
    by_id = {r.PatientID: r for r in rsp}
    assert set(by_id) == {"QR-A", "QR-B"}
    assert (by_id["QR-A"].NumberOfPatientRelatedStudies, by_id["QR-A"].PatientBirthDate) == (
        2,
        "19800101",
    )
    assert by_id["QR-B"].NumberOfPatientRelatedInstances == 3
    for r in rsp:
        assert r.QueryRetrieveLevel == "PATIENT"
        assert r.RetrieveAETitle == "SIMLAB_PACS" and r.InstanceAvailability == "ONLINE"
        assert r.SpecificCharacterSet == "ISO_IR 100"


def test_patient_single_value_and_question_mark(corpus: Corpus, tmp_path: Path) -> None:
    exact = findscu(corpus.node, tmp_path, "-P", "QueryRetrieveLevel=PATIENT",
                    "PatientName=Smith^Anna", "PatientID")  # fmt: skip
    assert values(exact, "PatientID") == {"QR-A"}
    any_one = findscu(corpus.node, tmp_path, "-P", "QueryRetrieveLevel=PATIENT",
                      "PatientID=QR-?")  # fmt: skip
    assert values(any_one, "PatientID") == {"QR-A", "QR-B", "QR-C", "QR-D"}


@pytest.mark.parametrize(
    ("date_key", "expected"),
    [
        ("20240101-20240229", {"A1", "C1", "D1"}),
        ("-20231231", {"B1"}),
        ("20240301-", {"A2"}),
        ("20240115", {"A1"}),
    ],
)
def test_study_level_date_ranges(
    corpus: Corpus, tmp_path: Path, date_key: str, expected: set[str]
) -> None:
    rsp = findscu(corpus.node, tmp_path, "-S", "QueryRetrieveLevel=STUDY",
                  f"StudyDate={date_key}", "StudyInstanceUID", "AccessionNumber")  # fmt: skip
    assert values(rsp, "AccessionNumber") == {f"ACC-{k}" for k in expected}


def test_study_level_time_range_modalities_and_related_counts(
    corpus: Corpus, tmp_path: Path
) -> None:
    by_time = findscu(corpus.node, tmp_path, "-S", "QueryRetrieveLevel=STUDY",
                      "StudyTime=0800-0930", "AccessionNumber")  # fmt: skip
    assert values(by_time, "AccessionNumber") == {"ACC-A1", "ACC-C1"}
    rsp = findscu(
        corpus.node, tmp_path, "-S", "QueryRetrieveLevel=STUDY", "ModalitiesInStudy=OT",
        "PatientID", "StudyInstanceUID", "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances", "StudyDescription",
    )  # fmt: skip
    assert len(rsp) == 1
    (b1,) = rsp
    assert b1.StudyInstanceUID == corpus.studies["B1"].study_uid and b1.PatientID == "QR-B"
    assert list(b1.ModalitiesInStudy) == ["CT", "OT"]
    assert (b1.NumberOfStudyRelatedSeries, b1.NumberOfStudyRelatedInstances) == (2, 3)
    assert b1.StudyDescription == "CT CHEST"


def test_series_level_within_a_study(corpus: Corpus, tmp_path: Path) -> None:
    study = corpus.studies["B1"].study_uid
    rsp = findscu(corpus.node, tmp_path, "-S", "QueryRetrieveLevel=SERIES",
                  f"StudyInstanceUID={study}", "SeriesInstanceUID", "Modality",
                  "SeriesNumber", "NumberOfSeriesRelatedInstances")  # fmt: skip
    assert values(rsp, "SeriesInstanceUID") == set(corpus.series["B1"])
    counts = {r.Modality: r.NumberOfSeriesRelatedInstances for r in rsp}
    assert counts == {"CT": 2, "OT": 1}
    only_sc = findscu(corpus.node, tmp_path, "-S", "QueryRetrieveLevel=SERIES",
                      f"StudyInstanceUID={study}", "Modality=OT", "SeriesNumber")  # fmt: skip
    assert [str(r.SeriesNumber) for r in only_sc] == ["2"]


def test_image_level_uid_list_in_both_models(corpus: Corpus, tmp_path: Path) -> None:
    wanted = corpus.sops["A1"][::2]
    uid_list = "\\".join(wanted)
    rsp = findscu(corpus.node, tmp_path, "-S", "QueryRetrieveLevel=IMAGE",
                  f"StudyInstanceUID={corpus.studies['A1'].study_uid}",
                  f"SOPInstanceUID={uid_list}", "InstanceNumber",
                  "SOPClassUID")  # fmt: skip
    assert values(rsp, "SOPInstanceUID") == set(wanted)
    assert values(rsp, "SOPClassUID") == {CTImageStorage}
    patient_root = findscu(corpus.node, tmp_path, "-P", "QueryRetrieveLevel=IMAGE",
                           "PatientID=QR-C", "SOPInstanceUID")  # fmt: skip
    assert values(patient_root, "SOPInstanceUID") == set(corpus.sops["C1"])


def test_keys_the_pacs_cannot_match_give_pending_ff01(corpus: Corpus) -> None:
    _, assoc = _scu(corpus.node, "FINDSCU", StudyRootQueryRetrieveInformationModelFind)
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientID = "QR-C"
    query.OtherPatientIDs = "LEGACY-7"  # not an attribute this index matches on
    query.StudyInstanceUID = ""
    try:
        answers = list(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))
    finally:
        assoc.release()
    assert [status.Status for status, _ in answers] == [0xFF01, 0x0000]
    assert answers[0][1].StudyInstanceUID == corpus.studies["C1"].study_uid
    df.wait_for_log(corpus.node, r"\(not matched: OtherPatientIDs\) from FINDSCU: 1 match")


def _scu(node: RunningNode, aet: str, *contexts: str) -> tuple[AE, object]:
    ae = AE(aet)
    for uid in contexts:
        ae.add_requested_context(uid)
    assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title=node.ae_title)
    assert assoc.is_established
    return ae, assoc


def test_non_latin_names_come_back_in_utf8(corpus: Corpus) -> None:
    _, assoc = _scu(corpus.node, "FINDSCU", PatientRootQueryRetrieveInformationModelFind)
    query = Dataset()
    query.SpecificCharacterSet = "ISO_IR 192"
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientName = "παπαδοπουλος*"
    query.PatientID = ""
    try:
        rsp = [
            ds
            for status, ds in assoc.send_c_find(query, PatientRootQueryRetrieveInformationModelFind)
            if status.Status == 0xFF00
        ]
    finally:
        assoc.release()
    assert [r.PatientID for r in rsp] == ["QR-D"]
    assert rsp[0].SpecificCharacterSet == "ISO_IR 192"
    assert str(rsp[0].PatientName) == "ΠΑΠΑΔΟΠΟΥΛΟΣ^ΝΙΚΟΣ"


def test_bad_identifiers_are_refused_with_a900(corpus: Corpus) -> None:
    _, assoc = _scu(
        corpus.node,
        "FINDSCU",
        StudyRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelMove,
    )
    try:
        no_level = Dataset()
        no_level.PatientName = "*"
        patient_level = Dataset()
        patient_level.QueryRetrieveLevel = "PATIENT"
        for query, comment in [(no_level, "missing"), (patient_level, "not valid")]:
            ((status, _),) = list(
                assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind)
            )
            assert status.Status == 0xA900 and comment in status.ErrorComment
        bare_move = Dataset()
        bare_move.QueryRetrieveLevel = "STUDY"
        bare_move.StudyInstanceUID = ""
        statuses = [
            s
            for s, _ in assoc.send_c_move(
                bare_move, "FINDSCU", StudyRootQueryRetrieveInformationModelMove
            )
        ]
        assert statuses[-1].Status == 0xA900
        assert "needs StudyInstanceUID" in statuses[-1].ErrorComment
    finally:
        assoc.release()
    df.wait_for_log(corpus.node, r"C-FIND \(identifier not understood\) from FINDSCU: .*0xA900")


# --- C-MOVE and C-GET --------------------------------------------------------------------------


@pytest.fixture
def storescp(corpus: Corpus, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A DCMTK storescp move destination on a free port, registered in the PACS AE table."""
    (port,) = free_ports(1)
    out = tmp_path / "received"
    out.mkdir()
    proc = subprocess.Popen(
        ["storescp", "-aet", "VIEWER_1", "-od", str(out), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while df.dcmtk("echoscu", "-aec", "VIEWER_1", "127.0.0.1", port).returncode != 0:
        assert proc.poll() is None and time.monotonic() < deadline, "storescp did not start"
        time.sleep(0.05)
    corpus.node.admin.put("/ae-table/VIEWER_1", {"host": "127.0.0.1", "port": port})
    try:
        yield "VIEWER_1", out
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def movescu(node: RunningNode, destination: str, study_uid: str) -> subprocess.CompletedProcess:
    return df.dcmtk(
        "movescu", "-d", "-S", "-aec", node.ae_title, "-aem", destination,
        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}",
        "127.0.0.1", node.dicom_port,
    )  # fmt: skip


def test_movescu_to_storescp_delivers_the_study(corpus: Corpus, storescp) -> None:
    destination, out = storescp
    result = movescu(corpus.node, destination, corpus.studies["A1"].study_uid)
    assert re.search(r"DIMSE Status\s+: 0x0000: Success", result.stdout), result.stdout
    received = {dcmread(p).SOPInstanceUID: dcmread(p) for p in out.iterdir()}
    assert set(received) == set(corpus.sops["A1"])
    assert {str(ds.PatientName) for ds in received.values()} == {"SMITH^ANNA"}
    assert all(len(ds.PixelData) == 64 * 64 * 2 for ds in received.values())
    df.wait_for_log(corpus.node, r"C-MOVE STUDY .* to VIEWER_1: 3 sent, 0 failed.* 0x0000")


def test_unknown_move_destination_is_a801(corpus: Corpus) -> None:
    result = movescu(corpus.node, "NOT_IN_TABLE", corpus.studies["C1"].study_uid)
    assert "Refused: MoveDestinationUnknown" in result.stdout
    assert "DIMSE Status                  : 0xa801" in result.stdout
    df.wait_for_log(corpus.node, r"move destination 'NOT_IN_TABLE' is not in the AE table")


def test_unreachable_destination_is_a702_with_every_instance_failed(corpus: Corpus) -> None:
    (dead_port,) = free_ports(1)
    corpus.node.admin.put("/ae-table/VIEWER_OFF", {"host": "127.0.0.1", "port": dead_port})
    result = movescu(corpus.node, "VIEWER_OFF", corpus.studies["A1"].study_uid)
    assert "Refused: OutOfResourcesSubOperations" in result.stdout, result.stdout
    assert "DIMSE Status                  : 0xa702" in result.stdout
    assert "Failed Suboperations          : 3" in result.stdout
    assert "Completed Suboperations       : 0" in result.stdout
    for uid in corpus.sops["A1"]:
        assert uid in result.stdout  # the Failed SOP Instance UID List
    line = df.wait_for_log(corpus.node, r"destination VIEWER_OFF at 127\.0\.0\.1:\d+ unreachable")
    assert "no TCP connection" in line


def test_partial_failure_is_b000_with_the_failed_uid(corpus: Corpus) -> None:
    refused_uid = corpus.sops["A1"][1]

    def handle_store(event):
        return 0xA700 if event.request.AffectedSOPInstanceUID == refused_uid else 0x0000

    (port,) = free_ports(1)
    dest = AE("PICKY_WS")
    dest.add_supported_context(CTImageStorage)
    server = dest.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, handle_store)]
    )
    corpus.node.admin.put("/ae-table/PICKY_WS", {"host": "127.0.0.1", "port": port})
    _, assoc = _scu(corpus.node, "MOVESCU", StudyRootQueryRetrieveInformationModelMove)
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = corpus.studies["A1"].study_uid
    try:
        responses = list(
            assoc.send_c_move(query, "PICKY_WS", StudyRootQueryRetrieveInformationModelMove)
        )
    finally:
        assoc.release()
        server.shutdown()
    final, identifier = responses[-1]
    assert final.Status == 0xB000
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (2, 1)
    assert identifier.FailedSOPInstanceUIDList == refused_uid
    df.wait_for_log(corpus.node, rf"sub-operation C-STORE {refused_uid} to PICKY_WS: 0xA700")


def test_getscu_retrieves_on_the_same_association(corpus: Corpus, tmp_path: Path) -> None:
    result = df.dcmtk(
        "getscu", "-v", "-S", "-aec", corpus.node.ae_title, "-od", tmp_path,
        "-k", "QueryRetrieveLevel=SERIES",
        "-k", f"StudyInstanceUID={corpus.studies['A2'].study_uid}",
        "-k", f"SeriesInstanceUID={corpus.series['A2'][0]}",
        "127.0.0.1", corpus.node.dicom_port,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout
    assert "Number of Completed Suboperations : 2" in result.stdout
    assert "Number of Failed Suboperations    : 0" in result.stdout
    received = {dcmread(p).SOPInstanceUID for p in tmp_path.iterdir()}
    assert received == set(corpus.sops["A2"])
    df.wait_for_log(corpus.node, r"C-GET SERIES \(Study Root\) .* from GETSCU: 2 sent, 0 failed")
