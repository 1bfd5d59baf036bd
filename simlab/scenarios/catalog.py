"""Where scenarios live and the catalog of them (for `simlab scenario list` and the TUI)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simlab.scenarios.loader import ScenarioError, load_scenario
from simlab.scenarios.schema import Scenario


def scenarios_dir() -> Path:
    """$SIMLAB_SCENARIOS, or the repository's `scenarios/` beside the package."""
    env = os.environ.get("SIMLAB_SCENARIOS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "scenarios"


@dataclass
class CatalogEntry:
    path: Path
    scenario: Scenario | None
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        s = self.scenario
        if s is None:
            return {"path": str(self.path), "error": self.error}
        return {
            "id": s.id,
            "title": s.title,
            "level": s.level,
            "expected_minutes": s.expected_minutes,
            "team": s.team,
            "domains": s.domains.model_dump(mode="json"),
            "summary": s.summary,
            "path": str(self.path),
        }


LEVEL_ORDER = {"novice": 0, "intermediate": 1, "expert": 2}


def scenario_catalog(directory: Path | None = None) -> list[CatalogEntry]:
    """Every scenario file, parsed; invalid ones listed with their error (never hidden)."""
    out = []
    for path in sorted((directory or scenarios_dir()).glob("*.yaml")):
        try:
            out.append(CatalogEntry(path, load_scenario(path)))
        except ScenarioError as exc:
            out.append(CatalogEntry(path, None, str(exc)))
    return sorted(
        out,
        key=lambda e: (
            LEVEL_ORDER.get(e.scenario.level, 9) if e.scenario else 9,
            e.scenario.id if e.scenario else e.path.stem,
        ),
    )


def find_scenario(name: str) -> Path:
    """A scenario by file path or by id (file stem or `id:` inside)."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise FileNotFoundError(f"no scenario file {path}")
        return path
    directory = scenarios_dir()
    candidate = directory / f"{name}.yaml"
    if candidate.exists():
        return candidate
    for entry in scenario_catalog(directory):
        if entry.scenario and entry.scenario.id == name:
            return entry.path
    raise FileNotFoundError(f"no scenario {name!r} in {directory} (see `simlab scenario list`)")
