"""Helpers for the fake modality tests: the modality node, a DCMTK worklist SCP, an MPPS SCP.

The peers are real and independent of simlab's RIS: DCMTK `wlmscpfs` serves worklist files
written here, a small pynetdicom MPPS SCP records N-CREATE/N-SET, and the real simlab PACS
(tests/conftest.py `start_pacs`) stores images and answers Storage Commitment.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.sop_class import ModalityPerformedProcedureStep

from simlab.client.admin import AdminClient
from simlab.common.config import AdminSettings, DicomSettings, RemoteAe, load_config
from simlab.common.modality_config import ModalityConfig
from simlab.runtime.ports import free_ports
from simlab.runtime.process import NodeProcess
from simlab.runtime.topology import write_node_dir
from tests.conftest import RunningNode

MODALITY_AE = "CT_1"
WORKLIST_AE = "WLM_SCP"
MPPS_AE = "MPPS_SCP"
SMALL_CT = {"images_per_series": 4, "rows": 64, "columns": 64}
"""Small images keep the tests fast; the profile defaults are for a simulated day."""


def poll(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Call `check` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


@dataclass
class RunningModality(RunningNode):
    """A modality node process."""

    @property
    def config(self) -> ModalityConfig:  # type: ignore[override]
        return load_config(ModalityConfig, self.config_path)

    @property
    def hl7_port(self) -> int:  # pragma: no cover - a modality speaks no HL7
        raise AttributeError("a modality has no HL7 port")

    def queue(self) -> dict[str, Any]:
        return self.admin.get("/queue")

    def wait_queue(self, state: str, count: int, timeout: float = 20.0) -> dict[str, Any]:
        """Wait until `count` items are in `state` (and none is still pending or sending)."""

        def check() -> dict[str, Any] | None:
            q = self.queue()
            c = q["counts"]
            settled = c["pending"] == 0 and c["sending"] == 0
            return q if settled and c[state] == count else None

        return poll(check, timeout, f"{count} queue items {state} on {self.config.node_id}")


def modality_config(
    *,
    dicom_port: int,
    admin_port: int,
    destination: RemoteAe,
    mwl: RemoteAe | None = None,
    mpps: RemoteAe | None = None,
    node_id: str = "ct-1",
    ae_title: str = MODALITY_AE,
    **overrides: Any,
) -> ModalityConfig:
    data: dict[str, Any] = {
        "node_id": node_id,
        "display_name": "CT scanner, room 1",
        "profile": "CT",
        "admin": AdminSettings(port=admin_port).model_dump(),
        "dicom": DicomSettings(ae_title=ae_title, port=dicom_port).model_dump(),
        "destination": destination.model_dump(),
        "mwl": mwl.model_dump() if mwl else None,
        "mpps": mpps.model_dump() if mpps else None,
        "acquisition": dict(SMALL_CT),
        "send_queue": {"max_attempts": 1, "backoff_initial": 0.5, "poll_interval": 0.1},
        "storage_commitment": {"report_timeout": 5.0, "wait_for_send": 20.0},
        "association_timeout": 5.0,
    }
    data.update(overrides)
    return ModalityConfig.model_validate(data)


def start_modality(
    node_dir: Path,
    destination: RemoteAe,
    *,
    pacs: RunningNode | None = None,
    **kwargs: Any,
) -> RunningModality:
    """Write a modality config under node_dir, start the node, wait until healthy.

    With `pacs`, the modality's AE (with its listener address) is put in the PACS AE table so
    the PACS accepts it as a caller and can send commitment reports to it.
    """
    dicom_port, admin_port = free_ports(2)
    config = modality_config(
        dicom_port=dicom_port, admin_port=admin_port, destination=destination, **kwargs
    )
    if pacs is not None:
        pacs.admin.put(
            f"/ae-table/{config.dicom.ae_title}",
            {"host": "127.0.0.1", "port": dicom_port, "description": "fake modality"},
        )
    token = secrets.token_hex(16)
    config_path = write_node_dir(node_dir, config, token)
    node = RunningModality(
        module="fake_modalities.node",
        node_dir=node_dir,
        config_path=config_path,
        admin=AdminClient(f"http://127.0.0.1:{admin_port}", token),
        process=NodeProcess(node_id=config.node_id, popen=None, pid=-1),
    )
    node.start()
    return node


def pacs_destination(pacs: RunningNode) -> RemoteAe:
    return RemoteAe(ae_title=pacs.ae_title, host="127.0.0.1", port=pacs.dicom_port)


# -- DCMTK wlmscpfs as the worklist provider -----------------------------------------------------


@dataclass
class WorklistScp:
    """DCMTK's wlmscpfs serving the .wl files of one directory."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes]

    @property
    def remote(self) -> RemoteAe:
        return RemoteAe(ae_title=WORKLIST_AE, host="127.0.0.1", port=self.port)

    def add_item(self, name: str, **values: str) -> Dataset:
        ds = worklist_item(**values)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.276.0.7230010.3.1.0.1"  # DCMTK worklist file
        meta.MediaStorageSOPInstanceUID = "1.2.276.0.7230010.3.1.4.0." + str(abs(hash(name)))
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.save_as(self.directory / f"{name}.wl", enforce_file_format=True)
        return ds


