"""Play a scenario in a lab: boot, seed, gate, fire faults on their triggers, judge, submit.

The engine is headless (the CLI and the TUI drive the same object). Every step lands in the
lab's journal: scenario_started, gate, fault_injected, activity, objective results, hints,
submit; the report is rendered from it. Timing triggers are checked by `tick()`, which the
runner calls in a bounded loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simlab.client.admin import AdminApiError
from simlab.faults.manager import FaultManager
from simlab.runtime.lab import Lab, LabError
from simlab.runtime.topology import NodeSpec, default_department
from simlab.scenarios.checks import CheckContext, CheckResult, evaluate, flatten_config
from simlab.scenarios.loader import load_scenario
from simlab.scenarios.schema import PLACEHOLDER, Scenario, Trigger
from simlab.scenarios.seeding import order_rng, perform, place_order, seed_lab, walk_in
from simlab.scenarios.session import SessionState, load_session, save_session
from simlab.workflow.actions import run_action

Progress = Callable[[str], None]


class ScenarioError(RuntimeError):
    """The scenario cannot run in this lab (message says why)."""


@dataclass
class ObjectiveStatus:
    """An objective as the trainee sees it at a check."""

    id: str
    title: str
    weight: float
    revealed: bool
    result: CheckResult
    fail_message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "weight": self.weight,
            "revealed": self.revealed,
            "ok": self.result.ok,
            "evidence": self.result.evidence,
            "fail_message": "" if self.result.ok else self.fail_message,
        }


def scenario_specs(scenario: Scenario) -> Callable[[Callable[[int], list[int]]], list[NodeSpec]]:
    """The department restricted to the scenario's nodes (its network node always kept)."""

    def factory(allocate: Callable[[int], list[int]]) -> list[NodeSpec]:
        specs = default_department(allocate)
        wanted = set(scenario.topology.nodes)
        if not wanted:
            return specs
        return [s for s in specs if s.config.node_id in wanted or s.config.role == "network"]

    return factory


