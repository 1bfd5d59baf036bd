"""What every screen of the TUI shares: the home directory, the lab, the scenario run, the actor.

Screens built by other modules (node consoles, toolboxes, the instructor view) take a
`TuiSession` and do every change through `session.actions`, so each one is journalled with the
actor and scored like the same action from `simlab admin`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from simlab.runtime.lab import Lab, LabError
from simlab.runtime.manifest import list_labs
from simlab.scenarios.engine import ScenarioError, ScenarioRun
from simlab.scenarios.loader import ScenarioError as ScenarioFileError
from simlab.workflow.actions import Actions

DEFAULT_LAB_ID = "default"
RUNTIMES = ("local", "docker")
"""What a new lab runs on: child processes, or containers on the lab's own network."""
UP_TIMEOUTS = {"local": 60.0, "docker": 300.0}
"""Seconds each node may take to become healthy (containers on vfs boot in ~45 s)."""


def runtime_label(runtime: str) -> str:
    """How the catalog names a runtime to the trainee."""
    if runtime == "docker":
        return "docker (containers; first start builds the image)"
    return "local (processes on this machine)"


def default_actor() -> str:
    """$SIMLAB_ACTOR or 'trainee': the name the journal records for the trainee's actions."""
    return os.environ.get("SIMLAB_ACTOR", "").strip() or "trainee"


@dataclass
class TuiSession:
    """The state the screens share. `lab` is None until a lab is started or attached."""

    home: Path
    actor: str = field(default_factory=default_actor)
    lab_id: str = DEFAULT_LAB_ID
    lab: Lab | None = None
    run: ScenarioRun | None = None
    """The scenario played in the lab; None for free play."""
    actions: Actions | None = None
    """Every admin action of the TUI goes through this (journalled as `actor`)."""
    started_here: bool = False
    """True when this TUI started the lab (so quitting stops it)."""
    forms: dict[str, dict[str, str]] = field(default_factory=dict)
    """The last values of each toolbox form, so reopening a toolbox does not mean retyping."""
    runtime: str = "local"
    """The runtime the next lab this TUI starts runs on: "local" or "docker"."""
    docker_base: str | None = None
    """Base image of the node image on docker (None: simlab's default)."""

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {self.runtime!r}: use local or docker")

    def toggle_runtime(self) -> str:
        """Switch the runtime of the next lab (local ↔ docker); returns the new one."""
        self.runtime = "docker" if self.runtime == "local" else "local"
        return self.runtime

    @property
    def up_timeout(self) -> float:
        """Seconds each node of a lab on this runtime may take to become healthy."""
        return UP_TIMEOUTS[self.runtime]

    # ----------------------------------------------------------------------- binding a lab
    def attach(self, lab: Lab, run: ScenarioRun | None, started_here: bool) -> None:
        """Bind the session to a lab (and its scenario run, if any)."""
        self.lab = lab
        self.lab_id = lab.manifest.lab_id
        self.run = run
        self.actions = Actions(lab, self.actor)
        self.started_here = started_here
        self.forms.clear()

    def detach(self) -> None:
        self.lab = None
        self.run = None
        self.actions = None
        self.started_here = False

    def open_lab(self, lab_id: str) -> None:
        """Attach to an existing lab (running or not) and its scenario, if it plays one."""
        lab = Lab.open(self.home, lab_id)
        run: ScenarioRun | None
        try:
            run = ScenarioRun.resume(lab)
        except (ScenarioError, ScenarioFileError):
            run = None
        self.attach(lab, run, started_here=False)

    # ------------------------------------------------------------------------- questions
    def lab_running(self) -> bool:
        """True when the session's lab has at least one node process alive."""
        if self.lab is None:
            return False
        with contextlib.suppress(OSError, ValueError):
            self.lab.reload_manifest()
        return any(self.lab.node_running(e) for e in self.lab.manifest.nodes)

    def running_labs(self) -> list[str]:
        """Ids of the labs under home with a node process alive."""
        out = []
        for lab_id in list_labs(self.home):
            try:
                lab = Lab.open(self.home, lab_id)
            except (LabError, ValueError):
                continue
            if any(lab.node_running(e) for e in lab.manifest.nodes):
                out.append(lab_id)
        return out

    def stop_lab(self) -> list[str]:
        """Stop the session's lab (every node); returns the node ids stopped."""
        if self.lab is None:
            return []
        return self.lab.down()
