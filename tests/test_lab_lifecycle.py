"""`simlab lab up/status/down` on the local runtime, through the real CLI entrypoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import node_processes, requires_dcmtk

SIMLAB = [sys.executable, "-m", "simlab"]


def simlab(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SIMLAB, *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


def lab_processes(lab_root: Path) -> list[int]:
    """Every node process on the machine that belongs to this lab."""
    return node_processes(lab_root)


def status_json(home: Path, lab: str) -> dict:
    result = simlab(home, "lab", "status", "--lab", lab, "--json")
    return json.loads(result.stdout)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_up_status_down_leaves_nothing(tmp_path: Path) -> None:
    up = simlab(tmp_path, "lab", "up", "--lab", "one", "--detach")
    assert up.returncode == 0, up.stderr
    for text in ("pacs", "SIMLAB_PACS", "127.0.0.1", "http://127.0.0.1:", "up"):
        assert text in up.stdout
    status = status_json(tmp_path, "one")
    assert status["state"] == "up"
    assert [n["node_id"] for n in status["nodes"]] == [
        "pacs",
        "ris",
        "viewer",
        "ct-1",
        "mr-1",
        "cr-1",
        "us-1",
        "net",
    ]
    assert {n["state"] for n in status["nodes"]} == {"up"}
    net = status["nodes"][-1]
    assert net["role"] == "network" and "ct-1->pacs" in {lk["name"] for lk in net["links"]}
    lab_root = tmp_path / "labs" / "one"
    assert (lab_root / "nodes" / "pacs" / "node.log").exists()
    assert lab_processes(lab_root)

    down = simlab(tmp_path, "lab", "down", "--lab", "one")
    assert down.returncode == 0, down.stderr
    assert "pacs" in down.stdout
    assert lab_processes(lab_root) == []
    events = [json.loads(line) for line in (lab_root / "events.jsonl").read_text().splitlines()]
    kinds = [e["kind"] for e in events]
    assert "node_started" in kinds and "lab_down" in kinds
    after = simlab(tmp_path, "lab", "status", "--lab", "one")
    assert after.returncode == 1
    assert "not started" in after.stdout


def test_second_lab_gets_other_ports(tmp_path: Path) -> None:
    try:
        for lab in ("a", "b"):
            assert simlab(tmp_path, "lab", "up", "--lab", lab, "-d").returncode == 0
        ports = []
        for lab in ("a", "b"):
            nodes = status_json(tmp_path, lab)["nodes"]
            assert {n["state"] for n in nodes} == {"up"}
            ports.append(
                {p for n in nodes for p in (n["dicom_port"], n["hl7_port"], n["admin_port"]) if p}
            )
        assert len(ports[0]) == 17  # 8 admin + 7 DICOM + HL7 of the PACS and the RIS
        assert ports[0].isdisjoint(ports[1])
    finally:
        for lab in ("a", "b"):
            simlab(tmp_path, "lab", "down", "--lab", lab)
    assert lab_processes(tmp_path) == []


@requires_dcmtk
def test_dcmtk_echo_against_a_started_lab(tmp_path: Path) -> None:
    assert simlab(tmp_path, "lab", "up", "--lab", "echo", "-d").returncode == 0
    try:
        node = status_json(tmp_path, "echo")["nodes"][0]
        echo = subprocess.run(
            [
                "echoscu",
                "-aet",
                "ADMIN_WS",
                "-aec",
                node["ae_title"],
                "127.0.0.1",
                str(node["dicom_port"]),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert echo.returncode == 0, echo.stderr
    finally:
        simlab(tmp_path, "lab", "down", "--lab", "echo")


def test_foreground_lab_notices_a_dead_node_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*SIMLAB, "lab", "up", "--lab", "fg", "--home", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    lab_root = tmp_path / "labs" / "fg"
    try:
        manifest = lab_root / "lab.json"
        wait_for(
            lambda: (
                manifest.exists()
                and json.loads(manifest.read_text())["state"] == "up"
                and json.loads(manifest.read_text()).get("supervisor_pid")
            ),
            60,
            "the lab to be up",
        )
        pid = json.loads(manifest.read_text())["nodes"][0]["pid"]
        os.kill(pid, signal.SIGKILL)
        events = lab_root / "events.jsonl"
        wait_for(lambda: "node_exited" in events.read_text(), 30, "the exit to be noticed")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "node pacs exited" in out
    assert "Stopping the lab" in out
    assert lab_processes(lab_root) == []


def test_node_that_cannot_start_is_named_with_its_log(tmp_path: Path) -> None:
    assert simlab(tmp_path, "lab", "up", "--lab", "bad", "-d").returncode == 0
    assert simlab(tmp_path, "lab", "down", "--lab", "bad").returncode == 0
    config = tmp_path / "labs" / "bad" / "nodes" / "pacs" / "config.json"
    raw = json.loads(config.read_text())
    raw["dicom"]["ae_title"] = "THIS AE TITLE IS FAR TOO LONG"
    config.write_text(json.dumps(raw))
    result = simlab(tmp_path, "lab", "up", "--lab", "bad", "-d")
    assert result.returncode == 1
    assert "node pacs exited during start (exit code 2)" in result.stderr
    assert "stderr.log" in result.stderr
    assert lab_processes(tmp_path / "labs" / "bad") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lab", "status", "--lab", "nope"], "no lab 'nope'"),
        (["lab", "up", "--lab", "Bad Name!"], "lab id"),
        (["lab", "up", "--timeout", "soon"], "Invalid value for '--timeout'"),
    ],
)
def test_wrong_cli_arguments_get_a_clear_error(tmp_path: Path, args, message) -> None:
    result = simlab(tmp_path, *args)
    assert result.returncode == 2
    assert message in result.stdout + result.stderr


def test_every_command_explains_itself() -> None:
    for args in (
        ["--help"],
        ["lab", "--help"],
        ["lab", "up", "--help"],
        ["admin", "--help"],
        ["lab", "status", "--help"],
        ["lab", "down", "--help"],
    ):
        result = subprocess.run([*SIMLAB, *args], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0
        assert "Usage" in result.stdout
