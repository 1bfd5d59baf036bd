"""The docker runtime: the department in containers on the lab's own network.

The config rewrite and the Compose export need no engine. The rest runs against a real Docker
engine (the README's test command starts one where it can) and is skipped, with the reason, where
none answers: the department comes up in containers, DCMTK on the host talks to the PACS through
the port published on 127.0.0.1, nodes reach each other by node id on the lab's network, a
kill -9 is seen, a restart works, and `down` leaves no container or network behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from simlab.client.admin import AdminApiError
from simlab.faults.manager import FaultManager
from simlab.runtime.compose import ComposeError, compose_document
from simlab.runtime.docker_engine import DockerUnavailable, engine
from simlab.runtime.docker_runtime import HOST_ALIAS, container_name, lab_key
from simlab.runtime.lab import Lab, LabError
from simlab.runtime.volumes import TMPFS_KB, TMPFS_ROOT
from simlab.workflow.actions import run_action
from tests import dicom_files
from tests.polling import poll


def storescu(port: int, path: Path) -> subprocess.CompletedProcess[str]:
    """DCMTK's storescu from the host; its log (stderr) is in stdout."""
    return subprocess.run(
        ["storescu", "-v", "-aet", "ADMIN_WS", "-aec", "SIMLAB_PACS", "127.0.0.1", str(port),
         str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60,
    )  # fmt: skip


def config(lab: Lab, node_id: str) -> dict[str, Any]:
    return json.loads(lab.paths.config(node_id).read_text(encoding="utf-8"))


# ------------------------------------------------------------------------- no engine needed
@pytest.mark.timeout(30)
def test_a_docker_lab_addresses_peers_by_node_id_and_binds_all_interfaces(tmp_path: Path) -> None:
    lab = Lab.create(tmp_path, "d1", runtime="docker")
    assert lab.manifest.runtime == "docker"
    pacs, ct, net = config(lab, "pacs"), config(lab, "ct-1"), config(lab, "net")
    # own listeners bind every interface of the container (only 127.0.0.1 is published)
    assert pacs["dicom"]["host"] == pacs["admin"]["host"] == pacs["hl7"]["host"] == "0.0.0.0"
    # the CT sends through the department network node, by its id
    assert ct["destination"]["host"] == "net"
    assert ct["destination"]["port"] in lab.manifest.node("net").extra_ports
    # the proxy's links go on to the PACS and the RIS by id
    assert {link["upstream_host"] for link in net["links"]} <= {"pacs", "ris", "viewer"}
    # the administrator's workstation is the host
    rows = {row["ae_title"]: row for row in pacs["ae_table"]}
    assert rows["ADMIN_WS"]["host"] == HOST_ALIAS and rows["ADMIN_WS"]["port"] == 11113
    assert rows["CT_1"]["host"] == "ct-1"
    # the manifest keeps 127.0.0.1: the host reaches nodes through published ports
    assert {n.host for n in lab.manifest.nodes} == {"127.0.0.1"}


@pytest.mark.timeout(30)
def test_the_compose_export_describes_the_same_containers(tmp_path: Path) -> None:
    lab = Lab.create(tmp_path, "d2", runtime="docker")
    doc = compose_document(lab.manifest, lab.paths.root)
    yaml.safe_load(yaml.safe_dump(doc))  # valid YAML
    pacs = doc["services"]["pacs"]
    entry = lab.manifest.node("pacs")
    assert pacs["container_name"] == container_name("d2", "pacs", lab_key(lab.paths.root))
    assert f"127.0.0.1:{entry.dicom_port}:{entry.dicom_port}" in pacs["ports"]
    assert all(p.startswith("127.0.0.1:") for s in doc["services"].values() for p in s["ports"])
    assert pacs["networks"] == {lab.containers.network: {"aliases": ["pacs"]}}
    assert pacs["volumes"] == ["./nodes/pacs:/lab/nodes/pacs"]
    assert pacs["command"][-1] == "/lab/nodes/pacs/config.json"
    assert pacs["user"] == f"{os.getuid()}:{os.getgid()}"  # the node directory stays ours
    # the storage faults' scratch volumes, size-limited as `lab up` makes them
    assert f"{TMPFS_ROOT}/storage:size={TMPFS_KB['storage']}k" in pacs["tmpfs"][0]
    assert set(doc["services"]) == {n.node_id for n in lab.manifest.nodes}

    local = Lab.create(tmp_path, "d3")
    with pytest.raises(ComposeError, match="--runtime docker"):
        compose_document(local.manifest, local.paths.root)


@pytest.mark.timeout(30)
def test_a_port_says_which_node_an_address_means(tmp_path: Path) -> None:
    """What the action engine writes for an address on docker: the node that owns the port,
    whether it was typed as 127.0.0.1 or left under another node's id (a port-only change)."""
    lab = Lab.create(tmp_path, "d5", runtime="docker")
    pacs, net = lab.manifest.node("pacs"), lab.manifest.node("net")
    assert lab.node_facing_host("127.0.0.1", pacs.hl7_port) == "pacs"
    assert lab.node_facing_host("net", pacs.hl7_port) == "pacs"
    assert lab.node_facing_host("pacs", net.extra_ports[0]) == "net"
    assert lab.node_facing_host("localhost", 11113) == HOST_ALIAS  # ADMIN_WS, on the host
    assert lab.node_facing_host("net", 1) == "net"  # a wrong port stays wrong
    assert lab.node_facing_host("pacs.example.org", pacs.dicom_port) == "pacs.example.org"
    local = Lab.create(tmp_path, "d6")
    assert local.node_facing_host("127.0.0.1", pacs.hl7_port) == "127.0.0.1"


@pytest.mark.timeout(30)
def test_an_unknown_runtime_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="use local or docker"):
        Lab.create(tmp_path, "d4", runtime="podman")


