"""Starting a real RIS process for tests, the way tests/conftest.py starts the PACS.

`start_ris(node_dir, ...)` writes a RIS config (AE SIMLAB_RIS, HL7 SIMLAB_RIS/RADIOLOGY, the
given modalities in its AE table, outbound HL7 to a PACS port) and starts the node until its
/health answers. The `ris_node` fixture is one RIS with no destination.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep

from simlab.client.admin import AdminClient
from simlab.common.config import AdminSettings, DicomSettings, Hl7Settings, RemoteAe, load_config
from simlab.common.node_runner import EXIT_ADDRESS_IN_USE
from simlab.common.ris_config import Hl7Destination, QueueSettings, RisConfig
from simlab.runtime.ports import free_ports
from simlab.runtime.process import NodeProcess, NodeStartError
from simlab.runtime.topology import write_node_dir
from tests.conftest import DCMTK_DEFAULT_AES, RunningNode

RIS_AE = "SIMLAB_RIS"
RIS_APP, RIS_FACILITY = "SIMLAB_RIS", "RADIOLOGY"
MODALITY_AES = ["CT_1", "MR_1", "CR_1", "US_1"]
FAST_QUEUE = QueueSettings(backoff_initial=0.1, backoff_max=0.5, max_attempts=50)
"""Retries quick enough for tests (the defaults are 1 s doubling to 60 s, 8 attempts)."""

MPPS_UID_PREFIX = "2.25.7788."
T = TypeVar("T")


@dataclass
class RunningRis(RunningNode):
    """A RIS process; `config` reads the RIS model."""

    @property
    def config(self) -> RisConfig:  # type: ignore[override]
        return load_config(RisConfig, self.config_path)


def ris_config(
    *,
    dicom_port: int,
    hl7_port: int,
    admin_port: int,
    pacs_hl7_port: int | None = None,
    ae_table: list[RemoteAe] | None = None,
    **overrides: Any,
) -> RisConfig:
    """A lab RIS config: strict AE policy, modalities known, one destination when given."""
    if ae_table is None:
        ae_table = [RemoteAe(ae_title=t) for t in MODALITY_AES + DCMTK_DEFAULT_AES]
    destinations = (
        [Hl7Destination(name="pacs", port=pacs_hl7_port, ack_timeout=5.0)] if pacs_hl7_port else []
    )
    config = RisConfig(
        node_id="ris",
        display_name="RIS (Order Filler / DSS)",
        admin=AdminSettings(port=admin_port),
        dicom=DicomSettings(ae_title=RIS_AE, port=dicom_port),
        hl7=Hl7Settings(port=hl7_port, application=RIS_APP, facility=RIS_FACILITY),
        ae_table=ae_table,
        destinations=destinations,
        queue=FAST_QUEUE,
        modality_stations={"CT": "CT_1", "MR": "MR_1"},
    )
    return config.model_copy(update=overrides) if overrides else config


def start_ris(
    node_dir: Path,
    *,
    pacs_hl7_port: int | None = None,
    ae_table: list[RemoteAe] | None = None,
    **overrides: Any,
) -> RunningRis:
    """Write a RIS config under node_dir and start the node; waits until healthy.

    Ports are picked free just before the start; when another process takes one in between
    (the node exits with EXIT_ADDRESS_IN_USE), new ports are picked, at most three times.
    """
    for attempt in range(3):
        dicom_port, hl7_port, admin_port = free_ports(3)
        config = ris_config(
            dicom_port=dicom_port,
            hl7_port=hl7_port,
            admin_port=admin_port,
            pacs_hl7_port=pacs_hl7_port,
            ae_table=ae_table,
            **overrides,
        )
        token = secrets.token_hex(16)
        config_path = write_node_dir(node_dir, config, token)
        node = RunningRis(
            module="simlab.nodes.ris",
            node_dir=node_dir,
            config_path=config_path,
            admin=AdminClient(f"http://127.0.0.1:{admin_port}", token),
            process=NodeProcess(node_id=config.node_id, popen=None, pid=-1),
        )
        try:
            node.start()
        except NodeStartError as exc:
            if f"exit code {EXIT_ADDRESS_IN_USE})" not in str(exc) or attempt == 2:
                raise
            continue
        return node
    raise AssertionError("unreachable")


@pytest.fixture
def ris_node(tmp_path: Path) -> Iterator[RunningRis]:
    """A fresh RIS process with no outbound destination."""
    node = start_ris(tmp_path / "ris")
    try:
        yield node
    finally:
        node.stop()


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = 15.0) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(delay)  # a poll interval with a deadline, not a fixed wait
        delay = min(delay * 1.5, 0.2)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")


def register(ris: RunningRis, patient_id: str, name: str, **extra: Any) -> dict[str, Any]:
    body = {"patient_id": patient_id, "name": name, "birth_date": "19800101", "sex": "F"}
    return ris.admin.post("/patients", {**body, **extra})


def order(ris: RunningRis, patient_id: str, **extra: Any) -> dict[str, Any]:
    body = {
        "patient_id": patient_id,
        "modality": "CT",
        "start_date": "20261123",
        "start_time": "0930",
        "procedure_code": "CTHEAD",
        "procedure_meaning": "CT Head without contrast",
        "referring_physician": "House^Gregory",
        "performing_physician": "Quinn^Michaela",
    }
    return ris.admin.post("/orders", {**body, **extra})


def create_attrs(order_row: dict[str, Any] | None, status: str = "IN PROGRESS") -> Dataset:
    ds = Dataset()
    item = Dataset()
    item.StudyInstanceUID = order_row["study_uid"] if order_row else generate_uid(MPPS_UID_PREFIX)
    item.AccessionNumber = order_row["accession"] if order_row else ""
    item.RequestedProcedureID = order_row["requested_procedure_id"] if order_row else ""
    item.ScheduledProcedureStepID = order_row["sps_id"] if order_row else ""
    ds.ScheduledStepAttributesSequence = [item]
    ds.PatientName = "Dupont^Marie"
    ds.PatientID = "MPPS1"
    ds.PerformedProcedureStepID = "PPS1"
    ds.PerformedStationAETitle = "CT_1"
    ds.PerformedProcedureStepStartDate = "20261123"
    ds.PerformedProcedureStepStartTime = "093000"
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.PerformedProcedureStepStatus = status
    ds.Modality = "CT"
    ds.PerformedSeriesSequence = []
    return ds


class MppsScu:
    """One association to the RIS's MPPS SCP."""

    def __init__(self, ris: RunningRis, aet: str = "CT_1") -> None:
        ae = AE(ae_title=aet)
        ae.add_requested_context(ModalityPerformedProcedureStep)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
        self.assoc = ae.associate("127.0.0.1", ris.dicom_port, ae_title=RIS_AE)
        assert self.assoc.is_established, ris.admin.get("/log", lines=20)["lines"]

    def create(self, attrs: Dataset, uid: str | None) -> tuple[int, Dataset]:
        status, _ = self.assoc.send_n_create(attrs, ModalityPerformedProcedureStep, uid)
        return int(status.Status), status

    def set(self, uid: str, **changes: str) -> tuple[int, Dataset]:
        mod = Dataset()
        for keyword, value in changes.items():
            setattr(mod, keyword, value)
        status, _ = self.assoc.send_n_set(mod, ModalityPerformedProcedureStep, uid)
        return int(status.Status), status

    def close(self) -> None:
        self.assoc.release()
