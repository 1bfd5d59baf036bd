"""The lab dashboard: topology and health, ticket, objectives, hints, live events, timer, submit.

Everything the dashboard shows comes from a `LabFeed`: `LiveFeed` reads the real lab and
scenario run (in thread workers, so the screen never waits on a node); tests hand a static
feed for deterministic snapshots. The dashboard also ticks the scenario so timed and
event-triggered faults fire while the trainee works.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Header, OptionList, Static
from textual.widgets.option_list import Option

from simlab.runtime.node_logs import NodeLogTail
from simlab.scenarios.engine import ScenarioError, lab_error_text
from simlab.scenarios.schema import Question
from simlab.scenarios.submission import submit
from simlab.tui.screens.lab_modals import SubmitModal
from simlab.tui.session import TuiSession
from simlab.tui.widgets.confirm import ConfirmModal
from simlab.tui.widgets.event_log import EventLogView
from simlab.tui.widgets.footer import AdaptiveFooter
from simlab.tui.widgets.objectives import ObjectivesView, ObjectiveView
from simlab.tui.widgets.topology import NodeCard, NodeView, TopologyMap

STATUS_SECONDS = 2.0
EVENTS_SECONDS = 1.0
TICK_SECONDS = 2.0
OBJECTIVES_SECONDS = 10.0
LOG_BACKLOG = 16 * 1024
"""How much of each node's log the dashboard shows from before it opened (its last lines)."""


@dataclass(frozen=True)
class TicketView:
    reporter: str
    priority: str
    subject: str
    body: str


@dataclass(frozen=True)
class HintView:
    id: str
    cost: float
    taken: bool
    text: str = ""
    """The hint's text once taken (never before)."""


class LabFeed:
    """What the dashboard reads and does. This base is a lab with nothing in it."""

    lab_id = ""
    title = ""
    free_play = True
    started_at: float | None = None

    def status(self) -> list[NodeView]:
        return []

    def new_events(self) -> list[dict[str, Any]]:
        return []

    def objectives(self, record: bool) -> list[ObjectiveView]:
        return []

    def ticket(self) -> TicketView | None:
        return None

    def hints(self) -> list[HintView]:
        return []

    def take_hint(self, hint_id: str) -> str:
        raise ScenarioError("no hints in free play")

    def tick(self) -> list[str]:
        return []

    def questions(self) -> list[Question]:
        return []

    def submit(self, answers: dict[str, str]) -> tuple[dict[str, Any], Path]:
        raise ScenarioError("free play has nothing to submit")

    def elapsed(self) -> float:
        return 0.0 if self.started_at is None else max(0.0, time.time() - self.started_at)