def worklist_item(
    *,
    patient_id: str,
    patient_name: str,
    accession: str,
    study_uid: str,
    station_ae: str = MODALITY_AE,
    modality: str = "CT",
    start_date: str | None = None,
    start_time: str = "093000",
    requested_procedure_id: str = "RP1",
    sps_id: str = "SPS1",
    description: str = "CT HEAD WITHOUT CONTRAST",
) -> Dataset:
    """A complete MWL item (PS3.4 K.6-1 type 1 return keys present)."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.AccessionNumber = accession
    ds.ReferringPhysicianName = "REF^DOCTOR"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyInstanceUID = study_uid
    ds.RequestedProcedureDescription = description
    ds.RequestedProcedureID = requested_procedure_id
    ds.RequestedProcedurePriority = "ROUTINE"
    step = Dataset()
    step.Modality = modality
    step.ScheduledStationAETitle = station_ae
    step.ScheduledProcedureStepStartDate = start_date or date.today().strftime("%Y%m%d")
    step.ScheduledProcedureStepStartTime = start_time
    step.ScheduledPerformingPhysicianName = ""
    step.ScheduledProcedureStepDescription = description
    step.ScheduledProcedureStepID = sps_id
    step.ScheduledProcedureStepLocation = "CT ROOM 1"
    ds.ScheduledProcedureStepSequence = [step]
    return ds


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(name="worklist_scp")
def worklist_scp_fixture(tmp_path: Path) -> Iterator[WorklistScp]:
    if shutil.which("wlmscpfs") is None:
        pytest.skip("DCMTK wlmscpfs is not installed")
    root = tmp_path / "worklists"
    directory = root / WORKLIST_AE
    directory.mkdir(parents=True)
    (directory / "lockfile").write_text("")
    (port,) = free_ports(1)
    log = open(tmp_path / "wlmscpfs.log", "wb")  # noqa: SIM115 (closed in teardown)
    process = subprocess.Popen(
        ["wlmscpfs", "-dfp", str(root), str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        poll(lambda: _port_open(port) or process.poll() is not None, 10, "wlmscpfs to listen")
        assert process.poll() is None, (tmp_path / "wlmscpfs.log").read_text()
        yield WorklistScp(port, directory, process)
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


# -- a recording MPPS SCP (pynetdicom) -----------------------------------------------------------


@dataclass
class MppsScp:
    """Records N-CREATE and N-SET; keeps each MPPS instance's current attributes."""

    port: int
    server: Any = None
    events: list[tuple[str, str, Dataset]] = field(default_factory=list)
    status_log: list[str] = field(default_factory=list)
    instances: dict[str, Dataset] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def remote(self) -> RemoteAe:
        return RemoteAe(ae_title=MPPS_AE, host="127.0.0.1", port=self.port)

    def on_n_create(self, event: Any) -> tuple[int, Dataset | None]:
        ds = event.attribute_list
        uid = str(event.request.AffectedSOPInstanceUID)
        with self.lock:
            if uid in self.instances:
                return 0x0111, None
            self.instances[uid] = ds
            self.events.append(("N-CREATE", uid, ds))
            self.status_log.append(str(ds.get("PerformedProcedureStepStatus", "")))
        return 0x0000, ds

    def on_n_set(self, event: Any) -> tuple[int, Dataset | None]:
        mods = event.modification_list
        uid = str(event.request.RequestedSOPInstanceUID)
        with self.lock:
            current = self.instances.get(uid)
            if current is None:
                return 0x0112, None
            if current.PerformedProcedureStepStatus != "IN PROGRESS":
                return 0x0110, None
            for elem in mods:
                current[elem.tag] = elem
            self.events.append(("N-SET", uid, mods))
            self.status_log.append(str(mods.get("PerformedProcedureStepStatus", "")))
        return 0x0000, current

    def statuses(self) -> list[str]:
        with self.lock:
            return list(self.status_log)


@pytest.fixture(name="mpps_scp")
def mpps_scp_fixture() -> Iterator[MppsScp]:
    (port,) = free_ports(1)
    scp = MppsScp(port)
    ae = AE(MPPS_AE)
    ae.add_supported_context(ModalityPerformedProcedureStep)
    handlers = [(evt.EVT_N_CREATE, scp.on_n_create), (evt.EVT_N_SET, scp.on_n_set)]
    scp.server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers)
    try:
        yield scp
    finally:
        ae.shutdown()
