"""Scenarios played and scored on the docker runtime, as on the local one.

In the suite, `pacs-crashed`, which exercises what differs in containers: the fault is a
`docker kill` of the PACS's container, the reference solution restarts it (a new container on
the same bind-mounted data), the modalities' queues drain across the lab network, and scoring
reads the real state through the published ports. Skipped, with the reason, where no Docker
engine answers. `SIMLAB_DOCKER_SCENARIOS=all` plays every shipped scenario this way.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from simlab.runtime.docker_engine import DockerUnavailable, engine
from simlab.scenarios.catalog import find_scenario, scenarios_dir
from simlab.scenarios.engine import ScenarioRun
from tests import scenario_harness as h

pytestmark = [pytest.mark.xdist_group("docker")]

SCENARIOS = os.environ.get("SIMLAB_DOCKER_SCENARIOS", "pacs-crashed")
"""Which scenarios to play on docker: `pacs-crashed` in the suite (each costs a department of
containers); `SIMLAB_DOCKER_SCENARIOS=all` (or a comma list) plays every shipped one."""


def _chosen() -> list[str]:
    if SCENARIOS.strip() == "all":
        return sorted(p.stem for p in scenarios_dir().glob("*.yaml"))
    return [name.strip() for name in SCENARIOS.split(",") if name.strip()]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", _chosen())
def test_the_reference_solution_scores_full_marks_in_containers(name: str, tmp_path: Path) -> None:
    try:
        engine()
    except DockerUnavailable as exc:
        pytest.skip(f"no Docker engine: {exc}")
    path = find_scenario(name)
    run = ScenarioRun.start(tmp_path, path, "dkscn", actor="trainee", runtime="docker")
    try:
        assert run.lab.manifest.runtime == "docker"
        h.wait_for_faults(run, timeout=120)
        assert h.unmet(h.objectives_after(run, timeout=0)), "the faults left every objective met"
        h.apply(run, run.scenario.solution)
        assert h.unmet(h.objectives_after(run, 240)) == []
        result = h.submit_with_answers(run)
        assert result.score.percent == 100.0, result.score.as_dict()
    finally:
        run.lab.down()
    assert run.lab.containers.leftovers() == []
