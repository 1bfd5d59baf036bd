"""The objectives as the scenario reveals them: met or not yet, with what still fails."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static


@dataclass(frozen=True)
class ObjectiveView:
    """One objective as the trainee sees it (from `ObjectiveStatus`, or static in tests)."""

    id: str
    title: str
    revealed: bool
    ok: bool
    message: str = ""
    """The fail message while it fails (never the check's internals)."""


class ObjectivesView(Static):
    """Revealed objectives with ✔ MET / ✘ NOT YET, and how many are still hidden."""

    DEFAULT_CSS = """
    ObjectivesView { border: round $primary; height: auto; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("not checked yet (press o to check)", id=id)
        self.border_title = "Objectives"
        self.views: list[ObjectiveView] = []

    def show(self, views: list[ObjectiveView]) -> None:
        self.views = views
        shown = [v for v in views if v.revealed]
        met = sum(1 for v in shown if v.ok)
        self.border_title = f"Objectives {met}/{len(shown)}"
        text = Text()
        for v in shown:
            if v.ok:
                text.append("✔ MET     ", style="bold green")
            else:
                text.append("✘ NOT YET ", style="bold red")
            text.append(v.title + "\n")
            if not v.ok and v.message:
                text.append(f"          {v.message}\n", style="dim")
        hidden = len(views) - len(shown)
        if hidden:
            verb = "appears" if hidden == 1 else "appear"
            text.append(f"{hidden} more {verb} as you progress.", style="italic dim")
        text.rstrip()
        self.update(text if text.plain else Text("no objectives"))

    @property
    def all_met(self) -> bool:
        return bool(self.views) and all(v.ok for v in self.views)
