"""Storage Commitment from the modality's side: reports on a new association, and failures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fake_modalities.node.commitment import transaction_uid
from simlab.common.modality_config import ModalityConfig
from simlab.runtime.topology import default_department
from tests.conftest import RunningNode, requires_dcmtk, start_pacs
from tests.modality_fixtures import RunningModality, pacs_destination, poll, start_modality

pytestmark = [requires_dcmtk, pytest.mark.dcmtk]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[RunningNode, RunningModality]]:
    pacs = start_pacs(tmp_path / "pacs")
    modality = None
    try:
        modality = start_modality(tmp_path / "ct-1", pacs_destination(pacs), pacs=pacs)
        yield pacs, modality
    finally:
        if modality is not None:
            modality.stop()
        pacs.stop()


def _scanned(modality: RunningModality, accession: str) -> dict:
    proc = modality.admin.post(
        "/patients/unscheduled",
        {
            "patient_id": f"MRN-{accession}",
            "patient_name": "COMMIT^TEST",
            "accession_number": accession,
        },
    )
    modality.admin.post("/procedures/start", {"procedure_id": proc["id"]})
    modality.admin.post(f"/procedures/{proc['id']}/acquire")
    return proc


def _reported(modality: RunningModality, proc_id: str) -> dict:
    def check() -> dict | None:
        commits = modality.admin.get(f"/procedures/{proc_id}")["commitments"]
        done = [c for c in commits if c["state"] not in ("requested", "waiting")]
        return done[0] if done else None

    return poll(check, 20, f"a storage commitment report for {proc_id}")


def test_report_on_a_new_association_reaches_the_modality_listener(lab) -> None:
    pacs, modality = lab
    pacs.admin.patch(
        "/config", {"storage_commitment": {"report_association": "new", "report_delay": 0.5}}
    )
    proc = _scanned(modality, "ACC-NEW")
    modality.wait_queue("sent", 4)
    modality.admin.post(f"/procedures/{proc['id']}/complete")
    commitment = _reported(modality, proc["id"])
    assert commitment["state"] == "committed"
    assert commitment["how"] == "new association"
    assert list(commitment["instances"].values()) == ["committed"] * 4
    assert f"association from {pacs.ae_title}@127.0.0.1" in modality.log_text()
    assert modality.admin.get("/stats")["commitments"] == {"committed": 1}


def test_objects_the_pacs_lost_are_reported_failed_per_instance(lab) -> None:
    pacs, modality = lab
    proc = _scanned(modality, "ACC-LOST")
    modality.wait_queue("sent", 4)
    (study,) = pacs.admin.get("/studies")
    pacs.admin.delete(f"/studies/{study['study_uid']}")
    modality.admin.post(f"/procedures/{proc['id']}/complete")
    commitment = _reported(modality, proc["id"])
    assert commitment["state"] == "failures"
    assert commitment["how"] == "same association"
    assert set(commitment["failures"].values()) == {"0x0112 No such SOP Instance"}
    assert set(commitment["instances"].values()) == {"failed"}
    assert "0 committed, 4 failed: 0x0112 No such SOP Instance" in modality.log_text()


@pytest.mark.timeout(30)
def test_transaction_uids_are_seeded_and_unique_across_the_department() -> None:
    """Every modality has its P0001 and the department one seed: two modalities asking at once
    with one Transaction UID got 0x0131 Duplicate transaction UID (seen in simulate-day)."""
    ports = iter(range(20000, 21000))
    specs = default_department(lambda n: [next(ports) for _ in range(n)])
    configs = [s.config for s in specs if isinstance(s.config, ModalityConfig)]
    assert len(configs) >= 2 and len({c.seed for c in configs}) == 1
    uids = {transaction_uid(c, "P0001", 1) for c in configs}
    assert len(uids) == len(configs)
    assert transaction_uid(configs[0], "P0001", 1) == transaction_uid(configs[0], "P0001", 1)
    assert transaction_uid(configs[0], "P0001", 2) not in uids
