"""Scoring: deterministic, explained, from the real state of the lab and the journal.

The score is built of named lines, each with its points and the reason, so a trainee (and an
instructor disputing it) sees exactly where every point came from:
objectives met (weighted share of the scenario's points), root-cause answers, hints taken,
time over the expected, and collateral damage — acknowledged images lost, config keys changed
that the fix did not need, nodes restarted that needed no restart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from simlab.client.admin import AdminApiError
from simlab.runtime.docker_runtime import ADDRESS_KEYS
from simlab.scenarios.checks import (
    CheckContext,
    flatten_config,
    key_matches,
    lost_instances,
)
from simlab.scenarios.engine import ObjectiveStatus, ScenarioRun
from simlab.scenarios.schema import Question, Scenario

RESTARTS = ("node.restart", "node.stop")
"""Actions that take a node's service away from the department for a while."""


@dataclass
class ScoreLine:
    """One reason points were given or taken."""

    category: str
    label: str
    points: float
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "label": self.label,
            "points": round(self.points, 2),
            "detail": self.detail,
        }


@dataclass
class Score:
    """The score of one session, with every line that made it."""

    lines: list[ScoreLine]
    maximum: float
    pass_percent: float
    objectives: list[ObjectiveStatus] = field(default_factory=list)

    @property
    def total(self) -> float:
        return max(0.0, round(sum(line.points for line in self.lines), 2))

    @property
    def percent(self) -> float:
        return round(100.0 * self.total / self.maximum, 1) if self.maximum else 0.0

    @property
    def passed(self) -> bool:
        return self.percent >= self.pass_percent

    def by_category(self, category: str) -> float:
        return round(sum(line.points for line in self.lines if line.category == category), 2)

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "maximum": self.maximum,
            "percent": self.percent,
            "passed": self.passed,
            "pass_percent": self.pass_percent,
            "categories": {
                c: self.by_category(c)
                for c in ("objectives", "questions", "hints", "time", "collateral")
            },
            "lines": [line.as_dict() for line in self.lines],
        }


def score_session(run: ScenarioRun, elapsed_seconds: float) -> Score:
    """Judge the lab now: objectives, answers, hints, time, collateral damage."""
    scenario = run.scenario
    objectives = run.objectives(record=False)
    lines = objective_lines(scenario, objectives)
    lines += question_lines(scenario.questions, run.state.answers)
    for hint_id in run.state.hints_taken:
        hint = next((h for h in scenario.hints if h.id == hint_id), None)
        if hint is not None:
            lines.append(ScoreLine("hints", f"hint {hint_id}", -hint.cost, hint.text[:80]))
    lines += time_lines(scenario, elapsed_seconds)
    lines += collateral_lines(run)
    maximum = scenario.points + sum(q.points for q in scenario.questions)
    return Score(lines, maximum, scenario.pass_percent, objectives)


def objective_lines(scenario: Scenario, objectives: list[ObjectiveStatus]) -> list[ScoreLine]:
    weights = sum(o.weight for o in objectives) or 1.0
    out = []
    for obj in objectives:
        worth = scenario.points * obj.weight / weights
        out.append(
            ScoreLine(
                "objectives",
                obj.title,
                worth if obj.result.ok else 0.0,
                f"{'met' if obj.result.ok else 'not met'} ({worth:.1f} pts): {obj.result.evidence}",
            )
        )
    return out


def normalise(text: str) -> str:
    """How short answers are compared: case, spaces and punctuation do not matter."""
    return re.sub(r"[^0-9a-z]+", " ", text.casefold()).strip()


def question_lines(questions: list[Question], answers: dict[str, str]) -> list[ScoreLine]:
    out = []
    for q in questions:
        given = answers.get(q.id, "")
        if q.choices is not None:
            right = given.strip().casefold() == (q.answer or "").casefold()
            expected = f"{q.answer}) {q.choices[q.answer or '']}"
        else:
            right = normalise(given) in {normalise(a) for a in q.accepted or []}
            expected = (q.accepted or [""])[0]
        detail = f"answered {given!r}" if given else "not answered"
        if not right:
            detail += f"; expected {expected}"
        out.append(ScoreLine("questions", q.text, q.points if right else 0.0, detail))
    return out


