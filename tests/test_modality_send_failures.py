"""Send failures as a technologist sees them, with the real codes, and their recovery.

A full PACS answers C-STORE 0xA700 per image; a wrong called AE is rejected 1/1/7; a PACS that
does not know the modality rejects 1/1/3; a SOP class the PACS refuses shows as a rejected
presentation context. After the fix, the operator's retry delivers; a restart keeps the queue.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from simlab.common.config import RemoteAe
from tests.conftest import RunningNode, requires_dcmtk, start_pacs
from tests.modality_fixtures import RunningModality, pacs_destination, poll, start_modality

pytestmark = [requires_dcmtk, pytest.mark.dcmtk]


@pytest.fixture
def pacs(tmp_path: Path) -> Iterator[RunningNode]:
    node = start_pacs(tmp_path / "pacs")
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def modality(tmp_path: Path, pacs: RunningNode) -> Iterator[RunningModality]:
    node = start_modality(tmp_path / "ct-1", pacs_destination(pacs), pacs=pacs)
    try:
        yield node
    finally:
        node.stop()


def _scan(modality: RunningModality, patient_id: str = "MRN7", accession: str = "ACC7") -> dict:
    """Key a patient by hand (no worklist), start, acquire: 4 images queued."""
    proc = modality.admin.post(
        "/patients/unscheduled",
        {"patient_id": patient_id, "patient_name": "TEST^PAT", "accession_number": accession},
    )
    modality.admin.post("/procedures/start", {"procedure_id": proc["id"]})
    return modality.admin.post(f"/procedures/{proc['id']}/acquire")["procedure"]


def _study_count(pacs: RunningNode) -> int:
    return len(pacs.admin.get("/studies"))


def test_full_archive_shows_0xA700_per_image_and_retry_delivers(
    pacs: RunningNode, modality: RunningModality
) -> None:
    pacs.admin.patch("/config", {"storage": {"quota_bytes": 0}})
    proc = _scan(modality)
    queue = modality.wait_queue("failed", 4)
    assert {i["status"] for i in queue["items"]} == {"0xA700"}
    assert {i["reason"] for i in queue["items"]} == {"0xA700 Refused: Out of resources"}
    view = modality.admin.get(f"/procedures/{proc['id']}")
    assert view["send_summary"] == "4 images failed: 0xA700 Refused: Out of resources"
    assert "4 images failed: 0xA700 Refused: Out of resources" in modality.log_text()
    assert _study_count(pacs) == 0

    pacs.admin.patch("/config", {"storage": {"quota_bytes": None}})
    assert modality.admin.post("/queue/retry", {})["retried"] == 4
    queue = modality.wait_queue("sent", 4)
    assert {i["status"] for i in queue["items"]} == {"0x0000"}
    assert _study_count(pacs) == 1


def test_wrong_called_ae_is_rejected_1_1_7_and_a_restart_keeps_the_queue(
    pacs: RunningNode, modality: RunningModality
) -> None:
    modality.admin.patch("/config", {"destination": {"ae_title": "PACS_TYPO"}})
    _scan(modality)
    queue = modality.wait_queue("failed", 4)
    reasons = {i["reason"] for i in queue["items"]}
    assert reasons == {"association rejected: called AE title not recognised (1/1/7)"}
    assert {i["status"] for i in queue["items"]} == {None}

    modality.restart()
    assert modality.queue()["counts"]["failed"] == 4
    assert modality.config.destination.ae_title == "PACS_TYPO", "PATCH was not persisted"

    modality.admin.patch("/config", {"destination": {"ae_title": pacs.ae_title}})
    modality.admin.post("/queue/retry", {})
    modality.wait_queue("sent", 4)
    assert _study_count(pacs) == 1


def test_unknown_calling_ae_and_refused_sop_class(
    pacs: RunningNode, modality: RunningModality
) -> None:
    pacs.admin.delete(f"/ae-table/{modality.ae_title}")
    _scan(modality)
    queue = modality.wait_queue("failed", 4)
    assert {i["reason"] for i in queue["items"]} == {
        "association rejected: calling AE title not recognised (1/1/3)"
    }
    pacs.admin.put(
        f"/ae-table/{modality.ae_title}", {"host": "127.0.0.1", "port": modality.dicom_port}
    )
    pacs.admin.patch("/config", {"rejected_sop_classes": ["CTImageStorage"]})
    modality.admin.post("/queue/retry", {})
    queue = modality.wait_queue("failed", 4)
    (reason,) = {i["reason"] for i in queue["items"]}
    assert reason.startswith("no presentation context accepted for CT Image Storage"), reason
    assert "abstract syntax not supported" in reason

    item = queue["items"][0]["id"]
    modality.admin.delete(f"/queue/{item}")
    assert modality.queue()["counts"]["failed"] == 3


def test_connection_refused_is_retried_with_backoff(tmp_path: Path, pacs: RunningNode) -> None:
    wrong_port = RemoteAe(ae_title=pacs.ae_title, host="127.0.0.1", port=1)
    modality = start_modality(
        tmp_path / "ct-2",
        wrong_port,
        pacs=pacs,
        send_queue={"max_attempts": 3, "backoff_initial": 0.2, "poll_interval": 0.05},
    )
    try:
        _scan(modality)
        queue = modality.wait_queue("failed", 4)
        poll(
            lambda: {i["attempts"] for i in modality.queue()["items"]} == {3},
            15,
            "three attempts per image",
        )
        queue = modality.queue()
        assert all(i["next_attempt"] is None for i in queue["items"])
        assert queue["items"][0]["reason"].startswith("cannot connect to 127.0.0.1:1")
        modality.admin.patch("/config", {"destination": {"port": pacs.dicom_port}})
        modality.admin.post("/queue/retry", {})
        modality.wait_queue("sent", 4)
    finally:
        modality.stop()


def test_transfer_syntax_the_pacs_does_not_accept(tmp_path: Path, pacs: RunningNode) -> None:
    rle = "1.2.840.10008.1.2.5"
    accepted = pacs.admin.get("/config")["accepted_transfer_syntaxes"]
    pacs.admin.patch("/config", {"accepted_transfer_syntaxes": [t for t in accepted if t != rle]})
    modality = start_modality(
        tmp_path / "ct-rle",
        pacs_destination(pacs),
        pacs=pacs,
        acquisition={"images_per_series": 4, "rows": 64, "columns": 64, "transfer_syntax": rle},
    )
    try:
        _scan(modality)
        queue = modality.wait_queue("failed", 4)
        assert {i["reason"] for i in queue["items"]} == {
            "no presentation context accepted for CT Image Storage "
            "(transfer syntaxes not supported)"
        }
        pacs.admin.patch("/config", {"accepted_transfer_syntaxes": accepted})
        modality.admin.post("/queue/retry", {})
        modality.wait_queue("sent", 4)
        (study,) = pacs.admin.get("/studies")
        assert study["study_uid"]
    finally:
        modality.stop()