# ------------------------------------------------------------------------- a real engine
# One worker runs them all, in file order (pytest -n 2 --dist loadgroup, as .ci/test does):
# a department of containers on the vfs storage driver is worth building once.
docker = pytest.mark.xdist_group("docker")


def docker_client() -> Any:
    try:
        return engine()
    except DockerUnavailable as exc:
        pytest.skip(f"no Docker engine: {exc}")


@pytest.fixture(scope="module")
def docker_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    client = docker_client()
    from simlab.runtime import docker_image

    docker_image.make_base_image(client)  # a no-op when the base image exists
    lab = Lab.create(tmp_path_factory.mktemp("docker-home"), "dk", runtime="docker")
    try:
        lab.up(timeout=300)
        yield lab
    finally:
        lab.down()


@docker
@pytest.mark.timeout(1500)
def test_the_department_runs_in_containers_on_its_own_network(docker_lab: Lab) -> None:
    client = docker_client()
    assert {s.state for s in docker_lab.status()} == {"up"}
    for entry in docker_lab.manifest.nodes:
        container = client.containers.get(docker_lab.containers.name(entry.node_id))
        assert container.status == "running"
        assert container.labels["org.simlab.node"] == entry.node_id
        bindings = container.attrs["HostConfig"]["PortBindings"]
        assert bindings, entry.node_id
        assert {b["HostIp"] for v in bindings.values() for b in v} == {"127.0.0.1"}
        networks = container.attrs["NetworkSettings"]["Networks"]
        assert list(networks) == [docker_lab.containers.network]
    # the nodes log into the lab directory, as on the local runtime
    assert "DICOM listener" in docker_lab.paths.log("pacs").read_text(encoding="utf-8")


