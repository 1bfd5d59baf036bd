"""`simlab run SCENARIO --runtime docker`: the scenario's lab is made on the docker runtime; with
no engine the command fails in words and leaves nothing running; an unknown runtime is a usage
error. No container is started here: DOCKER_HOST names no engine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from simlab.runtime.lab import Lab
from tests.conftest import node_processes

NO_ENGINE = "unix:///nonexistent/docker.sock"
SCENARIO = "ct-wrong-called-ae"


def simlab(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simlab.cli.main", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        env={**os.environ, "SIMLAB_ACTOR": "alice", **env},
        timeout=60,
        check=False,
    )


def words(text: str) -> str:
    """Output with the console's line wrapping undone."""
    return re.sub(r"\s+", " ", text)


@pytest.mark.timeout(90)
def test_run_on_docker_without_an_engine_fails_in_words_and_leaves_nothing_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)  # for Lab.open below, as for the command
    out = simlab(tmp_path, "run", SCENARIO, "--headless", "--runtime", "docker")
    assert out.returncode != 0, out.stdout
    said = words(out.stderr)
    assert "no Docker engine answers" in said and NO_ENGINE in said, out.stderr
    assert "Traceback" not in out.stderr
    lab = Lab.open(tmp_path, "default")
    assert lab.manifest.runtime == "docker"
    assert all(e.pid is None and e.container is None for e in lab.manifest.nodes)
    assert not any(lab.node_running(e) for e in lab.manifest.nodes)
    assert node_processes(tmp_path / "labs" / "default") == []


@pytest.mark.timeout(60)
def test_an_unknown_runtime_is_a_usage_error(tmp_path: Path) -> None:
    out = simlab(tmp_path, "run", SCENARIO, "--headless", "--runtime", "bogus")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "unknown runtime 'bogus'" in words(out.stderr)
    assert not (tmp_path / "labs").exists() or list((tmp_path / "labs").iterdir()) == []
    up = simlab(tmp_path, "lab", "up", "--runtime", "bogus", "-d")
    assert up.returncode == 2 and "unknown runtime 'bogus'" in words(up.stderr)


@pytest.mark.timeout(60)
def test_run_offers_the_runtime_and_base_options() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "simlab.cli.main", "run", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "--runtime" in out.stdout and "--base" in out.stdout
