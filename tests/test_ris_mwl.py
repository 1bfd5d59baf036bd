"""The RIS Modality Worklist SCP against DCMTK's findscu -W, and its association policy.

One RIS holds patients named in three character repertoires (German and French names are
Latin-1, Japanese ones are not; Faker with a fixed seed) and orders on several stations, dates
and modalities, one of them cancelled. findscu writes every response to a file (-X), read back
with pydicom, so the assertions see the real bytes and the Specific Character Set.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from faker import Faker
from pydicom import dcmread
from pydicom.dataset import Dataset

from tests.conftest import requires_dcmtk
from tests.dicom_files import dcmtk
from tests.ris_fixtures import RIS_AE, RunningRis, order, register, start_ris

pytestmark = [requires_dcmtk, pytest.mark.dcmtk]


def faker_name(locale: str, seed: int) -> str:
    fake = Faker(locale)
    fake.seed_instance(seed)
    return f"{fake.last_name()}^{fake.first_name()}"


@dataclass
class Worklist:
    ris: RunningRis
    names: dict[str, str]
    """patient ID -> name as registered."""


@pytest.fixture(scope="module")
def worklist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worklist]:
    ris = start_ris(tmp_path_factory.mktemp("ris-mwl"))
    names = {
        "DE1": "Müller^Jürgen",
        "FR1": faker_name("fr_FR", 7),
        "JA1": faker_name("ja_JP", 7),
        "DE2": faker_name("de_DE", 11),
    }
    try:
        for pid, name in names.items():
            register(ris, pid, name)
        order(ris, "DE1")  # ACC000001 CT_1 CT 20261123 0930
        order(ris, "FR1", modality="MR", start_date="20261124", start_time="1400")  # ACC000002
        order(ris, "JA1", start_date="20261125", start_time="0800")  # ACC000003
        cancelled = order(ris, "DE2", modality="US", station_ae="US_1")  # ACC000004
        ris.admin.post(f"/orders/{cancelled['accession']}/cancel")
        yield Worklist(ris, names)
    finally:
        ris.stop()


RETURN_KEYS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyInstanceUID",
    "RequestedProcedureID",
    "RequestedProcedureDescription",
    "ReferringPhysicianName",
)
SPS = "ScheduledProcedureStepSequence[0]"
SPS_KEYS = (
    "ScheduledStationAETitle",
    "Modality",
    "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime",
    "ScheduledProcedureStepID",
    "ScheduledProcedureStepDescription",
    "ScheduledPerformingPhysicianName",
)


def mwl(ris: RunningRis, out: Path, *keys: str, aet: str = "CT_1") -> list[Dataset]:
    """findscu -W -X with the usual return keys plus `keys` (later keys override)."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("rsp*.dcm"):
        old.unlink()
    args: list[object] = ["findscu", "-v", "-W", "-X", "-od", out, "-aet", aet, "-aec", RIS_AE]
    wanted = [*RETURN_KEYS, *(f"{SPS}.{k}" for k in SPS_KEYS), *keys]
    for key in wanted:
        args += ["-k", key]
    result = dcmtk(*args, "127.0.0.1", ris.dicom_port, timeout=30)
    assert result.returncode == 0, result.stdout
    assert "Received Final Find Response (Success)" in result.stdout, result.stdout
    return [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def accessions(responses: list[Dataset]) -> list[str]:
    return sorted(str(r.AccessionNumber) for r in responses)


def test_station_ae_selects_that_stations_scheduled_steps(worklist: Worklist, tmp_path: Path):
    rsp = mwl(worklist.ris, tmp_path, f"{SPS}.ScheduledStationAETitle=CT_1")
    assert accessions(rsp) == ["ACC000001", "ACC000003"]
    first = next(r for r in rsp if r.AccessionNumber == "ACC000001")
    step = first.ScheduledProcedureStepSequence[0]
    assert step.Modality == "CT"
    assert step.ScheduledProcedureStepID == "SPS000001"
    assert step.ScheduledPerformingPhysicianName == "Quinn^Michaela"
    assert first.RequestedProcedureID == "RP000001"
    assert first.StudyInstanceUID == worklist.ris.admin.get("/orders/ACC000001")["study_uid"]
    assert first.ReferringPhysicianName == "House^Gregory"
    line = worklist.ris.admin.get("/log", contains="MWL C-FIND")["lines"][-1]
    assert "ScheduledStationAETitle=CT_1" in line and "2 match(es)" in line


def test_unknown_station_gets_an_empty_worklist(worklist: Worklist, tmp_path: Path):
    assert mwl(worklist.ris, tmp_path, f"{SPS}.ScheduledStationAETitle=CT_9") == []


def test_modality_and_date_range(worklist: Worklist, tmp_path: Path):
    assert accessions(mwl(worklist.ris, tmp_path, f"{SPS}.Modality=MR")) == ["ACC000002"]
    rsp = mwl(worklist.ris, tmp_path, f"{SPS}.ScheduledProcedureStepStartDate=20261123-20261124")
    assert accessions(rsp) == ["ACC000001", "ACC000002"]  # the cancelled US order is not shown
    rsp = mwl(worklist.ris, tmp_path, f"{SPS}.ScheduledProcedureStepStartDate=20261125-")
    assert accessions(rsp) == ["ACC000003"]
    rsp = mwl(
        worklist.ris,
        tmp_path,
        f"{SPS}.ScheduledProcedureStepStartDate=20261123",
        f"{SPS}.ScheduledProcedureStepStartTime=0900-1000",
    )
    assert accessions(rsp) == ["ACC000001"]


def test_accession_patient_id_and_name_wildcard(worklist: Worklist, tmp_path: Path):
    assert accessions(mwl(worklist.ris, tmp_path, "AccessionNumber=ACC000002")) == ["ACC000002"]
    assert accessions(mwl(worklist.ris, tmp_path, "PatientID=JA1")) == ["ACC000003"]
    rsp = mwl(worklist.ris, tmp_path, "SpecificCharacterSet=ISO_IR 192", "PatientName=mül*")
    assert accessions(rsp) == ["ACC000001"]
    assert accessions(mwl(worklist.ris, tmp_path, "AccessionNumber=ACC000004")) == []


def test_latin1_names_are_sent_iso_ir_100_and_others_utf8(worklist: Worklist, tmp_path: Path):
    rsp = mwl(worklist.ris, tmp_path)
    by_id = {r.PatientID: r for r in rsp}
    assert set(by_id) == {"DE1", "FR1", "JA1"}
    for pid, ds in by_id.items():
        name = worklist.names[pid]
        try:
            name.encode("latin-1")
            expected = "ISO_IR 100"
        except UnicodeEncodeError:
            expected = "ISO_IR 192"
        assert ds.SpecificCharacterSet == expected, pid
        assert str(ds.PatientName) == name, pid
    assert by_id["JA1"].SpecificCharacterSet == "ISO_IR 192"
    raw = (tmp_path / "rsp0001.dcm").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("rsp*.dcm")
    )
    assert "Müller".encode("latin-1") in raw  # Latin-1 bytes on the wire, not UTF-8
    assert worklist.names["JA1"].split("^")[0].encode("utf-8") in raw


