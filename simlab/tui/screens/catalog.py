"""The first screen: the scenario catalog, filters by level and exam domain, a preview.

The preview shows what a trainee may know before starting (summary, domains, expected time,
who reports the ticket and its subject) — never the faults, the solution or the answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import get_args

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Header, Label, Select, Static

from simlab.scenarios.catalog import CatalogEntry
from simlab.scenarios.schema import PLACEHOLDER, CiipDomain, Scenario
from simlab.tui.widgets.footer import AdaptiveFooter

LEVELS = ("novice", "intermediate", "expert")
ALL = "all"


def domain_options() -> list[tuple[str, str]]:
    """(label, value) for the domain filter: CPSA sections 1-8 and every CIIP domain."""
    out = [(f"CPSA section {n}", f"cpsa:{n}") for n in range(1, 9)]
    out += [(f"CIIP {d}", f"ciip:{d}") for d in get_args(CiipDomain)]
    return out


def matches(scenario: Scenario | None, level: str, domain: str) -> bool:
    """True when the scenario passes both filters (invalid files show only unfiltered)."""
    if scenario is None:
        return level == ALL and domain == ALL
    if level != ALL and scenario.level != level:
        return False
    if domain == ALL:
        return True
    family, _, value = domain.partition(":")
    if family == "cpsa":
        return int(value) in scenario.domains.cpsa
    return value in scenario.domains.ciip


def runtime_text(runtime: str) -> str:
    """The runtime indicator of the filter row (content markup): what the next lab runs on,
    and the key that switches it (shown here, not in the footer, so that 80 columns hold
    every other key)."""
    value = "[b $warning]docker[/]" if runtime == "docker" else "[b]local[/]"
    return f"[b $accent]r[/] Runtime {value}"


def start_line(runtime: str) -> str:
    """The preview's last line: what Enter does, on which runtime."""
    if runtime == "docker":
        return "Enter starts it in Docker containers (the first start builds the image)."
    return "Enter starts it on the local runtime (r: Docker)."


def preview_text(entry: CatalogEntry, runtime: str = "local") -> Text:
    """The briefing of a scenario, without anything that gives the fault away."""
    s = entry.scenario
    if s is None:
        text = Text(f"{entry.path.name}: invalid scenario file\n\n", style="bold red")
        text.append(entry.error)
        return text
    text = Text()
    text.append(s.title + "\n", style="bold")
    extra = ", team exercise" if s.team else ""
    text.append(f"{s.id} · {s.level} · about {s.expected_minutes:g} min{extra}\n\n", style="dim")
    text.append(" ".join(s.summary.split()) + "\n\n")
    text.append("Domains\n", style="bold")
    if s.domains.cpsa:
        text.append(f"  CPSA sections {', '.join(str(c) for c in s.domains.cpsa)}\n")
    if s.domains.ciip:
        text.append(f"  CIIP {', '.join(s.domains.ciip)}\n")
    if s.domains.topics:
        text.append(f"  topics {', '.join(s.domains.topics)}\n")
    ticket = s.ticket
    subject = PLACEHOLDER.sub("…", ticket.subject)
    text.append("\nTicket\n", style="bold")
    text.append(f"  from {ticket.reporter} ({ticket.priority})\n  “{subject}”\n")
    text.append("\n" + start_line(runtime), style="italic dim")
    return text


