"""Boot: the lab starts (and the scenario seeds it and fires its faults) in a thread worker.

Each progress message is listed as it comes; Escape cancels: the worker stops at its next
progress step and every node already started is stopped again. Errors are shown in full.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Header, Label, ProgressBar, RichLog

from simlab.runtime.lab import Lab, LabError
from simlab.scenarios.engine import ScenarioRun, lab_error_text
from simlab.scenarios.loader import load_scenario
from simlab.tui.session import TuiSession
from simlab.tui.widgets.footer import AdaptiveFooter


class BootCancelled(Exception):
    """Raised inside the worker's progress callback once the trainee cancelled."""


class BootScreen(Screen[None]):
    """Progress of `ScenarioRun.start` (or `Lab.create` + `up` for free play)."""

    CSS_PATH = Path(__file__).with_name("boot.tcss")
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    class Booted(Message):
        """The lab is up (and the scenario started): the session is attached."""

    class Abandoned(Message):
        """The boot was cancelled or failed and everything it started is stopped."""

        def __init__(self, error: str) -> None:
            super().__init__()
            self.error = error

    def __init__(self, session: TuiSession, scenario_path: Path | None) -> None:
        super().__init__()
        self.session = session
        self.scenario_path = scenario_path
        self.cancel_requested = threading.Event()
        self.done = False
        self.failed = False
        self.messages: list[str] = []
        self.quit_after = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="boot"):
            yield Label(self._headline(), id="headline")
            yield ProgressBar(total=None, show_eta=False, id="bar")
            yield RichLog(id="progress", wrap=True, markup=False)
            yield Label("Esc cancels and stops what was started.", id="hint")
        yield AdaptiveFooter()

    def _headline(self) -> str:
        where = " in Docker containers" if self.session.runtime == "docker" else ""
        if self.scenario_path is None:
            return f"Starting a free-play lab ({self.session.lab_id}){where}: a plain department"
        try:
            title = load_scenario(self.scenario_path).title
        except Exception:  # the worker reports the error in full
            title = self.scenario_path.stem
        return f"Starting “{title}” in lab {self.session.lab_id}{where}"

    def on_mount(self) -> None:
        self.sub_title = "booting the lab"
        self._boot()

    # ---------------------------------------------------------------------------- worker
    def _progress(self, message: str) -> None:
        if self.cancel_requested.is_set():
            raise BootCancelled
        self.app.call_from_thread(self._show, message)

    def _show(self, message: str) -> None:
        self.messages.append(message)
        self.query_one("#progress", RichLog).write(message)
        self.query_one("#bar", ProgressBar).advance(1)

    @work(thread=True, exclusive=True, group="boot", exit_on_error=False)
    def _boot(self) -> None:
        session = self.session
        lab: Lab | None = None
        try:
            self._clear_stopped_lab()
            if self.scenario_path is not None:
                run: ScenarioRun | None = ScenarioRun.start(
                    session.home,
                    self.scenario_path,
                    session.lab_id,
                    progress=self._progress,
                    actor=session.actor,
                    runtime=session.runtime,
                    docker_base=session.docker_base,
                )
                assert run is not None
                lab = run.lab
            else:
                run = None
                self._progress(f"creating lab {session.lab_id} ({session.runtime} runtime)")
                lab = Lab.create(
                    session.home,
                    session.lab_id,
                    runtime=session.runtime,
                    docker_base=session.docker_base,
                )
                self._progress("starting the department")
                lab.up(
                    timeout=session.up_timeout,
                    progress=lambda n, m: self._progress(f"{n}: {m}"),
                )
            if self.cancel_requested.is_set():
                raise BootCancelled
        except BootCancelled:
            self._cleanup()
            self.app.call_from_thread(self._abandon, "cancelled")
            return
        except Exception as exc:
            self._cleanup()
            self.app.call_from_thread(self._abandon, lab_error_text(exc))
            return
        session.attach(lab, run, started_here=True)
        self.app.call_from_thread(self._booted)

    def _clear_stopped_lab(self) -> None:
        """A new lab replaces a stopped one of the same id; a running one is an error."""
        if Lab.clear_stopped(self.session.home, self.session.lab_id):
            self._progress(f"replaced the stopped lab {self.session.lab_id}")

    def _cleanup(self) -> None:
        """Stop every node the boot started (the lab directory stays for its logs)."""
        with contextlib.suppress(LabError, ValueError, OSError):
            lab = Lab.open(self.session.home, self.session.lab_id)
            if any(lab.node_running(e) for e in lab.manifest.nodes):
                lab.down()

    # ------------------------------------------------------------------------ outcomes
    def _booted(self) -> None:
        self.done = True
        bar = self.query_one("#bar", ProgressBar)
        bar.update(total=bar.progress or 1, progress=bar.progress or 1)
        self.post_message(self.Booted())

    def _abandon(self, error: str) -> None:
        self.done = True
        self.failed = True
        log = self.query_one("#progress", RichLog)
        if error == "cancelled":
            log.write(Text("Cancelled: every node started is stopped.", style="bold yellow"))
        else:
            log.write(Text(f"Failed: {error}", style="bold red"))
            self.query_one("#hint", Label).update("Esc goes back to the catalog.")
        self.query_one("#bar", ProgressBar).update(total=1, progress=0)
        self.sub_title = "cancelled" if error == "cancelled" else "failed"
        self.post_message(self.Abandoned(error))

    def action_cancel(self) -> None:
        if self.done:
            self.app.pop_screen()
            return
        if not self.cancel_requested.is_set():
            self.cancel_requested.set()
            self.query_one("#progress", RichLog).write(
                Text("cancelling: stopping what was started…", style="yellow")
            )