def test_wrong_called_ae_and_unknown_calling_ae_are_rejected(worklist: Worklist):
    ris = worklist.ris
    result = dcmtk(
        "echoscu", "-v", "-aet", "CT_1", "-aec", "SIMLAB_PACS", "127.0.0.1", ris.dicom_port
    )
    assert result.returncode != 0
    assert "Reason: Called AE Title Not Recognized" in result.stdout, result.stdout
    result = dcmtk("echoscu", "-v", "-aet", "CT_ROOM9", "-aec", RIS_AE, "127.0.0.1", ris.dicom_port)
    assert "Reason: Calling AE Title Not Recognized" in result.stdout, result.stdout
    lines = "\n".join(ris.admin.get("/log", contains="association rejected")["lines"])
    assert "reason 7" in lines and "reason 3" in lines
    result = dcmtk("echoscu", "-aet", "CT_1", "-aec", RIS_AE, "127.0.0.1", ris.dicom_port)
    assert result.returncode == 0, result.stdout


def test_admin_worklist_view_matches_the_mwl(worklist: Worklist):
    view = worklist.ris.admin.get("/worklist", station="CT_1", date="20261123")
    assert [item["accession"] for item in view] == ["ACC000001"]
    assert len(worklist.ris.admin.get("/worklist")) == 3
