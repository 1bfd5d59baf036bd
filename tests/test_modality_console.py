"""The modality console: hand-keyed patients (with typing errors), determinism, bad input."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from simlab.client.admin import AdminApiError
from simlab.common.config import RemoteAe
from simlab.runtime.ports import free_ports
from tests.modality_fixtures import RunningModality, start_modality

PATIENTS = [
    ("MRN400123", "SMITH^ANNA", "ACC9001"),
    ("MRN400987", "JONES^BOB", "ACC9002"),
    ("mrn5555x", "LEE^KIM", "A77"),
]


def _nowhere() -> RemoteAe:
    (port,) = free_ports(1)
    return RemoteAe(ae_title="SIMLAB_PACS", host="127.0.0.1", port=port)


@pytest.fixture
def make_modality(tmp_path: Path) -> Iterator:
    started: list[RunningModality] = []

    def make(name: str, **overrides) -> RunningModality:
        node = start_modality(tmp_path / name, _nowhere(), node_id=name, **overrides)
        started.append(node)
        return node

    try:
        yield make
    finally:
        for node in started:
            node.stop()


def _register(node: RunningModality) -> list[dict]:
    return [
        node.admin.post(
            "/patients/unscheduled",
            {"patient_id": pid, "patient_name": name, "accession_number": acc},
        )
        for pid, name, acc in PATIENTS
    ]


def _typed(procs: list[dict]) -> list[tuple[str, str]]:
    return [(p["item"]["patient_id"], p["item"]["accession_number"]) for p in procs]


def test_typing_errors_are_realistic_and_deterministic_for_a_seed(make_modality) -> None:
    first = _register(make_modality("ct-a", operator_typo_rate=1.0, seed=42))
    second = make_modality("ct-b", operator_typo_rate=1.0, seed=42)
    again = _register(second)
    second.admin.patch("/config", {"seed": 43})
    other = _register(second)
    second.admin.patch("/config", {"operator_typo_rate": 0.0})
    careful = _register(second)
    assert "typing errors: patient_id 'MRN400123' typed" in second.log_text()

    assert _typed(first) == _typed(again)
    assert _typed(first) != _typed(other)
    assert _typed(careful) == [(pid, acc) for pid, _name, acc in PATIENTS]
    for proc, (pid, _name, acc) in zip(first, PATIENTS, strict=True):
        typed_pid, typed_acc = proc["item"]["patient_id"], proc["item"]["accession_number"]
        assert typed_pid != pid and typed_acc != acc
        for field, intended, typed in (
            ("patient_id", pid, typed_pid),
            ("accession_number", acc, typed_acc),
        ):
            typo = proc["typos"][field]
            assert typo == {"intended": intended, "typed": typed, "error": typo["error"]}
            assert typo["error"] in {"transposed", "dropped", "doubled", "wrong case"}
            assert abs(len(typed) - len(intended)) <= 1


def test_same_seed_same_actions_same_images(make_modality) -> None:
    nodes = [make_modality("ct-a", seed=7), make_modality("ct-b", seed=7)]
    images = []
    for node in nodes:
        proc = node.admin.post(
            "/patients/unscheduled",
            {"patient_id": "MRN1", "patient_name": "DOE^JOHN", "accession_number": "ACC1"},
        )
        node.admin.post("/procedures/start", {"procedure_id": proc["id"]})
        node.admin.post(f"/procedures/{proc['id']}/acquire")
        files = sorted((node.data_dir / "outbox" / proc["id"]).glob("*.dcm"))
        assert len(files) == 4
        images.append([pydicom.dcmread(f) for f in files])
    for a, b in zip(*images, strict=True):
        assert (a.StudyInstanceUID, a.SeriesInstanceUID, a.SOPInstanceUID) == (
            b.StudyInstanceUID,
            b.SeriesInstanceUID,
            b.SOPInstanceUID,
        )
        assert np.array_equal(a.pixel_array, b.pixel_array)
    assert len({ds.SOPInstanceUID for ds in images[0]}) == 4


def test_garbage_on_the_dicom_port_and_bad_admin_input(make_modality) -> None:
    node = make_modality("ct-a")
    garbage = (
        b"\x00" * 10,  # PDU type 0: not a PDU
        b"GET / HTTP/1.1\r\n\r\n",  # the wrong protocol: A-ABORT
        b"\x01\x00\xff\xff\xff\xff" + b"x" * 64,  # an A-ASSOCIATE-RQ cut short
    )
    socks = [socket.create_connection(("127.0.0.1", node.dicom_port), timeout=5) for _ in garbage]
    try:
        for sock, payload in zip(socks, garbage, strict=True):
            sock.sendall(payload)
        _echo(node)  # served while the bad connections are still open
    finally:
        for sock in socks:
            sock.close()
    _echo(node)
    stranger = AE("STRANGER")
    stranger.add_requested_context(Verification)
    assoc = stranger.associate("127.0.0.1", node.dicom_port, ae_title=node.ae_title)
    assert assoc.is_rejected

    for bad in (
        {"acquisition": {"transfer_syntax": "1.2.840.10008.1.2.4.90"}},
        {"operator_typo_rate": 2},
        {"destination": {"ae_title": "A" * 17}},
        {"no_such_setting": 1},
    ):
        with pytest.raises(AdminApiError) as exc:
            node.admin.patch("/config", bad)
        assert exc.value.status == 422, bad
    assert node.config.operator_typo_rate == 0.0
    for path, body in (
        ("/patients/unscheduled", {"patient_name": "NO^ID"}),
        ("/procedures/P9999/acquire", None),
        ("/procedures/start", {}),
    ):
        with pytest.raises(AdminApiError) as exc:
            node.admin.post(path, body)
        assert exc.value.status in (400, 404), path
    with pytest.raises(AdminApiError) as exc:
        node.admin.post("/worklist/query", {})
    assert exc.value.status == 502
    assert "no worklist provider" in exc.value.message
    assert node.admin.health()["services"] == {"dicom": True, "send_queue": True}


def _echo(node: RunningModality) -> None:
    """C-ECHO as the PACS (the only caller the modality's listener knows)."""
    ae = AE("SIMLAB_PACS")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title=node.ae_title)
    assert assoc.is_established
    try:
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()


def test_a_crash_keeps_procedures_and_the_send_queue(make_modality) -> None:
    node = make_modality("ct-a")
    proc = node.admin.post(
        "/patients/unscheduled",
        {"patient_id": "MRN9", "patient_name": "CRASH^TEST", "accession_number": "ACC9"},
    )
    node.admin.post("/procedures/start", {"procedure_id": proc["id"]})
    node.admin.post(f"/procedures/{proc['id']}/acquire")
    before = node.wait_queue("failed", 4)
    node.kill9()
    node.start()
    after = node.queue()
    assert after["counts"]["failed"] == 4
    assert [i["sop_instance"] for i in after["items"]] == [
        i["sop_instance"] for i in before["items"]
    ]
    assert all(i["reason"].startswith("cannot connect to") for i in after["items"])
    (again,) = node.admin.get("/procedures")
    assert again["state"] == "in progress" and again["send_summary"].startswith("4 images failed")
    files = sorted((node.data_dir / "outbox" / proc["id"]).glob("*.dcm"))
    assert len(files) == 4 and not list(node.data_dir.glob("outbox/*/.*.tmp"))
