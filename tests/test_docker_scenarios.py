"""A scenario played and scored on the docker runtime, as on the local one.

`pacs-crashed` exercises what differs in containers: the fault is a `docker kill` of the PACS's
container, the reference solution restarts it (a new container on the same bind-mounted data),
the modalities' queues drain across the lab network, and scoring reads the real state through
the published ports. Skipped, with the reason, where no Docker engine answers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from simlab.runtime.docker_engine import DockerUnavailable, engine
from simlab.scenarios.catalog import find_scenario
from simlab.scenarios.engine import ScenarioRun
from tests import scenario_harness as h

pytestmark = [pytest.mark.xdist_group("docker")]


@pytest.mark.timeout(900)
def test_pacs_crashed_is_solved_and_scored_in_containers(tmp_path: Path) -> None:
    try:
        engine()
    except DockerUnavailable as exc:
        pytest.skip(f"no Docker engine: {exc}")
    path = find_scenario("pacs-crashed")
    run = ScenarioRun.start(tmp_path, path, "dkscn", actor="trainee", runtime="docker")
    try:
        assert run.lab.manifest.runtime == "docker"
        h.wait_for_faults(run, timeout=120)
        assert h.unmet(h.objectives_after(run, timeout=0)), "the crash left every objective met"
        assert not run.lab.containers.running(run.lab.manifest.node("pacs"))
        h.apply(run, run.scenario.solution)
        assert h.unmet(h.objectives_after(run, 240)) == []
        result = h.submit_with_answers(run)
        assert result.score.percent == 100.0, result.score.as_dict()
    finally:
        run.lab.down()
    assert run.lab.containers.leftovers() == []
