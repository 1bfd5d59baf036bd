"""Process faults: inject → the lab console shows the node down/unhealthy and DICOM connections
are refused or time out → revert → the node answers C-ECHO again."""

from __future__ import annotations

import json
import socket

import pytest

from simlab.faults.manager import FaultManager
from simlab.runtime.lab import Lab
from tests.conftest import requires_dcmtk
from tests.lab_fixtures import fault_lab, faults  # noqa: F401 (fixtures)
from tests.test_faults_association import echo, pacs_port

pytestmark = [requires_dcmtk]


def state_of(lab: Lab, node: str) -> str:
    return next(s.state for s in lab.status() if s.entry.node_id == node)


def refused(port: int) -> bool:
    """True when a TCP connect to the port is refused (nothing listens)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def assert_echo_ok(lab: Lab) -> None:
    result = echo(lab)
    assert result.returncode == 0, result.stdout


@pytest.mark.timeout(60)
def test_node_crashed_is_down_and_refused_until_reverted(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    pid = fault_lab.manifest.node("pacs").pid
    faults.inject("f1", "node_crashed", {"node": "pacs"})
    status = next(s for s in fault_lab.status() if s.entry.node_id == "pacs")
    assert status.state == "down" and str(pid) in status.detail
    assert refused(pacs_port(fault_lab))
    result = echo(fault_lab)
    assert "Connection refused" in result.stdout, result.stdout
    log = fault_lab.paths.log("pacs").read_text(encoding="utf-8")
    assert "stopping" not in log.splitlines()[-1], "a crash leaves no shutdown line"
    faults.revert("f1")
    assert state_of(fault_lab, "pacs") == "up"
    assert_echo_ok(fault_lab)


@pytest.mark.timeout(60)
def test_node_hung_accepts_tcp_but_times_out_until_reverted(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    faults.inject("f1", "node_hung", {"node": "pacs"})
    try:
        status = next(s for s in fault_lab.status() if s.entry.node_id == "pacs")
        assert status.state == "unhealthy", status
        assert "timed out" in status.detail, status.detail
        assert not refused(pacs_port(fault_lab)), "the kernel still completes the handshake"
        result = echo(fault_lab, extra=("-to", "2", "-ta", "2"))
        assert result.returncode != 0
        assert "Association Request Failed" in result.stdout, result.stdout
    finally:
        faults.revert("f1")
    assert state_of(fault_lab, "pacs") == "up"
    assert_echo_ok(fault_lab)


@pytest.mark.timeout(60)
def test_service_stopped_is_refused_until_reverted(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    faults.inject("f1", "service_stopped", {"node": "pacs"})
    assert state_of(fault_lab, "pacs") == "not started"
    assert refused(pacs_port(fault_lab))
    assert "stopping" in fault_lab.paths.log("pacs").read_text(encoding="utf-8")
    faults.revert("f1")
    assert state_of(fault_lab, "pacs") == "up"
    assert_echo_ok(fault_lab)


@pytest.mark.timeout(90)
def test_stale_config_loses_an_ae_and_the_live_fix_survives_the_revert(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    row = next(r for r in fault_lab.client("pacs").get("/ae-table") if r["ae_title"] == "CT_1")
    old_pid = fault_lab.manifest.node("pacs").pid
    faults.inject("f1", "stale_config_restart", {"node": "pacs", "ae_title": "CT_1"})
    pid = fault_lab.manifest.node("pacs").pid
    assert pid != old_pid and state_of(fault_lab, "pacs") == "up"
    result = echo(fault_lab, aet="CT_1")
    assert "Reason: Calling AE Title Not Recognized" in result.stdout, result.stdout
    # The trainee fixes the live config; the instructor's revert must not restart over it.
    body = {k: v for k, v in row.items() if k != "ae_title"}
    fault_lab.client("pacs").put("/ae-table/CT_1", body)
    assert echo(fault_lab, aet="CT_1").returncode == 0
    faults.revert("f1")
    assert fault_lab.manifest.node("pacs").pid == pid
    assert echo(fault_lab, aet="CT_1").returncode == 0


@pytest.mark.timeout(90)
def test_stale_config_with_an_old_port_is_refused_and_revert_restores_the_file(
    fault_lab: Lab,  # noqa: F811
    faults: FaultManager,  # noqa: F811
) -> None:
    saved = json.loads(fault_lab.paths.config("pacs").read_text(encoding="utf-8"))
    record = faults.inject("f1", "stale_config_restart", {"node": "pacs", "stale": "old_port"})
    stale_port = record.state["marker"]["port"]
    assert fault_lab.client("pacs").get("/config")["dicom"]["port"] == stale_port
    result = echo(fault_lab)
    assert "Connection refused" in result.stdout, result.stdout
    faults.revert("f1")
    assert fault_lab.client("pacs").get("/config")["dicom"]["port"] == pacs_port(fault_lab)
    assert json.loads(fault_lab.paths.config("pacs").read_text(encoding="utf-8")) == saved
    assert_echo_ok(fault_lab)
