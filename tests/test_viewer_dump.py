"""The viewer's tag viewer: `GET /instances/{sop_uid}/dump`, the same dcmdump-like lines as the
PACS's, for an instance the viewer retrieved; the file is found through the viewer's own index,
never built from the UID in the URL.

A real department lab (module-scoped): the CT acquires a study, the PACS archives it, the viewer
opens it through its admin API (`POST /studies/open`, C-FIND then C-MOVE), then the dump is read.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simlab.client.admin import AdminApiError, AdminClient, path_part
from simlab.nodes.viewer.store import ViewerStore
from simlab.runtime.lab import Lab
from tests.lab_fixtures import running_lab
from tests.polling import poll

ACCESSION = "ACCDUMP1"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "viewerdump") as lab:
        yield lab


@pytest.fixture(scope="module")
def opened(lab: Lab) -> dict[str, Any]:
    """The study acquired on the CT, archived by the PACS and opened on the viewer."""
    ct = lab.client("ct-1")
    proc = ct.post(
        "/patients/unscheduled",
        {"patient_id": "MRN-DUMP", "patient_name": "ÅSTRÖM^EVA", "accession_number": ACCESSION},
    )
    ct.post("/procedures/start", {"procedure_id": proc["id"]})
    ct.post(f"/procedures/{proc['id']}/acquire", {})
    pacs = lab.client("pacs")
    study = poll(
        lambda: pacs.get("/studies", accession=ACCESSION),
        lambda s: bool(s) and s[0]["instance_count"] >= 1,
        60,
        f"the PACS to hold {ACCESSION}",
    )[0]
    viewer = lab.client("viewer", timeout=60)
    answer = viewer.post("/studies/open", {"accession": ACCESSION})
    assert answer["ok"] is True, answer
    detail = viewer.get(f"/studies/{study['study_uid']}")
    assert detail["instance_list"], detail
    return {"study": study, "viewer": detail}


def viewer_client(lab: Lab) -> AdminClient:
    return lab.client("viewer", timeout=30)


@pytest.mark.timeout(180)
def test_dump_of_a_retrieved_instance_matches_the_pacs(lab: Lab, opened: dict[str, Any]) -> None:
    sop_uid = opened["viewer"]["instance_list"][0]["sop_uid"]
    dump = viewer_client(lab).get(f"/instances/{path_part(sop_uid)}/dump")
    assert dump["sop_uid"] == sop_uid
    lines = dump["lines"]
    assert lines[0] == "# File Meta Information"
    assert "# Dataset (pixel data not shown)" in lines
    assert f"(0008,0018) UI [{sop_uid}]  # SOPInstanceUID" in lines
    assert f"(0008,0050) SH [{ACCESSION}]  # AccessionNumber" in lines
    assert "(0010,0010) PN [ÅSTRÖM^EVA]  # PatientName" in lines
    assert "(0010,0020) LO [MRN-DUMP]  # PatientID" in lines
    assert not any(line.startswith("(7FE0,0010)") for line in lines)
    # the same formatter as the PACS: the dataset part is line for line the archive's
    # (the file meta differs: each node writes its own Source AE / implementation)
    pacs_lines = lab.client("pacs").get(f"/instances/{path_part(sop_uid)}/dump")["lines"]
    start = lines.index("# Dataset (pixel data not shown)")
    pacs_start = pacs_lines.index("# Dataset (pixel data not shown)")
    assert lines[start:] == pacs_lines[pacs_start:]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "uid",
    [
        "1.2.3.4.5.6",
        "../etc/passwd",
        "../../../../../../etc/passwd",
        "..",
        "%2e%2e%2fetc%2fpasswd",
    ],
)
def test_dump_of_an_instance_the_viewer_does_not_hold_is_404(lab: Lab, uid: str) -> None:
    with pytest.raises(AdminApiError) as err:
        viewer_client(lab).get(f"/instances/{path_part(uid)}/dump")
    assert err.value.status == 404, err.value
    assert "no instance" in err.value.message


@pytest.mark.timeout(60)
def test_dump_with_a_raw_traversal_path_never_reads_outside(lab: Lab) -> None:
    with pytest.raises(AdminApiError) as err:
        viewer_client(lab).get("/instances/../../etc/passwd/dump")
    assert err.value.status == 404, err.value


def test_store_file_of_ignores_an_index_row_pointing_outside(tmp_path: Path) -> None:
    """Even a tampered index row cannot make the viewer read a file outside its objects."""
    store = ViewerStore(tmp_path / "data")
    store.open()
    try:
        secret = tmp_path / "secret.dcm"
        secret.write_bytes(b"not for you")
        db = sqlite3.connect(tmp_path / "data" / "viewer.sqlite")
        db.execute(
            "INSERT INTO instances (sop_uid, series_uid, study_uid, sop_class, transfer_syntax,"
            " path, size, received_at) VALUES ('9.9.9', '9.9', '9', '1.2', '1.2', ?, 11, 0)",
            ("../../secret.dcm",),
        )
        db.commit()
        db.close()
        assert (store.objects_dir / "../../secret.dcm").resolve() == secret.resolve()
        assert store.file_of("9.9.9") is None
        assert store.file_of("../../secret.dcm") is None
    finally:
        store.close()