@docker
@pytest.mark.timeout(300)
@pytest.mark.skipif(shutil.which("storescu") is None, reason="DCMTK is not installed")
def test_dcmtk_on_the_host_stores_and_finds_through_the_published_port(
    docker_lab: Lab, tmp_path: Path
) -> None:
    docker_client()
    pacs = docker_lab.manifest.node("pacs")
    port = str(pacs.dicom_port)
    echo = subprocess.run(
        ["echoscu", "-aet", "ADMIN_WS", "-aec", "SIMLAB_PACS", "127.0.0.1", port],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert echo.returncode == 0, echo.stderr
    ds = dicom_files.ct()
    path = dicom_files.write(ds, tmp_path)
    store = subprocess.run(
        ["storescu", "-aet", "ADMIN_WS", "-aec", "SIMLAB_PACS", "127.0.0.1", port, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert store.returncode == 0, store.stderr
    find = subprocess.run(
        [
            *("findscu", "-S", "-aet", "ADMIN_WS", "-aec", "SIMLAB_PACS"),
            *("-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={ds.StudyInstanceUID}"),
            *("-k", "NumberOfStudyRelatedInstances", "127.0.0.1", port),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert find.returncode == 0, find.stderr
    assert re.search(r"IS \[1 ?\]\s+#.*NumberOfStudyRelatedInstances", find.stderr), find.stderr
    # the file sits in the PACS's directory of the lab, written by the container as us
    stored = [p for p in docker_lab.paths.node_dir("pacs").rglob("*") if p.is_file()]
    assert stored and all(p.stat().st_uid == docker_lab.paths.root.stat().st_uid for p in stored)


@docker
@pytest.mark.timeout(300)
def test_nodes_reach_each_other_by_id_on_the_lab_network(docker_lab: Lab) -> None:
    """C-ECHO from the CT's console to the PACS: CT → net → PACS, all by node id."""
    docker_client()
    result = run_action(docker_lab, "test", {"action": "dicom.echo", "from": "ct-1", "to": "pacs"})
    assert result.ok, result.text
    assert "@net:" in result.text and "Success" in result.text


@docker
@pytest.mark.timeout(300)
def test_a_killed_node_is_seen_and_a_restart_brings_it_back(docker_lab: Lab) -> None:
    docker_client()
    docker_lab.signal_node("viewer", signal.SIGKILL)
    died = poll(docker_lab.poll_exits, bool, 30, "the viewer's exit")
    assert [e.node_id for e in died] == ["viewer"]
    assert any(e["kind"] == "node_exited" for e in docker_lab.events.read())
    docker_lab.start_node("viewer", timeout=60)
    assert {s.entry.node_id: s.state for s in docker_lab.status()}["viewer"] == "up"


@docker
@pytest.mark.timeout(300)
@pytest.mark.skipif(shutil.which("storescu") is None, reason="DCMTK is not installed")
def test_disk_full_is_a_real_enospc_in_the_pacs_container(docker_lab: Lab, tmp_path: Path) -> None:
    """No root on the host is needed: the PACS's container has its own 4 MiB tmpfs."""
    docker_client()
    faults = FaultManager(docker_lab, seed=7)
    pacs = docker_lab.client("pacs")
    before = pacs.get("/stats")["objects_dir"]
    faults.inject("full", "disk_full", {})
    stats = pacs.get("/stats")
    assert stats["objects_dir"] == f"{TMPFS_ROOT}/storage/data"
    assert stats["disk_free_bytes"] == 0, stats

    pacs_entry = docker_lab.manifest.node("pacs")
    ds = dicom_files.ct()
    store = storescu(pacs_entry.dicom_port, dicom_files.write(ds, tmp_path))
    assert "Received Store Response (Refused: OutOfResources)" in store.stdout, store.stdout
    poll(
        lambda: docker_lab.paths.log("pacs").read_text(encoding="utf-8"),
        lambda t: "0xA700 Refused: Out of resources (disk full: No space left on device" in t,
        20,
        "the PACS to log the ENOSPC",
    )
    with pytest.raises(AdminApiError) as missing:
        pacs.get(f"/studies/{ds.StudyInstanceUID}")
    assert missing.value.status == 404

    faults.revert("full")
    assert pacs.get("/stats")["objects_dir"] == before
    store = storescu(pacs_entry.dicom_port, dicom_files.write(ds, tmp_path))
    assert store.returncode == 0, store.stdout
    assert pacs.get(f"/studies/{ds.StudyInstanceUID}")["instance_count"] == 1


@docker
@pytest.mark.timeout(300)
def test_an_address_typed_as_127_0_0_1_reaches_the_node_behind_that_port(
    docker_lab: Lab, tmp_path: Path
) -> None:
    """The administrator sees every node on 127.0.0.1; inside a container that is the container
    itself, so the action engine writes the node's id, and the C-MOVE reaches the viewer."""
    docker_client()
    viewer = docker_lab.manifest.node("viewer")
    row = {"action": "ae.put", "node": "pacs", "ae_title": viewer.ae_title}
    put = run_action(docker_lab, "test", {**row, "host": "127.0.0.1", "port": viewer.dicom_port})
    assert put.ok, put.text
    assert put.data["host"] == "viewer", put.data
    assert docker_lab.node_facing_host("127.0.0.1", 11112) == HOST_ALIAS
    assert docker_lab.node_facing_host("pacs.example.org", 104) == "pacs.example.org"
    ds = dicom_files.ct()
    stored = run_action(
        docker_lab, "test", {"action": "dicom.store", "to": "pacs",
                             "files": [str(dicom_files.write(ds, tmp_path))]},
    )  # fmt: skip
    assert stored.ok, stored.text
    moved = run_action(
        docker_lab, "test", {"action": "dicom.move", "to": "pacs",
                             "destination": viewer.ae_title, "level": "STUDY",
                             "query": {"StudyInstanceUID": ds.StudyInstanceUID}},
    )  # fmt: skip
    assert moved.ok and "1 completed" in moved.text, moved.text


@docker
@pytest.mark.timeout(400)
def test_simulate_day_reconciles_every_order_in_containers(docker_lab: Lab) -> None:
    """The whole department's workflow across the lab network: ADT/ORM RIS → PACS, MWL,
    MPPS, C-STORE, storage commitment back to the modality, the viewer's C-FIND/C-MOVE."""
    docker_client()
    done = subprocess.run(
        [sys.executable, "-m", "simlab", "lab", "simulate-day", "--home",
         str(docker_lab.paths.home), "--lab", "dk", "--studies", "4", "--seed", "5", "--json"],
        capture_output=True, text=True, timeout=360,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True and len(report["orders"]) == 4
    for order in report["orders"]:
        assert all(order["checks"].values()), order


@docker
@pytest.mark.timeout(600)
def test_down_leaves_no_container_or_network(docker_lab: Lab) -> None:
    """The module's last test: `down` removes every container and the lab's network."""
    docker_client()
    assert docker_lab.containers.leftovers()
    docker_lab.down()
    assert docker_lab.containers.leftovers() == []
    assert {s.state for s in docker_lab.status()} == {"not started"}
    # the lab directory is still the whole record
    assert docker_lab.paths.log("pacs").exists() and docker_lab.paths.config("pacs").exists()
