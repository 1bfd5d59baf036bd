"""The simlab TUI: `SimlabApp`, built by `make_app` (tests hand it a prepared session).

Navigation lives here: catalog → boot → dashboard → report, and the screens other modules
provide (node console, toolboxes, instructor view), imported lazily so the app runs before
they exist. `q` quits, asking first when a lab runs and stopping the lab this app started.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import ModalScreen, Screen

from simlab.runtime.lab import LabError
from simlab.runtime.manifest import default_home
from simlab.scenarios.catalog import CatalogEntry, scenario_catalog
from simlab.tui.screens.boot import BootScreen
from simlab.tui.screens.catalog import ScenarioCatalogScreen
from simlab.tui.screens.dashboard import DashboardScreen, LiveFeed
from simlab.tui.screens.report import ReportScreen
from simlab.tui.session import TuiSession, runtime_label
from simlab.tui.widgets.confirm import ConfirmModal

DARK, LIGHT = "textual-dark", "textual-light"


class SimlabApp(App[None]):
    """The trainee's console: catalog, boot, dashboard, report (and the other helpers' screens)."""

    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "simlab"
    BINDINGS = [
        Binding("q", "quit_app", "Quit"),
        Binding("ctrl+t", "toggle_theme", "Theme"),
    ]

    def __init__(
        self,
        session: TuiSession,
        entries: list[CatalogEntry] | None = None,
        start: Path | None = None,
    ) -> None:
        super().__init__()
        self.session = session
        self.entries = entries
        self.start = start
        """A scenario file to boot at once (`simlab run SCENARIO`)."""
        self.theme = DARK
        self.stopping = False

    def on_mount(self) -> None:
        entries = self.entries if self.entries is not None else scenario_catalog()
        self.push_screen(ScenarioCatalogScreen(entries, runtime=self.session.runtime))
        if self.session.lab is not None:
            self.show_dashboard()
        elif self.start is not None:
            self._boot(self.start)

    # ------------------------------------------------------------------------- navigation
    def show_dashboard(self) -> None:
        dashboard = DashboardScreen(LiveFeed(self.session))
        if isinstance(self.screen, BootScreen):
            self.switch_screen(dashboard)
        else:
            self.push_screen(dashboard)

    @on(ScenarioCatalogScreen.ScenarioChosen)
    def _start_scenario(self, event: ScenarioCatalogScreen.ScenarioChosen) -> None:
        self._boot(event.path)

    @on(ScenarioCatalogScreen.FreePlayChosen)
    def _free_play(self) -> None:
        self._boot(None)

    def _boot(self, path: Path | None) -> None:
        if self.session.lab is not None and self.session.lab_running():
            self.notify(
                f"Lab {self.session.lab_id} is running: quit (q) to stop it first.",
                severity="warning",
            )
            return
        self.session.detach()
        self.push_screen(BootScreen(self.session, path))

    @on(BootScreen.Booted)
    def _booted(self) -> None:
        self.show_dashboard()

    @on(BootScreen.Abandoned)
    def _abandoned(self, event: BootScreen.Abandoned) -> None:
        boot = self.screen
        if getattr(boot, "quit_after", False):
            self.exit()
            return
        if event.error == "cancelled":
            self.pop_screen()
            self.notify("Start cancelled; nothing is left running.")
        else:
            self.notify(event.error, title="the lab did not start", severity="error", timeout=15)

    @on(ScenarioCatalogScreen.RuntimeChanged)
    def _runtime_changed(self, event: ScenarioCatalogScreen.RuntimeChanged) -> None:
        self.session.runtime = event.runtime
        self.notify(f"Runtime: {runtime_label(event.runtime)}", title="the next lab runs on")

    def action_toggle_runtime(self) -> None:
        """Switch local ↔ docker for the next lab (from the catalog, or the command palette)."""
        catalog = next((s for s in self.screen_stack if isinstance(s, ScenarioCatalogScreen)), None)
        if catalog is not None:
            catalog.action_toggle_runtime()
            return
        self.session.toggle_runtime()
        self.notify(f"Runtime: {runtime_label(self.session.runtime)}")

    @on(ScenarioCatalogScreen.InstructorChosen)
    def _instructor_from_catalog(self) -> None:
        if self.session.lab is None or not self.session.lab_running():
            running = self.session.running_labs()
            if not running:
                self.notify("No lab is running: start a scenario first (Enter).")
                return
            try:
                self.session.open_lab(running[0])
            except (LabError, ValueError) as exc:
                self.notify(str(exc), severity="error")
                return
        self.open_extra("instructor", "InstructorScreen")

    @on(DashboardScreen.OpenRequested)
    def _open_requested(self, event: DashboardScreen.OpenRequested) -> None:
        self.open_extra(event.module, event.cls, event.node_id)

    def open_extra(self, module: str, cls: str, node_id: str | None = None) -> None:
        """Open a screen another module provides, or say it is not available yet."""
        name = f"simlab.tui.screens.{module}"
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            mod = None
        screen_cls = getattr(mod, cls, None)
        if screen_cls is None:
            self.notify(f"{cls} is not available yet.", severity="warning")
            return
        args: tuple[Any, ...] = (self.session,) if node_id is None else (self.session, node_id)
        self.push_screen(screen_cls(*args))

    @on(DashboardScreen.Submitted)
    def _submitted(self, event: DashboardScreen.Submitted) -> None:
        self.switch_screen(ReportScreen(event.report, event.reports_dir))

    @on(ReportScreen.BackRequested)
    def _report_done(self) -> None:
        if self.session.started_here and self.session.lab_running():

            def answered(yes: bool | None) -> None:
                if yes:
                    self._stop_lab_then(back=True)

            self.push_screen(
                ConfirmModal(f"Stop lab {self.session.lab_id} and go back to the catalog?"),
                answered,
            )
            return
        self.session.detach()
        self._to_catalog()

    def _to_catalog(self) -> None:
        while len(self.screen_stack) > 2 and not isinstance(self.screen, ScenarioCatalogScreen):
            self.pop_screen()

    # ------------------------------------------------------------------------- quitting
    def action_quit_app(self) -> None:
        if isinstance(self.screen, ModalScreen) or self.stopping:
            return
        boot = self.screen
        if isinstance(boot, BootScreen) and not boot.done:
            boot.quit_after = True
            boot.action_cancel()
            return
        session = self.session
        if session.lab is None or not session.lab_running():
            self.exit()
            return
        if session.started_here:
            question = f"Lab {session.lab_id} is running. Stop it and quit?"
        else:
            question = f"Quit? Lab {session.lab_id} keeps running (this TUI did not start it)."

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            if session.started_here:
                self._stop_lab_then(back=False)
            else:
                self.exit()

        self.push_screen(ConfirmModal(question), answered)

    @work(thread=True, exclusive=True, group="stop", exit_on_error=False)
    def _stop_lab_then(self, back: bool) -> None:
        self.stopping = True
        self.call_from_thread(self.notify, f"stopping lab {self.session.lab_id}…")
        try:
            self.session.stop_lab()
        except (LabError, OSError) as exc:
            self.call_from_thread(self.notify, f"stop failed: {exc}", severity="error")
        finally:
            self.stopping = False
        if back:
            self.session.detach()
            self.call_from_thread(self._to_catalog)
        else:
            self.call_from_thread(self.exit)

    # ------------------------------------------------------------------------ appearance
    def action_toggle_theme(self) -> None:
        self.theme = LIGHT if self.theme == DARK else DARK

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand(
            "Toggle light/dark theme",
            "Switch between the dark and light theme",
            self.action_toggle_theme,
        )
        if isinstance(screen, ScenarioCatalogScreen):
            other = "docker" if self.session.runtime == "local" else "local"
            yield SystemCommand(
                f"Switch runtime to {other}",
                "Where the next lab runs: local processes or Docker containers",
                self.action_toggle_runtime,
            )
        yield SystemCommand(
            "Quit simlab", "Stop the lab this app started and quit", self.action_quit_app
        )


def make_app(
    session: TuiSession, entries: list[CatalogEntry] | None = None, start: Path | None = None
) -> SimlabApp:
    """The app for a session (tests hand a session under a temporary home, and catalog rows)."""
    return SimlabApp(session, entries, start)


def run_tui(
    home: Path | None = None,
    lab_id: str | None = None,
    scenario: Path | None = None,
    runtime: str = "local",
    docker_base: str | None = None,
) -> None:
    """`simlab` / `simlab tui`: open the TUI; with lab_id, attach to that lab when it runs;
    with a scenario (`simlab run SCENARIO`), boot it at once. New labs run on `runtime`
    (local or docker; r in the catalog switches it), docker's node image from `docker_base`."""
    session = TuiSession(
        home=home if home is not None else default_home(),
        runtime=runtime,
        docker_base=docker_base,
    )
    if lab_id:
        session.lab_id = lab_id
        try:
            session.open_lab(lab_id)
        except (LabError, ValueError):
            session.detach()  # no such lab yet: the catalog starts one under this id
        else:
            if not session.lab_running():
                session.detach()
    app = make_app(session, start=scenario)
    try:
        app.run()
    finally:
        if session.started_here and session.lab_running():
            session.stop_lab()
