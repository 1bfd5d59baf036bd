"""The TUI's lifecycle on real labs: cancelling a boot, attaching to a running lab, and the real
`simlab` entrypoint in a terminal. (Whole scenarios played through the TUI: test_tui_play.py.)
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import Static

from simlab.runtime.lab import Lab
from simlab.tui.app import SimlabApp, make_app
from simlab.tui.screens.boot import BootScreen
from simlab.tui.screens.catalog import ScenarioCatalogScreen
from simlab.tui.screens.dashboard import DashboardScreen
from simlab.tui.session import TuiSession
from simlab.tui.widgets.confirm import ConfirmModal
from simlab.tui.widgets.topology import TopologyMap
from tests.conftest import node_processes
from tests.pilot_helpers import stop_labs_under, text_of, until

REPO = Path(__file__).resolve().parents[1]
SCENARIO = "ct-wrong-called-ae"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A home for the module's labs; whatever lab is left running is stopped at the end."""
    root = tmp_path_factory.mktemp("tui-home")
    yield root
    stop_labs_under(root)


@pytest.mark.timeout(120)
def test_cancelling_a_free_play_boot_leaves_no_node_running(home: Path) -> None:
    session = TuiSession(home=home, lab_id="freeplay")
    app: SimlabApp = make_app(session, entries=[])

    async def play() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(
                pilot, lambda: isinstance(app.screen, ScenarioCatalogScreen), "the catalog", 10
            )
            await pilot.press("f")
            await until(pilot, lambda: isinstance(app.screen, BootScreen), "boot", 5)
            boot = app.screen
            assert isinstance(boot, BootScreen)
            await until(pilot, lambda: len(boot.messages) >= 3, "the first progress", 30)
            await pilot.press("escape")
            await until(
                pilot, lambda: isinstance(app.screen, ScenarioCatalogScreen), "the catalog", 60
            )
            assert boot.failed and session.lab is None

    asyncio.run(play())
    assert node_processes(home / "labs" / "freeplay") == []
    lab = Lab.open(home, "freeplay")
    assert all(s.state != "up" for s in lab.status())


def _pane(session: str) -> str:
    out = subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
    )
    return out.stdout


@pytest.mark.timeout(90)
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_simlab_without_arguments_opens_the_catalog_in_a_terminal_and_q_quits(
    tmp_path: Path,
) -> None:
    name = f"simlab-tui-{os.getpid()}"
    env_home = tmp_path / "home"
    command = (
        f"cd {REPO} && SIMLAB_HOME={env_home} {sys.executable} -m simlab; "
        f"echo SIMLAB-EXITED-$?; sleep 30"
    )
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", name, "-x", "100", "-y", "30", command], check=True
    )
    try:
        deadline = time.monotonic() + 40
        while "scenario catalog" not in _pane(name):
            assert time.monotonic() < deadline, f"no catalog on screen:\n{_pane(name)}"
            time.sleep(0.2)
        screen = _pane(name)
        assert "novice" in screen and "Free play" in screen
        subprocess.run(["tmux", "send-keys", "-t", name, "q"], check=True)
        deadline = time.monotonic() + 20
        while "SIMLAB-EXITED-" not in _pane(name):
            assert time.monotonic() < deadline, f"q did not quit:\n{_pane(name)}"
            time.sleep(0.2)
        assert "SIMLAB-EXITED-0" in _pane(name)
        assert node_processes(tmp_path) == []
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)


@pytest.mark.timeout(120)
def test_tui_attaches_to_a_running_free_play_lab_and_leaves_it_running(home: Path) -> None:
    """`simlab tui --lab ID`: the dashboard of a lab another command started; q leaves it up."""
    lab = Lab.create(home, "attached")
    lab.up(timeout=60)
    try:
        session = TuiSession(home=home)
        session.open_lab("attached")
        assert session.lab_running() and not session.started_here and session.run is None
        app = make_app(session, entries=[])

        async def play() -> None:
            async with app.run_test(size=(80, 24)) as pilot:
                await until(
                    pilot, lambda: isinstance(app.screen, DashboardScreen), "the dashboard", 10
                )
                dashboard = app.screen
                assert isinstance(dashboard, DashboardScreen)
                topology = dashboard.query_one("#topology", TopologyMap)
                await until(
                    pilot,
                    lambda: (
                        len(topology.node_ids()) == len(lab.manifest.nodes)
                        and all(c.view.state == "up" for c in topology._cards.values())
                    ),
                    "every node UP",
                    30,
                )
                assert "Free play" in text_of(dashboard.query_one("#ticket", Static))
                # Submit has nothing to judge in free play; it says so instead of a modal.
                await pilot.press("s")
                await pilot.pause()
                assert isinstance(app.screen, DashboardScreen)
                # The node console of the selected node (another module's screen).
                await pilot.press("c")
                await pilot.pause(0.5)
                name = type(app.screen).__name__
                assert name == "NodeConsoleScreen" or any(
                    "not available yet" in str(n.message) for n in app._notifications
                ), name
                if name == "NodeConsoleScreen":
                    app.pop_screen()
                    await pilot.pause()
                await pilot.press("q")
                await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "quit modal", 5)
                assert "keeps running" in app.screen.question
                await pilot.press("y")
                await pilot.pause(0.5)

        asyncio.run(play())
        assert app.return_code == 0
        assert {s.state for s in lab.status()} == {"up"}
    finally:
        lab.down()
    assert node_processes(home / "labs" / "attached") == []
