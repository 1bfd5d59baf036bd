"""Association policy and presentation-context negotiation of the PACS, seen from DCMTK.

What a modality's log shows when the PACS refuses it is what a trainee must learn to read: these
tests assert DCMTK's own wording for each A-ASSOCIATE-RJ and rejected context, the matching line
in the PACS log, and that an admin change applies to the next association without a restart.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from simlab.runtime.ports import free_ports
from tests import dicom_files as df
from tests.conftest import RunningNode, requires_dcmtk

pytestmark = [requires_dcmtk, pytest.mark.dcmtk]

J2K_ONLY_PROFILE = """\
[[TransferSyntaxes]]
[J2K]
TransferSyntax1 = JPEG2000LosslessOnly

[[PresentationContexts]]
[J2KCT]
PresentationContext1 = CTImageStorage\\J2K

[[Profiles]]
[J2KOnly]
PresentationContexts = J2KCT
"""
"""A storescu profile of a modality that sends CT in JPEG 2000 Lossless only."""


def echo(node: RunningNode, *, aet: str = "ECHOSCU", aec: str | None = None, port=None):
    return df.dcmtk(
        "echoscu", "-v", "-aet", aet, "-aec", aec or node.ae_title, "127.0.0.1",
        port or node.dicom_port,
    )  # fmt: skip


def test_echoscu_is_answered_and_logged(pacs_node: RunningNode) -> None:
    result = echo(pacs_node)
    assert result.returncode == 0, result.stdout
    assert "Received Echo Response (Success)" in result.stdout
    df.wait_for_log(pacs_node, r"association accepted: ECHOSCU \(127\.0\.0\.1:\d+\) -> SIMLAB_PACS")
    df.wait_for_log(pacs_node, r"C-ECHO from ECHOSCU: 0x0000 Success")
    df.wait_for_log(pacs_node, r"association released: ECHOSCU")


def test_wrong_called_ae_is_rejected_permanent_reason_7(pacs_node: RunningNode) -> None:
    result = echo(pacs_node, aec="PACS_OLD")
    assert result.returncode != 0
    assert "Result: Rejected Permanent, Source: Service User" in result.stdout
    assert "Reason: Called AE Title Not Recognized" in result.stdout
    line = df.wait_for_log(pacs_node, r"association REJECTED: ECHOSCU .* -> PACS_OLD")
    assert "result 1 (rejected-permanent), source 1 (service-user), reason 7" in line
    assert "we are SIMLAB_PACS" in line


def test_unknown_calling_ae_is_rejected_reason_3_until_added_live(pacs_node: RunningNode) -> None:
    result = echo(pacs_node, aet="CT_ROOM2")
    assert "Result: Rejected Permanent, Source: Service User" in result.stdout
    assert "Reason: Calling AE Title Not Recognized" in result.stdout
    line = df.wait_for_log(pacs_node, r"association REJECTED: CT_ROOM2 ")
    assert "source 1 (service-user), reason 3 (calling AE title not recognised)" in line

    pacs_node.admin.put("/ae-table/CT_ROOM2", {"host": "127.0.0.1", "port": 104})
    result = echo(pacs_node, aet="CT_ROOM2")
    assert result.returncode == 0, result.stdout


def test_empty_ae_table_refuses_every_caller(pacs_node: RunningNode) -> None:
    """An empty AE table with require_known_calling_ae knows nobody (pynetdicom alone would
    take an empty list as 'accept anyone')."""
    pacs_node.admin.patch("/config", {"ae_table": []})
    result = echo(pacs_node)
    assert "Reason: Calling AE Title Not Recognized" in result.stdout


def test_policy_switches_apply_to_the_next_association_without_restart(
    pacs_node: RunningNode,
) -> None:
    answer = pacs_node.admin.patch(
        "/config", {"dicom": {"require_called_ae": False, "require_known_calling_ae": False}}
    )
    assert answer["restarted"] == []
    assert echo(pacs_node, aet="ANYBODY", aec="ANY-SCP").returncode == 0
    pacs_node.admin.patch("/config", {"dicom": {"require_called_ae": True}})
    assert "Called AE Title Not Recognized" in echo(pacs_node, aec="ANY-SCP").stdout


def test_max_associations_gives_transient_local_limit_exceeded(pacs_node: RunningNode) -> None:
    pacs_node.admin.patch("/config", {"dicom": {"max_associations": 1}})
    ae = AE("ECHOSCU")
    ae.add_requested_context(Verification)
    held = ae.associate("127.0.0.1", pacs_node.dicom_port, ae_title=pacs_node.ae_title)
    try:
        assert held.is_established
        result = echo(pacs_node)
        assert "Result: Rejected Transient, Source: Service Provider (Presentation Related)" in (
            result.stdout
        )
        assert "Reason: Local Limit Exceeded" in result.stdout
        line = df.wait_for_log(pacs_node, r"REJECTED: .*reason 2 \(local limit exceeded\)")
        assert "result 2 (rejected-transient), source 3" in line
    finally:
        held.release()
    assert echo(pacs_node).returncode == 0


def test_silent_connections_do_not_take_association_slots(pacs_node: RunningNode) -> None:
    """Health probes that connect and close without a PDU must not count as associations."""
    pacs_node.admin.patch("/config", {"dicom": {"max_associations": 2}})
    for _ in range(5):
        socket.create_connection(("127.0.0.1", pacs_node.dicom_port), timeout=5).close()
    assert echo(pacs_node).returncode == 0
    df.wait_for_log(pacs_node, r"connection from 127\.0\.0\.1:\d+ closed .* without an association")


def test_rejected_sop_class_fails_the_send_until_accepted_again(
    pacs_node: RunningNode, tmp_path: Path
) -> None:
    enhanced = df.write(df.enhanced_ct(), tmp_path)
    plain = df.write(df.ct(), tmp_path)
    answer = pacs_node.admin.patch("/config", {"rejected_sop_classes": ["EnhancedCTImageStorage"]})
    assert answer["restarted"] == []

    result = df.storescu(pacs_node, enhanced, extra=["-R"])
    assert result.returncode != 0
    assert "No Acceptable Presentation Contexts" in result.stdout
    line = df.wait_for_log(
        pacs_node, r"Enhanced CT Image Storage \(3 abstract syntax not supported\)"
    )
    assert "no presentation context accepted" in line
    assert df.storescu(pacs_node, plain, extra=["-R"]).returncode == 0

    pacs_node.admin.patch("/config", {"rejected_sop_classes": []})
    result = df.storescu(pacs_node, enhanced, extra=["-R"])
    assert result.returncode == 0, result.stdout
    assert "Received Store Response (Success)" in result.stdout


def test_accepted_sop_classes_restricts_storage_by_keyword_and_uid(
    pacs_node: RunningNode, tmp_path: Path
) -> None:
    pacs_node.admin.patch(
        "/config",
        {"accepted_sop_classes": ["CTImageStorage", "1.2.840.10008.5.1.4.1.1.7"]},
    )
    mr = df.write(df.mr(), tmp_path)
    sc = df.write(df.secondary_capture(), tmp_path)
    ct = df.write(df.ct(), tmp_path)
    result = df.storescu(pacs_node, mr, extra=["-R"])
    assert "No Acceptable Presentation Contexts" in result.stdout
    assert df.storescu(pacs_node, sc, ct, extra=["-R"]).returncode == 0
    assert pacs_node.admin.get("/stats")["instances"] == 2


def test_transfer_syntax_removed_gives_result_4(pacs_node: RunningNode, tmp_path: Path) -> None:
    """The classic 'PACS does not take JPEG 2000' fault: a J2K-only modality cannot send."""
    profile = tmp_path / "j2k.cfg"
    profile.write_text(J2K_ONLY_PROFILE, encoding="ascii")
    files = [df.write(df.jpeg2000_ct(), tmp_path), df.write(df.jpeg2000_ct(), tmp_path)]
    first = df.storescu(pacs_node, files[0], extra=["-xf", profile, "J2KOnly"])
    assert "Received Store Response (Success)" in first.stdout, first.stdout

    syntaxes = pacs_node.admin.get("/config")["accepted_transfer_syntaxes"]
    without_j2k = [ts for ts in syntaxes if not ts.startswith("1.2.840.10008.1.2.4.9")]
    pacs_node.admin.patch("/config", {"accepted_transfer_syntaxes": without_j2k})
    result = df.storescu(pacs_node, files[1], extra=["-xf", profile, "J2KOnly"])
    assert result.returncode != 0
    assert "No Acceptable Presentation Contexts" in result.stdout
    df.wait_for_log(pacs_node, r"CT Image Storage \(4 transfer syntaxes not supported\)")
    assert pacs_node.admin.get("/stats")["instances"] == 1


def test_port_change_restarts_only_the_listener(pacs_node: RunningNode) -> None:
    old_port = pacs_node.dicom_port
    (new_port,) = free_ports(1, avoid=[old_port])
    answer = pacs_node.admin.patch("/config", {"dicom": {"port": new_port}})
    assert answer["restarted"] == ["dicom"]
    assert echo(pacs_node, port=new_port).returncode == 0
    refused = echo(pacs_node, port=old_port)
    assert refused.returncode != 0
    assert "Connection refused" in refused.stdout
