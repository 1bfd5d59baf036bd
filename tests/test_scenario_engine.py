"""The scenario engine on a real lab: seeding by seed, event triggers in order, reveals,
hints, the fault manager's revert, and the journal the report is built from."""

from __future__ import annotations

from pathlib import Path

import pytest

from simlab.faults.manager import FaultManager
from simlab.scenarios.engine import ScenarioRun
from tests import scenario_harness as h
from tests.conftest import requires_dcmtk
from tests.polling import poll

CHAIN = Path(__file__).parent / "data" / "trigger-chain.yaml"


@requires_dcmtk
@pytest.mark.timeout(240)
def test_event_triggers_fire_in_order_and_the_same_seed_gives_the_same_data(
    tmp_path: Path,
) -> None:
    run = ScenarioRun.start(tmp_path, CHAIN, "chain")
    try:
        refs = run.state.refs
        assert refs["fixed"]["name"] == "TEST^FIXED"
        assert refs["mueller"]["name"] != refs["fixed"]["name"]
        # scan_first runs at start; the PACS stores it → `full` fires → scan_second runs.
        poll(
            lambda: run.tick() or run.state.activities_done,
            lambda d: "scan_second" in d,
            60,
            "the second scan to be triggered",
        )
        kinds = [
            (e["kind"], e.get("fault") or e.get("activity"))
            for e in run.lab.events.read()
            if e["kind"] in ("activity", "fault_injected")
        ]
        assert kinds == [
            ("activity", "scan_first"),
            ("fault_injected", "full"),
            ("activity", "scan_second"),
        ]
        results = {o.id: o for o in run.objectives()}
        assert results["first_in"].result.ok
        assert results["second_in"].revealed and not results["second_in"].result.ok
        assert (
            "0xA700"
            in poll(
                lambda: run.lab.client("cr-1").get("/queue", state="failed")["items"],
                bool,
                60,
                "the second scan's images to be refused",
            )[0]["reason"]
        )
        assert run.take_hint("nudge") == "Read the send queue."
        FaultManager(run.lab).revert("full")
        run.lab.client("cr-1").post("/queue/retry", {})
        assert h.unmet(h.objectives_after(run, 60)) == []
        score = h.submit_with_answers(run).score
        assert score.by_category("hints") == -5
        assert score.percent == 95.0
        first_refs = {k: dict(v) for k, v in refs.items()}
    finally:
        run.lab.down()

    again = ScenarioRun.start(tmp_path, CHAIN, "chain2")
    try:
        assert {
            k: v["name"] if "name" in v else v["accession"] for k, v in again.state.refs.items()
        } == {k: v["name"] if "name" in v else v["accession"] for k, v in first_refs.items()}
        assert again.state.refs["prior"]["study_uid"] == first_refs["prior"]["study_uid"]
    finally:
        again.lab.down()
