"""Storage faults: inject → storescu gets 0xA700 from the PACS → revert → the object is stored."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from simlab.common.viewer_config import VIEWER_AE_TITLE
from simlab.faults.base import FaultError
from simlab.faults.manager import FaultManager
from simlab.runtime.lab import Lab
from simlab.runtime.topology import ADMIN_WORKSTATION_AE
from tests import dicom_files as df
from tests.conftest import requires_dcmtk
from tests.lab_fixtures import fault_lab, faults  # noqa: F401 (fixtures)
from tests.polling import poll

pytestmark = [requires_dcmtk]


def pacs_entry(lab: Lab):
    return next(n for n in lab.manifest.nodes if n.node_id == "pacs")


def store_one(lab: Lab, directory: Path, accession: str) -> tuple[str, str]:
    """storescu one CT image from the admin workstation; (DCMTK output, study UID)."""
    ids, paths = df.study_files(directory, count=1, ids=df.Ids(accession=accession))
    result = df.storescu(pacs_entry(lab), *paths, aet=ADMIN_WORKSTATION_AE)
    return result.stdout, ids.study_uid


def pacs_log(lab: Lab) -> str:
    return lab.paths.log("pacs").read_text(encoding="utf-8", errors="replace")


@pytest.mark.timeout(60)
def test_quota_reached_refuses_with_a700_and_revert_stores(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
    tmp_path: Path,
) -> None:
    faults.inject("q1", "quota_reached", {})
    output, study_uid = store_one(fault_lab, tmp_path / "a", "ACC-QUOTA1")
    assert "Received Store Response (Refused: OutOfResources)" in output, output
    assert "0xA700 Refused: Out of resources (quota" in pacs_log(fault_lab)
    assert fault_lab.client("pacs").get("/studies", accession="ACC-QUOTA1") == []

    faults.revert("q1")
    assert fault_lab.client("pacs").get("/config")["storage"]["quota_bytes"] is None
    output, study_uid = store_one(fault_lab, tmp_path / "b", "ACC-QUOTA2")
    assert fault_lab.client("pacs").get(f"/studies/{study_uid}")["instance_count"] == 1, output


@pytest.mark.timeout(90)
def test_disk_full_is_a_real_enospc_a700_and_revert_unmounts(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
    tmp_path: Path,
) -> None:
    pacs = fault_lab.client("pacs")
    before = pacs.get("/stats")
    try:
        faults.inject("d1", "disk_full", {"size_kb": 1024})
    except FaultError as exc:
        pytest.skip(str(exc))
    volume = fault_lab.paths.root / "volumes" / "pacs-storage"
    assert volume.is_mount()
    stats = pacs.get("/stats")
    assert stats["objects_dir"] == str(volume)
    assert stats["disk_free_bytes"] == 0, stats

    output, study_uid = store_one(fault_lab, tmp_path / "a", "ACC-ENOSPC1")
    assert "Received Store Response (Refused: OutOfResources)" in output, output
    poll(
        lambda: pacs_log(fault_lab),
        lambda text: "0xA700 Refused: Out of resources (disk full: No space left on device" in text,
        10,
        "the PACS to log the ENOSPC",
    )
    assert pacs.get("/studies", accession="ACC-ENOSPC1") == []
    assert not list((volume / ".incoming").glob("*.part")), "a half file was left behind"

    faults.revert("d1")
    assert not volume.exists() or not volume.is_mount()
    assert pacs.get("/stats")["objects_dir"] == before["objects_dir"]
    output, study_uid = store_one(fault_lab, tmp_path / "b", "ACC-ENOSPC2")
    assert pacs.get(f"/studies/{study_uid}")["instance_count"] == 1, output


def movescu_to_viewer(lab: Lab, study_uid: str) -> str:
    pacs = pacs_entry(lab)
    return df.dcmtk(
        "movescu", "-d", "-S", "-aet", ADMIN_WORKSTATION_AE, "-aec", pacs.ae_title,
        "-aem", VIEWER_AE_TITLE, "-k", "QueryRetrieveLevel=STUDY",
        "-k", f"StudyInstanceUID={study_uid}", "127.0.0.1", pacs.dicom_port,
    ).stdout  # fmt: skip


@pytest.mark.timeout(90)
def test_archive_tier_offline_fails_the_retrieve_a702_and_revert_brings_it_back(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
    tmp_path: Path,
) -> None:
    pacs = fault_lab.client("pacs")
    ids, paths = df.study_files(tmp_path, count=2, ids=df.Ids(accession="ACC-TIER1"))
    assert df.storescu(pacs_entry(fault_lab), *paths, aet=ADMIN_WORKSTATION_AE).returncode == 0
    try:
        faults.inject("t1", "archive_tier_offline", {"study_uids": [ids.study_uid]})
    except FaultError as exc:
        pytest.skip(str(exc))
    tier = fault_lab.paths.root / "volumes" / "pacs-archive-tier"
    dirs = {d["path"]: d for d in pacs.get("/stats")["storage_dirs"]}
    assert dirs[str(tier)]["instances"] == 2 and dirs[str(tier)]["online"] is False, dirs

    output = movescu_to_viewer(fault_lab, ids.study_uid)
    assert "DIMSE Status                  : 0xa702" in output, output
    assert "Failed Suboperations          : 2" in output
    assert "retrieve: cannot read" in pacs_log(fault_lab)
    assert pacs.get(f"/studies/{ids.study_uid}")["instance_count"] == 2  # the index still knows

    faults.revert("t1")
    assert not tier.exists() or not tier.is_mount()
    dirs = {d["path"]: d for d in pacs.get("/stats")["storage_dirs"]}
    assert str(tier) not in dirs
    output = movescu_to_viewer(fault_lab, ids.study_uid)
    assert re.search(r"DIMSE Status\s+: 0x0000: Success", output), output
