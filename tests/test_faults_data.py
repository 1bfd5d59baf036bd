"""Data faults: inject → the images are stored (0x0000) but the PACS study is wrong → the PACS
admin's study edit/split fixes what arrived → revert → new images are right again.

The CR modality is used (one image a procedure) to keep the file fast; the faults' defaults name
the CT, any modality behaves the same.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from pydicom import dcmread

from fake_modalities.node import tag_settings
from simlab.client.admin import AdminApiError
from simlab.common.modality_config import AcquisitionSettings
from simlab.common.safe_paths import fanned_path
from simlab.faults.manager import FaultManager
from simlab.runtime.lab import Lab
from tests import dicom_files as df
from tests.conftest import requires_dcmtk
from tests.lab_fixtures import fault_lab, faults  # noqa: F401 (fixtures)
from tests.polling import poll

pytestmark = [requires_dcmtk]

NODE = "cr-1"


def sent(lab: Lab, proc_id: str) -> dict[str, Any]:
    """Wait until every image of the procedure is sent (stored with 0x0000); the procedure."""
    client = lab.client(NODE)
    return poll(
        lambda: client.get(f"/procedures/{proc_id}"),
        lambda p: (
            p["series"] and p["queue"].get("sent") == sum(len(s["instances"]) for s in p["series"])
        ),
        30,
        "the modality to send every image",
    )


def scan_by_hand(lab: Lab, patient_id: str, name: str, accession: str) -> dict[str, Any]:
    """Key a patient at the modality, start, acquire; wait until sent; the procedure."""
    client = lab.client(NODE)
    proc = client.post(
        "/patients/unscheduled",
        {"patient_id": patient_id, "patient_name": name, "accession_number": accession},
    )
    client.post("/procedures/start", {"procedure_id": proc["id"]})
    client.post(f"/procedures/{proc['id']}/acquire")
    return sent(lab, proc["id"])


def one_study(lab: Lab, **query: str) -> dict[str, Any]:
    studies = lab.client("pacs").get("/studies", **query)
    assert len(studies) == 1, studies
    return studies[0]


def stored_file(lab: Lab, sop_uid: str) -> Path:
    """Where the PACS archived an instance (default storage directory)."""
    return fanned_path(lab.paths.node_dir("pacs") / "data" / "objects", sop_uid, ".dcm")


def pacs_log(lab: Lab) -> str:
    return lab.paths.log("pacs").read_text(encoding="utf-8", errors="replace")


@pytest.mark.timeout(90)
def test_patient_id_corrupted_study_does_not_reconcile_with_the_order(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    ris, cr, pacs = (fault_lab.client(n, timeout=30) for n in ("ris", NODE, "pacs"))
    patient = ris.post("/patients", {"name": "DATA^ONE", "birth_date": "19600101", "sex": "M"})
    order = ris.post(
        "/orders",
        {
            "patient_id": patient["patient_id"],
            "modality": "CR",
            "start_date": datetime.date.today().strftime("%Y%m%d"),
            "start_time": "080000",
            "procedure_code": "CHEST",
            "procedure_meaning": "Chest PA",
        },
    )
    accession = order["accession"]
    pacs_order = poll(
        lambda: [o for o in pacs.get("/orders") if o["accession"] == accession],
        bool,
        30,
        "the ORM to reach the PACS",
    )[0]
    faults.inject("d1", "patient_id_corrupted", {"node": NODE})
    cr.post("/worklist/query", {})
    proc = cr.post("/procedures/start", {"accession_number": accession})
    cr.post(f"/procedures/{proc['id']}/acquire")
    sent(fault_lab, proc["id"])  # every image 0x0000: the modality sees nothing wrong

    study = one_study(fault_lab, accession=accession)
    assert study["patient_id"] == "" != pacs_order["patient_id"] == patient["patient_id"]
    assert pacs.get("/studies", patient_id=patient["patient_id"]) == []

    # The PACS admin reconciles the study with the order: files and index rewritten.
    fixed = pacs.patch(f"/studies/{study['study_uid']}", {"PatientID": patient["patient_id"]})
    assert fixed["study"]["patient_id"] == patient["patient_id"]
    assert one_study(fault_lab, patient_id=patient["patient_id"])["study_uid"] == study["study_uid"]
    detail = pacs.get(f"/studies/{study['study_uid']}")
    files = [i["file_patient_id"] for s in detail["series"] for i in s["instances"]]
    assert files == [patient["patient_id"]] and detail["mixed_patients"] is False

    faults.revert("d1")
    assert cr.get("/config")["acquisition"]["tag_overrides"] == {}
    again = scan_by_hand(fault_lab, "MRN-D1B", "DATA^ONEB", "ACC-D1B")
    assert one_study(fault_lab, accession="ACC-D1B")["patient_id"] == "MRN-D1B", again["id"]


@pytest.mark.timeout(60)
def test_accession_corrupted_study_matches_no_order(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    pacs = fault_lab.client("pacs")
    faults.inject("d2", "accession_corrupted", {"node": NODE, "accession_number": "0000"})
    scan_by_hand(fault_lab, "MRN-D2", "DATA^TWO", "ACC-D2")
    assert pacs.get("/studies", accession="ACC-D2") == []
    study = one_study(fault_lab, patient_id="MRN-D2")
    assert study["accession"] == "0000"

    pacs.patch(f"/studies/{study['study_uid']}", {"AccessionNumber": "ACC-D2"})
    assert one_study(fault_lab, accession="ACC-D2")["study_uid"] == study["study_uid"]

    faults.revert("d2")
    scan_by_hand(fault_lab, "MRN-D2B", "DATA^TWOB", "ACC-D2B")
    assert one_study(fault_lab, accession="ACC-D2B")["patient_id"] == "MRN-D2B"


@pytest.mark.timeout(60)
def test_study_uid_reused_mixes_two_patients_and_split_separates_them(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    pacs = fault_lab.client("pacs")
    faults.inject("d3", "study_uid_reused", {"node": NODE})
    uid = next(r for r in faults.active() if r.fault_id == "d3").state["study_instance_uid"]
    scan_by_hand(fault_lab, "MRN-D3A", "FIRST^PATIENT", "ACC-D3A")
    second = scan_by_hand(fault_lab, "MRN-D3B", "SECOND^PATIENT", "ACC-D3B")

    study = pacs.get(f"/studies/{uid}")
    assert study["patient_id"] == "MRN-D3A"
    assert study["mixed_patients"] is True
    assert study["file_patient_ids"] == ["MRN-D3A", "MRN-D3B"]
    assert pacs.get("/studies", patient_id="MRN-D3B") == []
    assert f"DATA CONFLICT: study {uid} belongs to patient MRN-D3A" in pacs_log(fault_lab)

    split = pacs.post(
        f"/studies/{uid}/split",
        {
            "series": [s["series_uid"] for s in second["series"]],
            "PatientID": "MRN-D3B",
            "PatientName": "SECOND^PATIENT",
            "AccessionNumber": "ACC-D3B",
        },
    )
    assert split["study"]["patient_id"] == "MRN-D3B" and split["study_uid"] != uid
    assert pacs.get(f"/studies/{uid}")["mixed_patients"] is False
    assert one_study(fault_lab, patient_id="MRN-D3B")["accession"] == "ACC-D3B"

    faults.revert("d3")
    assert (
        "StudyInstanceUID"
        not in fault_lab.client(NODE).get("/config")["acquisition"]["tag_overrides"]
    )


@pytest.mark.timeout(60)
def test_wrong_character_set_garbles_names_and_edit_fixes_them(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    pacs = fault_lab.client("pacs")
    faults.inject("d4", "wrong_character_set", {"node": NODE})
    scan_by_hand(fault_lab, "MRN-D4", "Müller^Anna", "ACC-D4")
    study = one_study(fault_lab, accession="ACC-D4")
    assert study["patient_name"] == "MÃ¼ller^Anna"  # UTF-8 bytes read as ISO_IR 100

    fixed = pacs.patch(f"/studies/{study['study_uid']}", {"PatientName": "Müller^Anna"})
    assert fixed["study"]["patient_name"] == "Müller^Anna"
    names = {i["file_patient_name"] for s in fixed["study"]["series"] for i in s["instances"]}
    assert names == {"Müller^Anna"}

    for sop_uid in {i["sop_uid"] for s in fixed["study"]["series"] for i in s["instances"]}:
        ds = dcmread(stored_file(fault_lab, sop_uid))  # the file itself was rewritten
        assert str(ds.PatientName) == "Müller^Anna"
        assert ds.SpecificCharacterSet == "ISO_IR 100"

    faults.revert("d4")
    scan_by_hand(fault_lab, "MRN-D4B", "Müller^Bert", "ACC-D4B")
    assert one_study(fault_lab, accession="ACC-D4B")["patient_name"] == "Müller^Bert"


@pytest.mark.timeout(60)
def test_study_edit_refuses_what_would_corrupt_and_delete_exists(
    fault_lab: Lab,  # noqa: F811
) -> None:
    pacs = fault_lab.client("pacs")
    scan_by_hand(fault_lab, "MRN-D5", "DATA^FIVE", "ACC-D5")
    study = one_study(fault_lab, accession="ACC-D5")
    uid = study["study_uid"]
    for body, status in (
        ({"PatientID": ""}, 400),
        ({"SOPInstanceUID": "1.2.3"}, 400),
        ({"PatientBirthDate": "1.1.1960"}, 400),
        ({"AccessionNumber": "A" * 17}, 400),
        ({}, 400),
    ):
        with pytest.raises(AdminApiError) as refused:
            pacs.patch(f"/studies/{uid}", body)
        assert refused.value.status == status, (body, refused.value)
    with pytest.raises(AdminApiError) as refused:
        pacs.patch("/studies/1.2.3.4", {"AccessionNumber": "X"})
    assert refused.value.status == 404
    only_series = [s["series_uid"] for s in pacs.get(f"/studies/{uid}")["series"]]
    with pytest.raises(AdminApiError) as refused:
        pacs.post(f"/studies/{uid}/split", {"series": only_series, "PatientID": "X"})
    assert refused.value.status == 400 and "at least one series" in refused.value.message
    assert pacs.get(f"/studies/{uid}")["accession"] == "ACC-D5"  # nothing changed

    sop_uid = pacs.get(f"/studies/{uid}")["series"][0]["instances"][0]["sop_uid"]
    assert pacs.delete(f"/studies/{uid}")["instances"] == 1
    assert not stored_file(fault_lab, sop_uid).exists()
    with pytest.raises(AdminApiError) as gone:
        pacs.get(f"/studies/{uid}")
    assert gone.value.status == 404


@pytest.mark.parametrize(
    ("mode", "declared", "raw"),
    [
        ("auto", "ISO_IR 100", "Müller^Anna".encode("latin-1")),
        ("utf8_as_latin1", "ISO_IR 100", "Müller^Anna".encode()),
        ("latin1_as_utf8", "ISO_IR 192", "Müller^Anna".encode("latin-1")),
        ("latin1_undeclared", None, "Müller^Anna".encode("latin-1")),
    ],
)
def test_character_set_modes_write_the_bytes_they_declare_or_not(
    mode: str, declared: str | None, raw: bytes, tmp_path: Path
) -> None:
    """The modality setting at the byte level; overrides keep the attribute (Type 2, empty)."""
    ds = df.ct(df.Ids(patient_name="Müller^Anna"))
    ds.SpecificCharacterSet = "ISO_IR 100"
    settings = AcquisitionSettings(character_set_mode=mode, tag_overrides={"PatientID": ""})
    tag_settings.apply(ds, settings)
    path = df.write(ds, tmp_path)
    back = dcmread(path, stop_before_pixels=True)
    assert back.get("SpecificCharacterSet") == declared
    assert "PatientID" in back and back.PatientID == ""
    assert raw in path.read_bytes()


def test_tag_overrides_accept_only_identification_attributes() -> None:
    with pytest.raises(ValidationError, match="cannot be overridden"):
        AcquisitionSettings(tag_overrides={"Modality": "MR"})
    with pytest.raises(ValidationError, match="not a valid UID"):
        AcquisitionSettings(tag_overrides={"StudyInstanceUID": "1.2.03"})