class ScenarioRun:
    """A scenario bound to a lab and its session state."""

    def __init__(self, lab: Lab, scenario: Scenario, state: SessionState) -> None:
        self.lab = lab
        self.scenario = scenario
        self.state = state
        self.faults = FaultManager(lab, seed=scenario.seed)

    # ------------------------------------------------------------------------ construction
    @classmethod
    def start(
        cls,
        home: Path,
        scenario_path: Path,
        lab_id: str,
        progress: Progress | None = None,
        actor: str = "trainee",
        runtime: str = "local",
        docker_base: str | None = None,
    ) -> ScenarioRun:
        """Create the lab (on `runtime`: local or docker, whose node image builds from
        `docker_base`), boot it, seed it, pass the steady-state gate and fire start faults."""
        say = progress or (lambda _m: None)
        scenario = load_scenario(scenario_path)
        say(f"creating lab {lab_id} for {scenario.id}")
        lab = Lab.create(
            home,
            lab_id,
            specs_factory=scenario_specs(scenario),
            runtime=runtime,
            docker_base=docker_base,
        )
        state = SessionState(
            scenario_path=str(scenario_path.resolve()),
            scenario_id=scenario.id,
            seed=scenario.seed,
            actor=actor,
        )
        run = cls(lab, scenario, state)
        save_session(lab, state)
        say("starting the department")
        # containers on the vfs storage driver take ~45 s to boot: docker gets more time
        up_timeout = 300 if runtime == "docker" else 60
        lab.up(timeout=up_timeout, progress=lambda node, msg: say(f"{node}: {msg}"))
        run.configure_modalities()
        say("registering patients and placing orders")
        state.refs = seed_lab(lab, scenario)
        save_session(lab, state)
        run.gate(say)
        state.baseline_config = run._snapshot_configs()
        state.baseline_counts = run._pacs_counts()
        state.started_at = time.time()
        save_session(lab, state)
        lab.events.append("scenario_started", scenario=scenario.id, seed=scenario.seed)
        run.tick()
        lab.events.append("ticket_shown", subject=scenario.ticket.subject)
        return run

    @classmethod
    def resume(cls, lab: Lab) -> ScenarioRun:
        """The scenario session of a running lab (for check, hint, submit, the TUI)."""
        state = load_session(lab)
        if state is None:
            raise ScenarioError(f"lab {lab.manifest.lab_id} runs no scenario")
        return cls(lab, load_scenario(Path(state.scenario_path)), state)

    def configure_modalities(self) -> None:
        """Apply the scenario's acquisition size to every modality (before the baseline)."""
        size = self.scenario.topology.images_per_series
        if size is None:
            return
        for entry in self.lab.manifest.nodes:
            if entry.role == "modality":
                self.lab.client(entry.node_id).patch(
                    "/config", {"acquisition": {"images_per_series": size}}
                )

    # ------------------------------------------------------------------------ steady state
    def gate(self, say: Progress) -> None:
        """Chaos Toolkit's steady-state hypothesis: the lab is healthy before faults fire.

        A lab unhealthy for another reason says so instead of injecting, so a trainee never
        chases a problem the scenario did not mean.
        """
        problems = [f"{s.entry.node_id}: {s.state} {s.detail}" for s in self.lab.status()]
        problems = [p for p, s in zip(problems, self.lab.status(), strict=True) if s.state != "up"]
        ctx = self._ctx()
        for entry in self.lab.manifest.nodes:
            if entry.role == "modality":
                result = evaluate({"type": "echo", "from": entry.node_id, "to": "pacs"}, ctx)
                if not result.ok:
                    problems.append(result.evidence)
        self.lab.events.append("steady_state", ok=not problems, problems=problems)
        if problems:
            raise ScenarioError("the lab is not healthy before the faults: " + "; ".join(problems))
        say("steady state verified: every node up, every modality verifies the PACS")

    # ----------------------------------------------------------------------------- triggers
    def refresh(self) -> None:
        """Re-read the session: another process (check, hint, submit, TUI) may have changed it."""
        state = load_session(self.lab)
        if state is not None:
            self.state = state

    def tick(self) -> list[str]:
        """Fire every fault and activity whose trigger is due; returns what fired."""
        self.refresh()
        fired: list[str] = []
        for spec in self.scenario.faults:
            if spec.id in self.state.fired or not self._due(spec.trigger):
                continue
            self._inject(spec.id, spec.type, spec.params)
            fired.append(spec.id)
        for act in self.scenario.activity:
            if act.id in self.state.activities_done or not self._due(act.trigger):
                continue
            self._activity(act.id)
            fired.append(act.id)
        return fired

    def _due(self, trigger: Trigger) -> bool:
        if self.state.started_at is None:
            return False
        if trigger.at == "start":
            return True
        if trigger.after is not None:
            return time.time() - self.state.started_at >= trigger.after
        on = trigger.on
        assert on is not None
        if on.event in ("studies_stored", "instances_stored"):
            key = on.event.split("_")[0]
            now = self._pacs_counts().get(key, 0)
            return now - self.state.baseline_counts.get(key, 0) >= on.count
        done = {
            "fault_fired": self.state.fired,
            "activity_done": self.state.activities_done,
            "objective_met": self.state.met,
        }[on.event]
        return on.ref in done

    def _inject(self, fault_id: str, kind: str, params: dict[str, Any]) -> None:
        before = self._snapshot_configs()
        self.faults.inject(fault_id, kind, self.fill(params), actor="scenario")
        after = self._snapshot_configs()
        for node in sorted(set(before) | set(after)):
            a, b = before.get(node, {}), after.get(node, {})
            for key in sorted(set(a) | set(b)):
                if a.get(key) != b.get(key) and f"{node}:{key}" not in self.state.fault_keys:
                    self.state.fault_keys.append(f"{node}:{key}")
        self.state.fired.append(fault_id)
        save_session(self.lab, self.state)

    def _activity(self, act_id: str) -> None:
        act = next(a for a in self.scenario.activity if a.id == act_id)
        detail: dict[str, Any] = {}
        try:
            if act.place:
                spec = next(o for o in self.scenario.orders if o.ref == act.place)
                index = self.scenario.orders.index(spec)
                self.state.refs[act.place] = place_order(
                    self.lab, spec, self.state.refs, *order_rng(self.scenario, index)
                )
                detail = {"order": self.state.refs[act.place]["accession"]}
            elif act.perform or act.walk_in:
                order = self.state.refs[act.perform or act.walk_in or ""]
                (perform if act.perform else walk_in)(self.lab, order)
                detail = {"order": order["accession"], "station": order["station"]}
            elif act.action is not None:
                result = run_action(self.lab, "department", self.fill(act.action))
                detail = {"result": result.text}
                if not result.ok:
                    raise ScenarioError(result.text)
            ok = True
        except Exception as exc:
            ok, detail = False, {"error": str(exc)}
        self.state.activities_done.append(act_id)
        save_session(self.lab, self.state)
        self.lab.events.append("activity", activity=act_id, ok=ok, **detail)

    def fill(self, value: Any) -> Any:
        """Replace `${…}` placeholders (schema.PLACEHOLDER) by lookup, never by evaluation.

        A string that is exactly one placeholder takes the value's type (a port stays an int).
        """
        if isinstance(value, str):
            whole = PLACEHOLDER.fullmatch(value)
            if whole:
                return self._lookup(whole.group(1), whole.group(2))
            return PLACEHOLDER.sub(lambda m: str(self._lookup(m.group(1), m.group(2))), value)
        if isinstance(value, dict):
            return {k: self.fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.fill(v) for v in value]
        return value

    def _lookup(self, ref: str, field: str) -> Any:
        if ref == "baseline":
            node, _, key = field.partition(".")
            config = self.state.baseline_config.get(node, {})
            if key in config:
                return config[key]
        elif ref == "faults":
            fault_id, _, key = field.partition(".")
            for record in self.faults.active():
                if record.fault_id == fault_id and key in record.state:
                    return record.state[key]
        elif ref in self.state.refs:
            if field in self.state.refs[ref]:
                return self.state.refs[ref][field]
        elif any(n.node_id == ref for n in self.lab.manifest.nodes):
            entry = self.lab.manifest.node(ref).model_dump()
            if field in ("ae_title", "host", "dicom_port", "hl7_port", "admin_port"):
                return entry[field]
        raise ScenarioError(f"placeholder ${{{ref}.{field}}} matches nothing")

    # ---------------------------------------------------------------------------- judging
    def _ctx(self) -> CheckContext:
        return CheckContext(self.lab, self.state.refs)

    def objectives(self, record: bool = True) -> list[ObjectiveStatus]:
        """Evaluate every objective now; reveal the ones their prerequisites unlock."""
        self.refresh()
        ctx = self._ctx()
        results = {o.id: evaluate(self.fill(o.check), ctx) for o in self.scenario.objectives}
        met = {oid for oid, r in results.items() if r.ok}
        for oid in sorted(met):
            if oid not in self.state.met:
                self.state.met.append(oid)
        revealed = {
            o.id for o in self.scenario.objectives if o.reveal == "start" or o.reveal in met
        }
        self.state.revealed = sorted(set(self.state.revealed) | revealed)
        out = [
            ObjectiveStatus(
                o.id, o.title, o.weight, o.id in self.state.revealed, results[o.id], o.fail_message
            )
            for o in self.scenario.objectives
        ]
        # `met` is a fact about the lab that triggers (objective_met) wait for: always kept.
        save_session(self.lab, self.state)
        if record:
            self.lab.events.append(
                "objectives_checked",
                met=sorted(met),
                failed=sorted(set(results) - met),
            )
        return out

    def take_hint(self, hint_id: str, actor: str = "trainee") -> str:
        hint = next((h for h in self.scenario.hints if h.id == hint_id), None)
        if hint is None:
            raise ScenarioError(f"no hint {hint_id!r}")
        self.refresh()
        if hint_id not in self.state.hints_taken:
            self.state.hints_taken.append(hint_id)
            save_session(self.lab, self.state)
            self.lab.events.append("hint_taken", hint=hint_id, cost=hint.cost, actor=actor)
        return str(self.fill(hint.text))

    # ---------------------------------------------------------------------------- helpers
    def _snapshot_configs(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for entry in self.lab.manifest.nodes:
            try:
                config = self.lab.client(entry.node_id).get("/config")
            except AdminApiError:  # a node that is down has no config to compare
                config = None
            if config is not None:
                out[entry.node_id] = flatten_config(config)
        return out

    def _pacs_counts(self) -> dict[str, int]:
        try:
            stats = self.lab.client("pacs").get("/stats")
        except AdminApiError:  # a PACS that is down stores nothing
            return {}
        return {k: int(stats.get(k, 0)) for k in ("studies", "instances")}


def lab_error_text(exc: Exception) -> str:
    return str(exc) if isinstance(exc, LabError | ScenarioError) else f"{type(exc).__name__}: {exc}"