class ScenarioCatalogScreen(Screen[None]):
    """Scenarios in a table; Enter starts one, f starts a free-play lab, i the instructor view,
    r switches the runtime the next lab runs on (local processes or Docker containers)."""

    CSS_PATH = Path(__file__).with_name("catalog.tcss")
    TITLE = "simlab — scenario catalog"
    BINDINGS = [
        Binding("s", "start", "Start"),
        Binding("f", "free_play", "Free play"),
        Binding("i", "instructor", "Instructor"),
        Binding("l", "focus_level", "Level"),
        Binding("d", "focus_domain", "Domain"),
        Binding("r", "toggle_runtime", "Runtime", show=False),  # its key shows in #runtime
    ]

    class ScenarioChosen(Message):
        """The trainee asked to start this scenario."""

        def __init__(self, path: Path) -> None:
            super().__init__()
            self.path = path

    class FreePlayChosen(Message):
        """The trainee asked for a plain department with no faults."""

    class InstructorChosen(Message):
        """The instructor view was asked for."""

    class RuntimeChanged(Message):
        """The trainee switched the runtime the next lab runs on."""

        def __init__(self, runtime: str) -> None:
            super().__init__()
            self.runtime = runtime

    def __init__(self, entries: list[CatalogEntry], runtime: str = "local") -> None:
        super().__init__()
        self.entries = entries
        self.shown: list[CatalogEntry] = []
        self.runtime = runtime
        """The runtime shown (the app keeps the session's in step through RuntimeChanged)."""

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="filters"):
            yield Label("Level")
            yield Select(
                [("all levels", ALL), *[(lv, lv) for lv in LEVELS]],
                value=ALL,
                allow_blank=False,
                id="level",
            )
            yield Label("Domain")
            yield Select(
                [("all domains", ALL), *domain_options()],
                value=ALL,
                allow_blank=False,
                id="domain",
            )
            yield Label(runtime_text(self.runtime), id="runtime")
        with Horizontal(id="body"):
            yield DataTable(id="scenarios", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="preview-pane"):
                yield Static(id="preview")
        yield AdaptiveFooter()

    def on_mount(self) -> None:
        table = self.query_one("#scenarios", DataTable)
        table.add_column("level", key="level")
        table.add_column("min", key="min")
        table.add_column("team", key="team")
        table.add_column("title", key="title")
        self.refill()
        table.focus()

    # ------------------------------------------------------------------------- filtering
    def refill(self) -> None:
        level = str(self.query_one("#level", Select).value)
        domain = str(self.query_one("#domain", Select).value)
        table = self.query_one("#scenarios", DataTable)
        table.clear()
        self.shown = [e for e in self.entries if matches(e.scenario, level, domain)]
        for index, entry in enumerate(self.shown):
            s = entry.scenario
            if s is None:
                table.add_row(Text("invalid", style="red"), "", "", entry.path.stem, key=str(index))
                continue
            table.add_row(
                s.level,
                f"{s.expected_minutes:g}",
                "team" if s.team else "",
                s.title,
                key=str(index),
            )
        self.sub_title = f"{len(self.shown)} of {len(self.entries)} scenarios"
        self._preview()

    @on(Select.Changed)
    def _filter(self) -> None:
        self.refill()

    def filter_by(self, level: str = ALL, domain: str = ALL) -> None:
        """Set both filters (for the command palette and tests)."""
        self.query_one("#level", Select).value = level
        self.query_one("#domain", Select).value = domain
        self.refill()

    # --------------------------------------------------------------------------- preview
    @property
    def current(self) -> CatalogEntry | None:
        table = self.query_one("#scenarios", DataTable)
        if not self.shown or table.cursor_row < 0 or table.cursor_row >= len(self.shown):
            return None
        return self.shown[table.cursor_row]

    @on(DataTable.RowHighlighted)
    def _preview(self) -> None:
        entry = self.current
        preview = self.query_one("#preview", Static)
        if entry is None:
            preview.update(Text("No scenario matches these filters.", style="italic"))
            return
        preview.update(preview_text(entry, self.runtime))

    # --------------------------------------------------------------------------- actions
    @on(DataTable.RowSelected)
    def action_start(self) -> None:
        entry = self.current
        if entry is None:
            return
        if entry.scenario is None:
            self.notify(f"{entry.path.name} is invalid: fix it first", severity="error")
            return
        self.post_message(self.ScenarioChosen(entry.path))

    def action_free_play(self) -> None:
        self.post_message(self.FreePlayChosen())

    def action_instructor(self) -> None:
        self.post_message(self.InstructorChosen())

    def action_toggle_runtime(self) -> None:
        """Switch local ↔ docker for the next lab started from here."""
        self.show_runtime("docker" if self.runtime == "local" else "local")
        self.post_message(self.RuntimeChanged(self.runtime))

    def show_runtime(self, runtime: str) -> None:
        """Show `runtime` in the filter row and the preview."""
        self.runtime = runtime
        self.query_one("#runtime", Label).update(runtime_text(runtime))
        self._preview()

    def action_focus_level(self) -> None:
        self.query_one("#level", Select).focus()

    def action_focus_domain(self) -> None:
        self.query_one("#domain", Select).focus()
