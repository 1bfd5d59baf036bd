"""Play a scenario the three ways design.md section 4 asks: untouched, reference, wrong fix.

Everything is real: the lab boots, the scenario seeds it and fires its faults, the reference
solution's actions go through the same action engine as `simlab admin`, and the score comes
from the objectives' probes of the real nodes.
"""

from __future__ import annotations

import time
from pathlib import Path

from simlab.scenarios.engine import ObjectiveStatus, ScenarioRun
from simlab.scenarios.schema import Scenario
from simlab.scenarios.submission import Submission, submit
from simlab.workflow.actions import run_action
from tests.polling import poll

SOLVE_SECONDS = 90.0
"""How long a fix may take to show in the lab (queues retry, HL7 flows, images arrive)."""


def start(home: Path, path: Path, lab_id: str) -> ScenarioRun:
    return ScenarioRun.start(home, path, lab_id, actor="trainee")


def wait_for_faults(run: ScenarioRun, timeout: float = 60.0) -> None:
    """Tick until every fault and activity not waiting for the trainee has fired: timed and
    event-triggered faults must be in place before a solution is tried, or the test would
    judge a lab the scenario has not finished breaking."""
    waiting_for_trainee = {"objective_met"}
    pending = [
        spec.id
        for spec in [*run.scenario.faults, *run.scenario.activity]
        if not (spec.trigger.on and spec.trigger.on.event in waiting_for_trainee)
    ]

    def missing() -> list[str]:
        run.tick()
        done = set(run.state.fired) | set(run.state.activities_done)
        return [i for i in pending if i not in done]

    poll(missing, lambda m: not m, timeout, "every fault and activity to fire", 0.2)


def right_answers(scenario: Scenario) -> dict[str, str]:
    return {
        q.id: (q.answer if q.choices is not None else (q.accepted or [""])[0]) or ""
        for q in scenario.questions
    }


def apply(run: ScenarioRun, steps: list[dict], actor: str = "trainee") -> list[str]:
    """Run admin actions as the trainee; returns the failures' texts (a step may fail on
    purpose, as a diagnosis that shows the fault does)."""
    failures = []
    for step in steps:
        result = run_action(run.lab, actor, run.fill(step))
        if not result.ok:
            failures.append(f"{step.get('action')}: {result.text}")
    return failures


def objectives_after(run: ScenarioRun, timeout: float) -> list[ObjectiveStatus]:
    """Tick the scenario and evaluate until every objective is met or `timeout` passes."""

    def evaluate() -> list[ObjectiveStatus]:
        run.tick()
        return run.objectives(record=False)

    return poll(
        evaluate, lambda rs: all(r.result.ok for r in rs), timeout, "objectives", 0.5, fail=False
    )


QUIET_SECONDS = 3.0
"""A wrong fix has played out when no objective changed for this long and nothing is still
waiting to be sent (images at a modality, HL7 at the RIS)."""


def objectives_settled(run: ScenarioRun, timeout: float) -> list[ObjectiveStatus]:
    """Tick and evaluate until every objective is met, or the lab has gone quiet (no objective
    changed for QUIET_SECONDS, no image waiting in a modality's queue), or `timeout` passes."""
    deadline = time.monotonic() + timeout
    last: tuple[bool, ...] | None = None
    since = time.monotonic()
    while True:
        run.tick()
        results = run.objectives(record=False)
        flags = tuple(r.result.ok for r in results)
        now = time.monotonic()
        if flags != last:
            last, since = flags, now
        if all(flags) or now > deadline:
            return results
        if now - since >= QUIET_SECONDS and not _images_waiting(run):
            return results
        time.sleep(0.5)


def _images_waiting(run: ScenarioRun) -> bool:
    """An image or an HL7 message still on its way (it may yet change an objective)."""
    for entry in run.lab.manifest.nodes:
        if entry.role == "modality":
            counts = run.lab.client(entry.node_id).get("/queue")["counts"]
            if counts.get("pending", 0) or counts.get("sending", 0):
                return True
        elif entry.role == "ris" and run.lab.client("ris").get("/queue", state="pending"):
            return True
    return False


def unmet(results: list[ObjectiveStatus]) -> list[str]:
    return [f"{r.id}: {r.result.evidence}" for r in results if not r.result.ok]


def submit_with_answers(run: ScenarioRun) -> Submission:
    return submit(run, right_answers(run.scenario))