class LiveFeed(LabFeed):
    """The real lab and scenario run of a session (every call may block: workers only)."""

    def __init__(self, session: TuiSession) -> None:
        assert session.lab is not None, "the dashboard needs a lab"
        self.session = session
        self.lab = session.lab
        self.run = session.run
        self.lab_id = self.lab.manifest.lab_id
        self.free_play = self.run is None
        self.title = self.run.scenario.title if self.run else "Free play: a plain department"
        if self.run is not None:
            self.started_at = self.run.state.started_at
        else:
            self.started_at = self.lab.manifest.created_at
        self._lock = threading.Lock()
        """The run's session state is read and written by several workers: one at a time."""
        self._offset = 0
        self._node_logs = NodeLogTail(
            {n.node_id: self.lab.paths.log(n.node_id) for n in self.lab.manifest.nodes},
            backlog=LOG_BACKLOG,
        )

    def status(self) -> list[NodeView]:
        with contextlib.suppress(OSError, ValueError):
            self.lab.reload_manifest()
        return [
            NodeView(s.entry.node_id, s.entry.role, s.entry.ae_title, s.state, s.detail)
            for s in self.lab.status()
        ]

    def new_events(self) -> list[dict[str, Any]]:
        """What the journal and the nodes' logs (their protocol traffic) gained since the last
        call, in time order."""
        events = self._new_journal_events()
        events += [line.as_event() for line in self._node_logs.new_lines()]
        events.sort(key=lambda e: float(e.get("ts", 0.0)))
        return events

    def _new_journal_events(self) -> list[dict[str, Any]]:
        """Events appended to the journal since the last call (whole lines only)."""
        path = self.lab.events.path
        if not path.exists():
            return []
        with open(path, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self._offset += end + 1
        out = []
        for line in data[: end + 1].splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def objectives(self, record: bool) -> list[ObjectiveView]:
        if self.run is None:
            return []
        with self._lock:
            results = self.run.objectives(record=record)
        return [
            ObjectiveView(
                r.id,
                r.title,
                r.revealed,
                r.result.ok,
                "" if r.result.ok else (r.fail_message or r.result.evidence),
            )
            for r in results
        ]

    def ticket(self) -> TicketView | None:
        if self.run is None:
            return None
        t = self.run.scenario.ticket
        return TicketView(
            t.reporter, t.priority, str(self.run.fill(t.subject)), str(self.run.fill(t.body))
        )

    def hints(self) -> list[HintView]:
        if self.run is None:
            return []
        taken = set(self.run.state.hints_taken)
        out = []
        for h in self.run.scenario.hints:
            text = ""
            if h.id in taken:
                try:
                    text = str(self.run.fill(h.text))
                except ScenarioError as exc:
                    text = str(exc)
            out.append(HintView(h.id, h.cost, h.id in taken, " ".join(text.split())))
        return out

    def take_hint(self, hint_id: str) -> str:
        if self.run is None:
            return super().take_hint(hint_id)
        with self._lock:
            return self.run.take_hint(hint_id, actor=self.session.actor)

    def tick(self) -> list[str]:
        if self.run is None or self.run.state.submitted_at is not None:
            return []
        with self._lock:
            return self.run.tick()

    def questions(self) -> list[Question]:
        return list(self.run.scenario.questions) if self.run else []

    def submit(self, answers: dict[str, str]) -> tuple[dict[str, Any], Path]:
        if self.run is None:
            return super().submit(answers)
        with self._lock:
            result = submit(self.run, answers, actor=self.session.actor)
        return result.report, result.paths["html"].parent


def ticket_text(ticket: TicketView | None, free_play: bool) -> Text:
    if ticket is None:
        text = Text("Free play\n\n", style="bold")
        text.append(
            "A plain department with no faults: explore the nodes, send images and orders, "
            "try the consoles and toolboxes. Nothing is scored."
        )
        return text
    style = {"critical": "bold red", "high": "bold yellow"}.get(ticket.priority, "bold")
    text = Text()
    text.append(f"{ticket.priority.upper()}", style=style)
    text.append(f" · from {ticket.reporter}\n", style="dim")
    text.append(ticket.subject + "\n\n", style="bold")
    text.append(ticket.body.strip())
    return text


def clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class DashboardScreen(Screen[None]):
    """The trainee's view of the running lab."""

    CSS_PATH = Path(__file__).with_name("dashboard.tcss")
    BINDINGS = [
        Binding("c", "console", "Console"),
        Binding("d", "dicom_toolbox", "DICOM"),
        Binding("l", "hl7_toolbox", "HL7"),
        Binding("o", "check", "Objectives"),
        Binding("h", "hint", "Hint"),
        Binding("s", "submit", "Submit"),
        Binding("i", "instructor", "Instructor", show=False),
    ]

    class Submitted(Message):
        """The session was submitted and scored: the report is ready."""

        def __init__(self, report: dict[str, Any], reports_dir: Path) -> None:
            super().__init__()
            self.report = report
            self.reports_dir = reports_dir

    class OpenRequested(Message):
        """Open another helper's screen: (module, class, node id or None)."""

        def __init__(self, module: str, cls: str, node_id: str | None = None) -> None:
            super().__init__()
            self.module = module
            self.cls = cls
            self.node_id = node_id

    def __init__(self, feed: LabFeed, live: bool = True) -> None:
        super().__init__()
        self.feed = feed
        self.live = live
        self.closed = False
        self.hint_views: list[HintView] = []
        self.submitting = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield TopologyMap(id="topology")
        with Horizontal(id="middle"):
            with VerticalScroll(id="ticket-pane"):
                yield Static(ticket_text(None, True), id="ticket")
            with Vertical(id="side"):
                yield ObjectivesView(id="objectives")
                yield OptionList(id="hints")
        yield EventLogView(id="events")
        yield AdaptiveFooter()

    def on_mount(self) -> None:
        self.title = self.feed.title
        self._show_clock()
        self.query_one("#ticket-pane").border_title = "Ticket"
        hints = self.query_one("#hints", OptionList)
        hints.border_title = "Hints (h takes one)"
        self.query_one("#events", EventLogView).started_at = self.feed.started_at
        self._load_static()
        self._poll_status()
        self._poll_events()
        self._check_objectives(False)
        if self.live:
            self.set_interval(STATUS_SECONDS, self._poll_status)
            self.set_interval(EVENTS_SECONDS, self._poll_events)
            self.set_interval(OBJECTIVES_SECONDS, lambda: self._check_objectives(False))
            self.set_interval(TICK_SECONDS, self._tick)
            self.set_interval(1.0, self._show_clock)

    def on_unmount(self) -> None:
        self.closed = True

    # --------------------------------------------------------------------- worker plumbing
    def _ui(self, fn: Callable[..., None], *args: Any) -> None:
        """Run fn on the UI thread unless the screen or the app is gone (workers only)."""

        def guarded() -> None:
            if not self.closed:
                fn(*args)

        with contextlib.suppress(RuntimeError):
            self.app.call_from_thread(guarded)

    def _show_clock(self) -> None:
        self.sub_title = f"lab {self.feed.lab_id} · ⏱ {clock(self.feed.elapsed())}"

    @work(thread=True, group="static", exit_on_error=False)
    def _load_static(self) -> None:
        try:
            ticket, hints = self.feed.ticket(), self.feed.hints()
        except Exception as exc:
            self._ui(
                self.notify, f"cannot read the scenario: {lab_error_text(exc)}", severity="error"
            )
            return
        self._ui(self._show_static, ticket, hints)

    def _show_static(self, ticket: TicketView | None, hints: list[HintView]) -> None:
        self.query_one("#ticket", Static).update(ticket_text(ticket, self.feed.free_play))
        self._show_hints(hints)

    def _show_hints(self, hints: list[HintView]) -> None:
        self.hint_views = hints
        box = self.query_one("#hints", OptionList)
        highlighted = box.highlighted
        box.clear_options()
        if not hints:
            box.add_option(Option("no hints", id="none", disabled=True))
            return
        for h in hints:
            prompt = Text()
            if h.taken:
                prompt.append(f"✔ {h.id} (taken, -{h.cost:g}): ", style="bold")
                prompt.append(h.text)
            else:
                prompt.append(f"? {h.id} — costs {h.cost:g} points")
            box.add_option(Option(prompt, id=h.id))
        if highlighted is not None and highlighted < len(hints):
            box.highlighted = highlighted

    @work(thread=True, exclusive=True, group="status", exit_on_error=False)
    def _poll_status(self) -> None:
        try:
            views = self.feed.status()
        except Exception as exc:
            self._ui(self.notify, f"health check failed: {lab_error_text(exc)}", severity="error")
            return
        self._ui(self.query_one("#topology", TopologyMap).update_nodes, views)

    @work(thread=True, exclusive=True, group="events", exit_on_error=False)
    def _poll_events(self) -> None:
        try:
            events = self.feed.new_events()
        except OSError:
            return
        if events:
            self._ui(self.query_one("#events", EventLogView).add_events, events)

    @work(thread=True, exclusive=True, group="objectives", exit_on_error=False)
    def _check_objectives(self, record: bool) -> None:
        try:
            views = self.feed.objectives(record)
        except Exception as exc:
            self._ui(
                self.notify, f"objective check failed: {lab_error_text(exc)}", severity="error"
            )
            return
        self._ui(self._show_objectives, views, record)

    def _show_objectives(self, views: list[ObjectiveView], announced: bool) -> None:
        box = self.query_one("#objectives", ObjectivesView)
        box.show(views)
        if announced and box.all_met:
            self.notify("Every objective is met: submit (s) when you are sure.", timeout=8)

    @work(thread=True, exclusive=True, group="tick", exit_on_error=False)
    def _tick(self) -> None:
        with contextlib.suppress(Exception):  # a failing trigger is journalled by the engine
            self.feed.tick()

    # --------------------------------------------------------------------------- actions
    def action_check(self) -> None:
        if self.feed.free_play:
            self.notify("Free play has no objectives.")
            return
        self.notify("checking the objectives against the lab…", timeout=3)
        self._check_objectives(True)

    def selected_hint(self) -> HintView | None:
        box = self.query_one("#hints", OptionList)
        if not self.hint_views:
            return None
        if box.highlighted is not None and box.highlighted < len(self.hint_views):
            return self.hint_views[box.highlighted]
        return next((h for h in self.hint_views if not h.taken), self.hint_views[0])

    @on(OptionList.OptionSelected, "#hints")
    def action_hint(self) -> None:
        hint = self.selected_hint()
        if hint is None:
            self.notify("This scenario has no hints.")
            return
        if hint.taken:
            self.notify(hint.text, title=f"hint {hint.id}", timeout=20)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._take_hint(hint.id)

        self.app.push_screen(
            ConfirmModal(f"Hint “{hint.id}” costs {hint.cost:g} points. Take it?"), answered
        )

    @work(thread=True, group="hint", exit_on_error=False)
    def _take_hint(self, hint_id: str) -> None:
        try:
            text = self.feed.take_hint(hint_id)
            hints = self.feed.hints()
        except Exception as exc:
            self._ui(self.notify, lab_error_text(exc), severity="error")
            return
        self._ui(self._show_hints, hints)
        self._ui(self.notify, text, title=f"hint {hint_id}", timeout=30)

    def action_submit(self) -> None:
        if self.feed.free_play:
            self.notify("Free play has nothing to submit.")
            return
        if self.submitting:
            return

        def answered(answers: dict[str, str] | None) -> None:
            if answers is not None:
                self.submitting = True
                self.notify("judging the lab and writing the report…", timeout=5)
                self._submit(answers)

        self.app.push_screen(SubmitModal(self.feed.questions()), answered)

    @work(thread=True, exclusive=True, group="submit", exit_on_error=False)
    def _submit(self, answers: dict[str, str]) -> None:
        try:
            report, where = self.feed.submit(answers)
        except Exception as exc:
            self.submitting = False
            self._ui(self.notify, f"submit failed: {lab_error_text(exc)}", severity="error")
            return
        self._ui(self.post_message, self.Submitted(report, where))

    def selected_node(self) -> str | None:
        return self.query_one("#topology", TopologyMap).selected_node

    @on(NodeCard.Opened)
    def _card_opened(self, event: NodeCard.Opened) -> None:
        self.post_message(self.OpenRequested("console", "NodeConsoleScreen", event.node_id))

    def action_console(self) -> None:
        node = self.selected_node()
        if node is None:
            self.notify("No node yet: wait for the first health check.")
            return
        self.post_message(self.OpenRequested("console", "NodeConsoleScreen", node))

    def action_dicom_toolbox(self) -> None:
        self.post_message(self.OpenRequested("toolbox", "DicomToolboxScreen"))

    def action_hl7_toolbox(self) -> None:
        self.post_message(self.OpenRequested("toolbox", "HL7ToolboxScreen"))

    def action_instructor(self) -> None:
        self.post_message(self.OpenRequested("instructor", "InstructorScreen"))