def time_lines(scenario: Scenario, elapsed_seconds: float) -> list[ScoreLine]:
    minutes = elapsed_seconds / 60.0
    over = minutes - scenario.expected_minutes
    if over <= 0:
        return [
            ScoreLine(
                "time",
                "time",
                0.0,
                f"{minutes:.1f} of {scenario.expected_minutes:g} expected minutes",
            )
        ]
    penalty = min(scenario.penalties.time_max, over * scenario.penalties.time_per_minute_over)
    return [
        ScoreLine(
            "time",
            "time over the expected",
            -penalty,
            f"{minutes:.1f} min, {over:.1f} over {scenario.expected_minutes:g}",
        )
    ]


def collateral_lines(run: ScenarioRun) -> list[ScoreLine]:
    """Damage a fix did on the way: lost images, unrelated config, needless restarts."""
    p = run.scenario.penalties
    out: list[ScoreLine] = []
    ctx = CheckContext(run.lab, run.state.refs)
    try:
        missing, _total = lost_instances(ctx)
    except AdminApiError:  # a PACS that cannot answer is judged by the objectives
        missing = []
    if missing:
        studies = _studies_of(ctx, missing)
        for study in sorted(studies):
            out.append(
                ScoreLine(
                    "collateral",
                    "acknowledged images lost",
                    -p.data_lost,
                    f"study {study}: {studies[study]} acknowledged images are gone",
                )
            )
    for node, key, before, after in config_drift(run):
        out.append(
            ScoreLine(
                "collateral",
                "unrelated config change",
                -p.unrelated_config_change,
                f"{node} {key}: {before!r} → {after!r}",
            )
        )
    for event in run.lab.events.read():
        if event.get("kind") != "action" or event.get("action") not in (
            "node.restart",
            "node.stop",
        ):
            continue
        if not event.get("ok", True) or event.get("actor") in ("scenario", "department"):
            continue
        node = (event.get("args") or {}).get("node", "")
        if node in p.restart_ok:
            continue
        out.append(
            ScoreLine(
                "collateral",
                "needless restart",
                -p.needless_restart,
                f"{event.get('actor', 'trainee')} ran {event['action']} on {node}",
            )
        )
    return out


def config_drift(run: ScenarioRun) -> list[tuple[str, str, Any, Any]]:
    """Config keys that differ from before the faults and that neither a fault touched nor the
    scenario allows a fix to change: (node, key, before, now)."""
    allowed = run.scenario.penalties.allowed_changes
    out = []
    for entry in run.lab.manifest.nodes:
        baseline = run.state.baseline_config.get(entry.node_id)
        if baseline is None:
            continue
        try:
            now = flatten_config(run.lab.client(entry.node_id).get("/config"))
        except AdminApiError:  # a node that is down is judged by the objectives
            now = baseline
        for key in sorted(set(baseline) | set(now)):
            if baseline.get(key) == now.get(key):
                continue
            if any(
                f"{entry.node_id}:{k}" in run.state.fault_keys
                or any(key_matches(pattern, entry.node_id, k) for pattern in allowed)
                for k in (key, *_address_partner(key))
            ):
                continue
            out.append((entry.node_id, key, baseline.get(key), now.get(key)))
    return out


def _address_partner(key: str) -> tuple[str, ...]:
    """The port key beside a host key: an address is one setting, so a host that changed with
    a port a fault broke or a fix may change is part of that change (on docker a peer's host
    is the id of the node that owns the port, so fixing the port moves the host with it)."""
    head, _, last = key.rpartition(".")
    for host_key, port_key in ADDRESS_KEYS:
        if last == host_key:
            return (f"{head}.{port_key}" if head else port_key,)
    return ()


def _studies_of(ctx: CheckContext, missing: list[str]) -> dict[str, int]:
    """Study UID → number of missing instances (from the modalities' records)."""
    lost = set(missing)
    out: dict[str, int] = {}
    for entry in ctx.lab.manifest.nodes:
        if entry.role != "modality":
            continue
        for proc in ctx.get(entry.node_id, "/procedures"):
            for series in proc.get("series", []):
                for uid in series.get("instances", []):
                    if uid in lost:
                        out[proc["study_instance_uid"]] = out.get(proc["study_instance_uid"], 0) + 1
    return out or {"(unknown study)": len(missing)}
