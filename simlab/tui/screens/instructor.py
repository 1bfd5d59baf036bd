"""The instructor view: the running lab's faults, the catalog to inject from, hints, and a live
feed of what the trainee does.

Faults are injected and reverted with the FaultManager (journalled as fault_injected /
fault_reverted with the instructor as actor); a hint is revealed through the scenario run
(`take_hint(..., actor="instructor")`); the feed tails the lab's journal for `action` events.
File and lab work runs in thread workers; errors show as notifications.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Header, Label, Static
from textual.worker import Worker, WorkerState, get_current_worker

from simlab.faults.base import Fault, FaultError
from simlab.faults.catalog import load_catalog
from simlab.faults.manager import ActiveFault, FaultManager
from simlab.scenarios.engine import ScenarioError
from simlab.tui.widgets.confirm import ConfirmModal
from simlab.tui.widgets.footer import AdaptiveFooter
from simlab.tui.widgets.toolbox_fault_modals import InjectFaultModal, InjectRequest
from simlab.tui.widgets.toolbox_session import ToolboxSession, bound, compact

FEED_LIMIT = 500
"""Rows the action feed keeps."""
POLL_SECONDS = 1.0


class InstructorScreen(Screen[None]):
    """Faults (active and catalog), hints, and the trainee's actions as they happen."""

    CSS_PATH = "instructor.tcss"
    TITLE = "Instructor"
    BINDINGS = [
        Binding("i", "inject", "Inject"),
        Binding("r", "revert", "Revert"),
        Binding("h", "hint", "Reveal hint"),
        Binding("f5", "refresh", "Refresh"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(
        self, session: ToolboxSession, *, poll: float = POLL_SECONDS, name: str | None = None
    ) -> None:
        super().__init__(name=name)
        self.session = session
        self.lab, self.actions = bound(session)
        self.poll = poll
        self.catalog: dict[str, type[Fault]] = load_catalog()
        self.manager = FaultManager(self.lab)
        self.active: list[ActiveFault] = []
        self._offset = 0
        self._partial = b""
        self._poll_lock = threading.Lock()
        """Polls run one after the other, so the journal is read once and in order."""
        self.feed: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Horizontal(id="ins-body"):
            with Vertical(id="ins-faults"):
                yield Label("Active faults  [dim](r revert)[/dim]", classes="title")
                yield DataTable(id="ins-active", cursor_type="row")
                yield Label("Fault catalog  [dim](i inject)[/dim]", classes="title")
                yield DataTable(id="ins-catalog", cursor_type="row", zebra_stripes=True)
                yield Static("", id="ins-symptom")
            with Vertical(id="ins-side"):
                yield Label("Hints  [dim](h reveal)[/dim]", classes="title")
                yield DataTable(id="ins-hints", cursor_type="row")
                yield Label("Trainee actions (live)", classes="title")
                yield DataTable(id="ins-feed", cursor_type="row", zebra_stripes=True)
        yield AdaptiveFooter()

    def on_mount(self) -> None:
        self.sub_title = f"lab {self.lab.manifest.lab_id}"
        self.query_one("#ins-active", DataTable).add_columns("Fault", "Type", "Nodes", "Params")
        catalog = self.query_one("#ins-catalog", DataTable)
        catalog.add_columns("Type", "Family", "Title")
        for kind, fault in self.catalog.items():
            catalog.add_row(kind, fault.family, fault.title, key=kind)
        self.query_one("#ins-hints", DataTable).add_columns("Hint", "Cost", "Taken")
        self.query_one("#ins-feed", DataTable).add_columns("OK", "Actor", "Action", "Args")
        self._fill_hints()
        self.action_refresh()
        self.set_interval(self.poll, self.action_refresh)
        catalog.focus()

    # ------------------------------------------------------------------------- polling
    def action_refresh(self) -> None:
        self._poll()

    @work(thread=True, exit_on_error=False, group="instructor-poll")
    def _poll(self) -> None:
        worker = get_current_worker()
        with self._poll_lock:
            try:
                active = self.manager.active()
            except (OSError, ValueError) as exc:
                self.app.call_from_thread(self.notify, f"faults.json: {exc}", severity="error")
                active = self.active
            events = self._read_new_events()
            if not worker.is_cancelled:
                self.app.call_from_thread(self._update, active, events)

    def _read_new_events(self) -> list[dict[str, Any]]:
        """Action events appended to the journal since the last poll."""
        path = self.lab.events.path
        try:
            with open(path, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        out = []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("kind") == "action":
                out.append(event)
        return out

    def _update(self, active: list[ActiveFault], events: list[dict[str, Any]]) -> None:
        if [f.fault_id for f in active] != [f.fault_id for f in self.active] or not self.active:
            self.active = active
            table = self.query_one("#ins-active", DataTable)
            table.clear()
            for fault in active:
                nodes = self._nodes_of(fault)
                table.add_row(
                    fault.fault_id, fault.kind, nodes, compact(fault.params, 40), key=fault.fault_id
                )
        if events:
            self.feed.extend(events)
            feed = self.query_one("#ins-feed", DataTable)
            for event in events:
                ok = event.get("ok")
                feed.add_row(
                    Text("✔", "green") if ok else Text("✘", "red"),
                    str(event.get("actor", "?")),
                    str(event.get("action", "?")),
                    compact(event.get("args", {}), 50),
                )
            while feed.row_count > FEED_LIMIT:
                feed.remove_row(next(iter(feed.rows)))
            feed.scroll_end(animate=False)

    def _nodes_of(self, fault: ActiveFault) -> str:
        try:
            return ", ".join(FaultManager.build(fault).nodes())
        except (KeyError, ValueError):
            return "?"

    # ------------------------------------------------------------------------- catalog
    @on(DataTable.RowHighlighted, "#ins-catalog")
    def _catalog_highlighted(self, event: DataTable.RowHighlighted) -> None:
        fault = self.catalog.get(str(event.row_key.value))
        if fault is not None:
            self.query_one("#ins-symptom", Static).update(
                Text.assemble(("Symptom: ", "bold"), fault.symptom)
            )

    def _selected(self, selector: str) -> str | None:
        table = self.query_one(selector, DataTable)
        if table.row_count == 0:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return None if row_key.value is None else str(row_key.value)

    def action_inject(self) -> None:
        kind = self._selected("#ins-catalog")
        if kind is None:
            return
        taken = {f.fault_id for f in self.manager.active()}
        fault_id, n = kind, 1
        while fault_id in taken:
            n += 1
            fault_id = f"{kind}-{n}"
        self.app.push_screen(InjectFaultModal(self.catalog[kind], fault_id), self._injected)

    def _injected(self, request: InjectRequest | None) -> None:
        if request is not None:
            self._inject(request)

    @work(thread=True, exit_on_error=False, group="instructor-faults")
    def _inject(self, request: InjectRequest) -> None:
        try:
            self.manager.inject(
                request.fault_id, request.kind, request.params, actor=self.session.actor
            )
        except (FaultError, KeyError, ValueError) as exc:
            self.app.call_from_thread(
                self.notify, str(exc), title="inject failed", severity="error"
            )
            return
        self.app.call_from_thread(
            self.notify, f"{request.fault_id} ({request.kind}) injected", title="fault"
        )
        self.app.call_from_thread(self.action_refresh)

    def action_revert(self) -> None:
        fault_id = self._selected("#ins-active")
        if fault_id is None:
            self.notify("no active fault selected", severity="warning")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._revert(fault_id)

        self.app.push_screen(ConfirmModal(f"Revert fault {fault_id}?"), confirmed)

    @work(thread=True, exit_on_error=False, group="instructor-faults")
    def _revert(self, fault_id: str) -> None:
        try:
            self.manager.revert(fault_id, actor=self.session.actor)
        except FaultError as exc:
            self.app.call_from_thread(
                self.notify, str(exc), title="revert failed", severity="error"
            )
            return
        self.app.call_from_thread(self.notify, f"{fault_id} reverted", title="fault")
        self.app.call_from_thread(self.action_refresh)

    # ------------------------------------------------------------------------- hints
    def _fill_hints(self) -> None:
        table = self.query_one("#ins-hints", DataTable)
        table.clear()
        run = self.session.run
        if run is None:
            table.add_row("(no scenario running)", "", "")
            return
        taken = set(run.state.hints_taken)
        for hint in run.scenario.hints:
            table.add_row(hint.id, f"{hint.cost:g}", "yes" if hint.id in taken else "", key=hint.id)

    def action_hint(self) -> None:
        if self.session.run is None:
            self.notify("no scenario is running", severity="warning")
            return
        hint_id = self._selected("#ins-hints")
        if hint_id is None:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._reveal(hint_id)

        self.app.push_screen(
            ConfirmModal(f"Reveal hint {hint_id} to the trainee (it costs them points)?"),
            confirmed,
        )

    @work(thread=True, exit_on_error=False, group="instructor-hints")
    def _reveal(self, hint_id: str) -> None:
        run = self.session.run
        assert run is not None
        try:
            text = run.take_hint(hint_id, actor="instructor")
        except ScenarioError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.app.call_from_thread(self.notify, text, title=f"hint {hint_id} revealed", timeout=10)
        self.app.call_from_thread(self._fill_hints)

    def action_back(self) -> None:
        self.dismiss(None)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place a worker's unexpected failure is reported (the screen stays usable)."""
        if event.state == WorkerState.ERROR:
            self.notify(
                f"{type(event.worker.error).__name__}: {event.worker.error}",
                title="Instructor",
                severity="error",
            )
