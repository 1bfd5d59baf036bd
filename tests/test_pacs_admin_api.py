"""The PACS admin API (the vendor console): config, AE table, reload, logs, stats."""

from __future__ import annotations

import json
import subprocess

import pytest

from simlab.client.admin import AdminApiError
from tests.conftest import RunningNode, requires_dcmtk


def echo(node: RunningNode, calling: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "echoscu",
            "-v",
            "-aet",
            calling,
            "-aec",
            node.ae_title,
            "127.0.0.1",
            str(node.dicom_port),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_health_names_the_node(pacs_node: RunningNode) -> None:
    health = pacs_node.admin.health()
    assert health["status"] == "ok"
    assert health["node_id"] == "pacs"
    assert health["role"] == "pacs"
    assert health["ae_title"] == "SIMLAB_PACS"
    assert health["dicom_port"] == pacs_node.dicom_port


def test_patch_config_is_validated_persisted_and_applied(pacs_node: RunningNode) -> None:
    answer = pacs_node.admin.patch("/config", {"storage": {"quota_bytes": 5_000_000}})
    assert answer["config"]["storage"]["quota_bytes"] == 5_000_000
    on_disk = json.loads(pacs_node.config_path.read_text())
    assert on_disk["storage"]["quota_bytes"] == 5_000_000
    assert pacs_node.admin.get("/config")["storage"]["quota_bytes"] == 5_000_000
    assert pacs_node.admin.get("/stats")["quota_bytes"] == 5_000_000


def test_admin_settings_cannot_change_on_a_running_node(pacs_node: RunningNode) -> None:
    with pytest.raises(AdminApiError) as err:
        pacs_node.admin.patch("/config", {"admin": {"port": 1}})
    assert err.value.status == 409


@requires_dcmtk
def test_ae_table_changes_apply_to_the_next_association(pacs_node: RunningNode) -> None:
    assert echo(pacs_node, "NEWMOD").returncode != 0
    pacs_node.admin.put("/ae-table/NEWMOD", {"host": "127.0.0.1", "port": 11112})
    assert any(ae["ae_title"] == "NEWMOD" for ae in pacs_node.admin.get("/ae-table"))
    assert echo(pacs_node, "NEWMOD").returncode == 0
    pacs_node.admin.delete("/ae-table/NEWMOD")
    refused = echo(pacs_node, "NEWMOD")
    assert refused.returncode != 0
    assert "Calling AE Title Not Recognized" in refused.stdout + refused.stderr


def test_removing_an_unknown_ae_is_a_404(pacs_node: RunningNode) -> None:
    with pytest.raises(AdminApiError) as err:
        pacs_node.admin.delete("/ae-table/NOBODY")
    assert err.value.status == 404


@requires_dcmtk
def test_reload_picks_up_a_config_edited_by_hand(pacs_node: RunningNode) -> None:
    raw = json.loads(pacs_node.config_path.read_text())
    raw["ae_table"].append({"ae_title": "HANDEDIT", "host": "127.0.0.1", "port": 104})
    pacs_node.config_path.write_text(json.dumps(raw))
    assert echo(pacs_node, "HANDEDIT").returncode != 0, "config applies only after reload"
    pacs_node.admin.post("/reload")
    assert echo(pacs_node, "HANDEDIT").returncode == 0


@requires_dcmtk
def test_dicom_port_change_restarts_the_listener(pacs_node: RunningNode) -> None:
    from simlab.runtime.ports import free_ports

    (new_port,) = free_ports(1, avoid={pacs_node.dicom_port})
    answer = pacs_node.admin.patch("/config", {"dicom": {"port": new_port}})
    assert "dicom" in answer["restarted"]
    moved = subprocess.run(
        ["echoscu", "-aet", "ECHOSCU", "-aec", "SIMLAB_PACS", "127.0.0.1", str(new_port)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert moved.returncode == 0, moved.stderr


def test_log_tail_shows_the_start_line(pacs_node: RunningNode) -> None:
    lines = pacs_node.admin.get("/log", lines=50)["lines"]
    assert any("PACS pacs started" in line for line in lines)
    filtered = pacs_node.admin.get("/log", lines=50, contains="started")["lines"]
    assert filtered and all("started" in line.lower() for line in filtered)


def test_stats_of_an_empty_archive(pacs_node: RunningNode) -> None:
    stats = pacs_node.admin.get("/stats")
    assert stats["instances"] == 0
    assert stats["studies"] == 0
    assert stats["disk_free_bytes"] > 0
