"""A node's console, the way a vendor console looks: config, AE table, studies, queue, log.

    app.push_screen(NodeConsoleScreen(session, "pacs"))

`session` gives `lab` and `actions` (an Actions bound to the trainee's actor): every change —
and every read the trainee asks for — is an action, journalled for scoring. Tabs depend on the
node's role: the PACS and the viewer hold studies, the RIS and modalities have an outbound queue,
modalities have no AE table (their peers are config fields). A test may pass `backend` (any
ConsoleBackend) instead of a session to show fixed content.
"""

from __future__ import annotations

from typing import Any

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Button, Label, TabbedContent, TabPane

from simlab.tui.widgets.confirm import ConfirmModal
from simlab.tui.widgets.console_backend import ActionsBackend, ConsoleBackend
from simlab.tui.widgets.console_panes import (
    AePane,
    ConfigPane,
    ConsolePane,
    LogPane,
    QueuePane,
    StudiesPane,
)
from simlab.tui.widgets.footer import NARROW, AdaptiveFooter

STUDY_ROLES = ("pacs", "viewer")
QUEUE_ROLES = ("ris", "modality")
AE_ROLES = ("pacs", "ris", "viewer")


def console_tabs(role: str) -> list[tuple[str, str]]:
    """(tab id, title) of a node's console by its role."""
    tabs = [("config", "Config")]
    if role in AE_ROLES:
        tabs.append(("ae", "AE table"))
    if role in STUDY_ROLES:
        tabs.append(("studies", "Studies"))
    if role in QUEUE_ROLES:
        tabs.append(("queue", "Queue"))
    tabs.append(("logs", "Logs"))
    return tabs


class NodeConsoleScreen(Screen[None]):
    """One node's console."""

    CSS_PATH = "console.tcss"
    BINDINGS = [
        Binding("escape", "close", "Back"),
        Binding("f5", "refresh_tab", "Refresh"),
        Binding("ctrl+r", "restart", "Restart", tooltip="Restart this node (asks first)"),
        Binding("alt+left", "tab(-1)", "Prev tab", show=False),
        Binding("alt+right", "tab(1)", "Next tab", show=False),
        Binding("ctrl+s", "pane('apply')", "Apply"),
        Binding("a", "pane('add')", "Add"),
        Binding("e", "pane('edit')", "Edit"),
        Binding("d,delete", "pane('remove')", "Delete"),
        Binding("r", "pane('retry')", "Retry"),
        Binding("R", "pane('retry_all')", "Retry all"),
        Binding("f", "pane('toggle_follow')", "Follow"),
        Binding("slash", "pane('search')", "Search"),
    ]

    def __init__(self, session: Any, node_id: str, backend: ConsoleBackend | None = None) -> None:
        super().__init__()
        self.session = session
        self.node_id = node_id
        self.backend: ConsoleBackend = backend or ActionsBackend(session, node_id)
        self.tabs = console_tabs(self.backend.role)

    def compose(self) -> ComposeResult:
        with Horizontal(id="console-head"):
            yield Label(f"[b]{self.node_id}[/b]  {self.backend.title}", id="console-title")
            yield Button("Restart…", id="console-restart", variant="error", compact=True)
        panes: dict[str, type[ConsolePane]] = {
            "config": ConfigPane,
            "ae": AePane,
            "studies": StudiesPane,
            "queue": QueuePane,
            "logs": LogPane,
        }
        with TabbedContent(id="console-tabs"):
            for tab_id, title in self.tabs:
                with TabPane(title, id=f"tab-{tab_id}"):
                    yield panes[tab_id](self.backend, id=f"pane-{tab_id}")
        yield AdaptiveFooter()

    def on_mount(self) -> None:
        self.title = f"Console: {self.node_id}"
        self.pane("config").ensure_loaded()
        self._fit(self.size.width)

    def on_resize(self, event: events.Resize) -> None:
        self._fit(event.size.width)

    def _fit(self, width: int) -> None:
        """Below NARROW columns (80x24; the footer turns compact by itself) every binding of
        the tab shows, and the studies pane stacks the tree above the tags."""
        narrow = width < NARROW
        self.set_class(narrow, "-narrow")

    def pane(self, tab_id: str) -> ConsolePane:
        return self.query_one(f"#pane-{tab_id}", ConsolePane)

    def active_pane(self) -> ConsolePane:
        active = self.query_one("#console-tabs", TabbedContent).active
        return self.pane(active.removeprefix("tab-"))

    def show_tab(self, tab_id: str) -> ConsolePane:
        """Switch to a tab and load it (for the keyboard and for tests)."""
        self.query_one("#console-tabs", TabbedContent).active = f"tab-{tab_id}"
        pane = self.pane(tab_id)
        pane.ensure_loaded()
        self.refresh_bindings()
        return pane

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane_id = event.pane.id or ""
        self.pane(pane_id.removeprefix("tab-")).ensure_loaded()
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Pane bindings show (and work) only on the tabs that have them."""
        if action != "pane":
            return True
        try:
            pane = self.active_pane()
        except Exception:  # not composed yet
            return False
        name = str(parameters[0]) if parameters else ""
        if isinstance(pane, QueuePane) and name == "edit":
            return pane.ris
        if isinstance(pane, StudiesPane) and name == "edit":
            return self.backend.role == "pacs"  # the viewer's admin API edits no study
        return hasattr(pane, f"action_{name}")

    def action_pane(self, name: str) -> None:
        method = getattr(self.active_pane(), f"action_{name}", None)
        if method is not None:
            method()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "console-restart":
            event.stop()
            self.action_restart()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_refresh_tab(self) -> None:
        self.active_pane().reload()

    def action_tab(self, step: int) -> None:
        ids = [t for t, _ in self.tabs]
        current = self.query_one("#console-tabs", TabbedContent).active.removeprefix("tab-")
        self.show_tab(ids[(ids.index(current) + step) % len(ids)])

    def action_restart(self) -> None:
        def confirmed(ok: bool | None) -> None:
            if ok:
                self.notify(f"restarting {self.node_id}…")
                self.active_pane().act(
                    "restart", self.backend.restart, after=lambda _r: self.action_refresh_tab()
                )

        question = f"Restart {self.node_id}? Its associations and connections are cut."
        self.app.push_screen(ConfirmModal(question, "Restart", danger=True), confirmed)
