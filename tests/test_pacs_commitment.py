"""Storage Commitment Push Model (PS3.4 J, IHE RAD-10): the modality asks, the PACS answers.

The modality is a pynetdicom SCU (DCMTK has no commitment SCU): it sends N-ACTION Action Type 1
with a Transaction UID and the objects it wants committed, and waits for the N-EVENT-REPORT,
either on its own association or on a new one the PACS opens to the AE table's address for it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, MRImageStorage, StorageCommitmentPushModel

from simlab.common.config import RemoteAe
from simlab.runtime.ports import free_ports
from tests import dicom_files as df
from tests.conftest import DCMTK_DEFAULT_AES, RunningNode, requires_dcmtk, start_pacs

pytestmark = [requires_dcmtk, pytest.mark.dcmtk]

COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
REPORT_WAIT_S = 10.0


@dataclass
class Report:
    """An N-EVENT-REPORT the modality received, with the association it came on."""

    event_type: int
    info: Dataset
    assoc: Any


@dataclass
class Modality:
    """A commitment SCU that also listens (for reports on a new association)."""

    ae: AE
    port: int
    server: Any
    reports: list[Report] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    def on_report(self, event: Any) -> tuple[int, None]:
        self.reports.append(Report(event.event_type, event.event_information, event.assoc))
        return 0x0000, None

    def on_sent(self, event: Any) -> None:
        """Answered: a modality releases only after its N-EVENT-REPORT-RSP has gone out."""
        if type(event.message).__name__ == "N_EVENT_REPORT_RSP":
            self.arrived.set()

    @property
    def handlers(self) -> list[tuple[Any, Any]]:
        return [(evt.EVT_N_EVENT_REPORT, self.on_report), (evt.EVT_DIMSE_SENT, self.on_sent)]

    def wait_report(self) -> Report:
        assert self.arrived.wait(REPORT_WAIT_S), "no N-EVENT-REPORT within 10 s"
        return self.reports[-1]


@dataclass
class Pacs:
    node: RunningNode
    ct_uids: list[str]


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pacs]:
    root = tmp_path_factory.mktemp("commit")
    table = [RemoteAe(ae_title=t, port=11112) for t in [*DCMTK_DEFAULT_AES, "COMMIT_WS"]]
    node = start_pacs(root / "pacs", ae_table=table)
    try:
        _, files = df.study_files(root / "in", count=3)
        assert df.storescu(node, *files).returncode == 0
        uids = [i["sop_uid"] for i in _instances(node)]
        yield Pacs(node, uids)
    finally:
        node.stop()


def _instances(node: RunningNode) -> list[dict[str, Any]]:
    (study,) = node.admin.get("/studies")
    detail = node.admin.get(f"/studies/{study['study_uid']}")
    return [i for s in detail["series"] for i in s["instances"]]


@pytest.fixture
def modality(pacs: Pacs) -> Iterator[Modality]:
    (port,) = free_ports(1)
    ae = AE("COMMIT_WS")
    ae.add_requested_context(StorageCommitmentPushModel)
    # Accept the PACS as the SCP of the report association (it proposes that role).
    ae.add_supported_context(StorageCommitmentPushModel, scu_role=False, scp_role=True)
    mod = Modality(ae, port, None)
    mod.server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=mod.handlers)
    pacs.node.admin.put("/ae-table/COMMIT_WS", {"host": "127.0.0.1", "port": port})
    try:
        yield mod
    finally:
        ae.shutdown()
        pacs.node.admin.patch(
            "/config", {"storage_commitment": {"report_association": "same", "report_delay": 0}}
        )


def _request(refs: list[tuple[str, str]], transaction: str | None = None) -> Dataset:
    ds = Dataset()
    ds.TransactionUID = transaction or df.new_uid()
    items = []
    for class_uid, instance_uid in refs:
        item = Dataset()
        item.ReferencedSOPClassUID = class_uid
        item.ReferencedSOPInstanceUID = instance_uid
        items.append(item)
    ds.ReferencedSOPSequence = items
    return ds


def _associate(pacs: Pacs, modality: Modality):
    assoc = modality.ae.associate(
        "127.0.0.1",
        pacs.node.dicom_port,
        ae_title=pacs.node.ae_title,
        evt_handlers=modality.handlers,
    )
    assert assoc.is_established
    return assoc


def _n_action(assoc: Any, request: Dataset, action_type: int = 1) -> int:
    status, _reply = assoc.send_n_action(
        request, action_type, StorageCommitmentPushModel, COMMITMENT_INSTANCE
    )
    return int(status.Status)


def test_all_committed_reported_on_the_same_association(pacs: Pacs, modality: Modality) -> None:
    request = _request([(CTImageStorage, uid) for uid in pacs.ct_uids[:2]])
    assoc = _associate(pacs, modality)
    try:
        assert _n_action(assoc, request) == 0x0000
        report = modality.wait_report()
        assert report.assoc is assoc, "report came on another association"
    finally:
        assoc.release()
    assert report.event_type == 1
    assert report.info.TransactionUID == request.TransactionUID
    committed = [i.ReferencedSOPInstanceUID for i in report.info.ReferencedSOPSequence]
    assert committed == pacs.ct_uids[:2]
    assert "FailedSOPSequence" not in report.info
    df.wait_for_log(
        pacs.node,
        r"N-EVENT-REPORT Storage Commitment to COMMIT_WS on same association .*response 0x0000",
    )
    assert "no response" not in pacs.node.log_text()


def test_missing_and_mismatched_objects_are_reported_as_failures(
    pacs: Pacs, modality: Modality
) -> None:
    missing = df.new_uid()
    request = _request(
        [
            (CTImageStorage, pacs.ct_uids[0]),
            (CTImageStorage, missing),
            (MRImageStorage, pacs.ct_uids[1]),
        ]
    )
    assoc = _associate(pacs, modality)
    try:
        assert _n_action(assoc, request) == 0x0000
        report = modality.wait_report()
    finally:
        assoc.release()
    assert report.event_type == 2
    assert [i.ReferencedSOPInstanceUID for i in report.info.ReferencedSOPSequence] == [
        pacs.ct_uids[0]
    ]
    reasons = {i.ReferencedSOPInstanceUID: i.FailureReason for i in report.info.FailedSOPSequence}
    assert reasons == {missing: 0x0112, pacs.ct_uids[1]: 0x0119}
    df.wait_for_log(pacs.node, rf"{missing} not committed: 0x0112 No such SOP Instance")


def test_report_on_a_new_association_when_configured(pacs: Pacs, modality: Modality) -> None:
    pacs.node.admin.patch("/config", {"storage_commitment": {"report_association": "new"}})
    request = _request([(CTImageStorage, pacs.ct_uids[2])])
    assoc = _associate(pacs, modality)
    try:
        assert _n_action(assoc, request) == 0x0000
        report = modality.wait_report()
        assert report.assoc is not assoc
    finally:
        assoc.release()
    assert report.event_type == 1
    assert report.assoc.requestor.ae_title == pacs.node.ae_title  # the PACS called us
    df.wait_for_log(
        pacs.node,
        r"N-EVENT-REPORT Storage Commitment to COMMIT_WS on new association .*response 0x0000",
    )
    assert "no response" not in pacs.node.log_text()


def test_requester_gone_falls_back_to_a_new_association(pacs: Pacs, modality: Modality) -> None:
    pacs.node.admin.patch("/config", {"storage_commitment": {"report_delay": 0.5}})
    request = _request([(CTImageStorage, pacs.ct_uids[0])])
    assoc = _associate(pacs, modality)
    assert _n_action(assoc, request) == 0x0000
    assoc.release()  # a modality that does not wait for the result
    report = modality.wait_report()
    assert report.event_type == 1 and report.info.TransactionUID == request.TransactionUID
    assert report.assoc.requestor.ae_title == pacs.node.ae_title


def test_bad_n_action_requests_are_refused(pacs: Pacs, modality: Modality) -> None:
    assoc = _associate(pacs, modality)
    try:
        no_transaction = _request([(CTImageStorage, pacs.ct_uids[0])])
        del no_transaction.TransactionUID
        assert _n_action(assoc, no_transaction) == 0x0120
        assert _n_action(assoc, _request([(CTImageStorage, pacs.ct_uids[0])]), 2) == 0x0123
    finally:
        assoc.release()
    assert not modality.arrived.is_set()


def test_path_of_archived_objects_is_what_commitment_checks(pacs: Pacs, modality: Modality) -> None:
    """An object whose file vanished from disk is not committed, even though its row exists."""
    victim = pacs.ct_uids[2]
    digest = __import__("hashlib").sha256(victim.encode()).hexdigest()
    path: Path = pacs.node.data_dir / "objects" / digest[:2] / digest[2:4] / f"{digest}.dcm"
    moved = path.with_suffix(".away")
    path.rename(moved)
    assoc = _associate(pacs, modality)
    try:
        assert _n_action(assoc, _request([(CTImageStorage, victim)])) == 0x0000
        report = modality.wait_report()
    finally:
        assoc.release()
        moved.rename(path)
    assert report.event_type == 2
    assert report.info.FailedSOPSequence[0].FailureReason == 0x0112
