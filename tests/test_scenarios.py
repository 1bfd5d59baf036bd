"""Every shipped scenario, three ways: untouched (objectives fail), the reference solution
(full marks), and each tempting wrong fix (penalised below its `max_percent`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from simlab.scenarios.catalog import scenario_catalog, scenarios_dir
from simlab.scenarios.loader import load_scenario
from tests import scenario_harness as h
from tests.conftest import requires_dcmtk

SCENARIOS = sorted(scenarios_dir().glob("*.yaml"))
WRONG_FIXES = [
    (path, index) for path in SCENARIOS for index in range(len(load_scenario(path).wrong_fixes))
]


def test_every_shipped_scenario_is_valid() -> None:
    entries = scenario_catalog()
    assert entries, "no scenarios shipped"
    assert [e.error for e in entries if e.scenario is None] == []


@requires_dcmtk
@pytest.mark.timeout(240)
@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_untouched_fails_and_the_reference_solution_scores_full_marks(
    path: Path, tmp_path: Path
) -> None:
    run = h.start(tmp_path, path, "ref")
    try:
        h.wait_for_faults(run)
        untouched = h.objectives_after(run, timeout=0)
        assert h.unmet(untouched), "the faults left every objective met"
        h.apply(run, run.scenario.solution)
        results = h.objectives_after(run, h.SOLVE_SECONDS)
        assert h.unmet(results) == []
        result = h.submit_with_answers(run)
        score = result.score
        assert score.percent == 100.0, score.as_dict()
        assert result.paths["html"].read_text(encoding="utf-8").startswith("<!doctype html>")
    finally:
        run.lab.down()


@requires_dcmtk
@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    ("path", "index"), WRONG_FIXES, ids=lambda v: v.stem if isinstance(v, Path) else str(v)
)
def test_a_tempting_wrong_fix_is_penalised(path: Path, index: int, tmp_path: Path) -> None:
    run = h.start(tmp_path, path, "wrong")
    try:
        fix = run.scenario.wrong_fixes[index]
        h.wait_for_faults(run)
        h.apply(run, fix.actions)
        h.objectives_settled(run, fix.settle_seconds)
        score = h.submit_with_answers(run).score
        assert score.percent <= fix.max_percent, score.as_dict()
    finally:
        run.lab.down()
