"""The trainee's TUI on a real lab: catalog → boot → dashboard → hint → fix → submit → report.

Everything is real: the scenario boots real node processes from the catalog, the fix goes
through the same action engine the TUI's consoles use (`session.actions`), objectives are
judged by probing the nodes, and quitting stops every node the app started.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, RadioButton, RadioSet, Select, Static

from simlab.runtime.lab import Lab, LabError
from simlab.tui.app import SimlabApp, make_app
from simlab.tui.screens.boot import BootScreen
from simlab.tui.screens.catalog import ScenarioCatalogScreen
from simlab.tui.screens.dashboard import DashboardScreen
from simlab.tui.screens.lab_modals import SubmitModal
from simlab.tui.screens.report import ReportScreen
from simlab.tui.session import TuiSession
from simlab.tui.widgets.confirm import ConfirmModal
from simlab.tui.widgets.objectives import ObjectivesView
from simlab.tui.widgets.topology import TopologyMap
from tests.conftest import node_processes

REPO = Path(__file__).resolve().parents[1]
SCENARIO = "ct-wrong-called-ae"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A home for the module's labs; whatever lab is left running is stopped at the end."""
    root = tmp_path_factory.mktemp("tui-home")
    yield root
    for labs in (root / "labs").glob("*"):
        try:
            Lab.open(root, labs.name).down()
        except (LabError, ValueError):
            continue


async def wait_for(pilot: Pilot[None], done: Callable[[], bool], timeout: float, what: str) -> None:
    """Let the app run until `done()` (checked on the UI side), or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.2)


def text_of(static: Static) -> str:
    return str(static.content)


@pytest.mark.timeout(300)
def test_a_trainee_plays_ct_wrong_called_ae_from_the_catalog_to_the_report(home: Path) -> None:
    session = TuiSession(home=home, actor="trainee")
    app = make_app(session)

    async def play() -> None:
        async with app.run_test(size=(100, 32)) as pilot:
            await wait_for(
                pilot, lambda: isinstance(app.screen, ScenarioCatalogScreen), 10, "the catalog"
            )
            catalog = app.screen
            assert isinstance(catalog, ScenarioCatalogScreen)
            everything = len(catalog.shown)
            assert everything >= 2

            # Filter by level: only novice scenarios remain, ours among them.
            catalog.query_one("#level", Select).value = "novice"
            await pilot.pause()
            assert 0 < len(catalog.shown) < everything
            assert {e.scenario.level for e in catalog.shown if e.scenario} == {"novice"}
            ids = [e.scenario.id for e in catalog.shown if e.scenario]
            assert SCENARIO in ids

            # Preview: the briefing and the ticket's reporter, never the answer.
            table = catalog.query_one("#scenarios", DataTable)
            table.move_cursor(row=ids.index(SCENARIO))
            await pilot.pause()
            preview = text_of(catalog.query_one("#preview", Static))
            assert "service visit" in preview
            assert "Dr. Lee" in preview
            assert "about 10 min" in preview
            assert "PACS_MAIN" not in preview and "1/1/7" not in preview

            # Start it: the boot screen lists progress, then the dashboard opens.
            table.focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, BootScreen), 5, "boot")
            boot = app.screen
            assert isinstance(boot, BootScreen)
            await wait_for(
                pilot, lambda: isinstance(app.screen, DashboardScreen), 120, "the dashboard"
            )
            assert any("steady state verified" in m for m in boot.messages)
            run = session.run
            assert run is not None and session.lab is not None and session.started_here
            dashboard = app.screen
            assert isinstance(dashboard, DashboardScreen)

            # Topology: every node of the scenario, each UP (in words, not only colour).
            topology = dashboard.query_one("#topology", TopologyMap)
            wanted = {"pacs", "ris", "viewer", "ct-1", "mr-1"}
            await wait_for(
                pilot,
                lambda: (
                    wanted <= set(topology.node_ids())
                    and all(c.view.state == "up" for c in topology._cards.values())
                ),
                30,
                "every node UP on the map",
            )
            card = topology._cards["pacs"]
            assert "UP" in str(card.content) and "SIMLAB_PACS" in str(card.content)

            # The ticket with its placeholders filled from the seeded data.
            accession = run.state.refs["morning_ct"]["accession"]
            await wait_for(
                pilot,
                lambda: accession in text_of(dashboard.query_one("#ticket", Static)),
                10,
                "the filled ticket",
            )
            ticket = text_of(dashboard.query_one("#ticket", Static))
            assert "This morning's CT head is not in the PACS" in ticket
            assert "${" not in ticket

            # The live event log shows the lab's events, never the fault.
            events = dashboard.query_one("#events")
            await wait_for(pilot, lambda: events.shown > 0, 10, "events in the log")
            log_text = "\n".join(str(line.text) for line in events.lines)
            assert "scenario started" in log_text or "ticket shown" in log_text
            assert "fault injected" not in log_text and "wrong_called_ae" not in log_text

            # A hint, through the confirmation modal: it costs 5 points.
            await pilot.press("h")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), 5, "hint modal")
            await pilot.press("y")
            await wait_for(
                pilot, lambda: run.state.hints_taken == ["nudge"], 10, "the hint to be taken"
            )
            await wait_for(
                pilot,
                lambda: any(h.taken for h in dashboard.hint_views),
                10,
                "the hint list to show it taken",
            )
            assert "send queue" in dashboard.hint_views[0].text

            # The fix, through the action engine the TUI's consoles use (journalled).
            actions = session.actions
            assert actions is not None and actions.actor == "trainee"
            pacs_ae = session.lab.manifest.node("pacs").ae_title
            fixed = await asyncio.to_thread(
                actions.config_set, node="ct-1", key="destination.ae_title", value=pacs_ae
            )
            assert fixed.ok, fixed.text
            retried = await asyncio.to_thread(actions.queue_retry, node="ct-1")
            assert retried.ok, retried.text

            # Objectives, checked with `o` until every one is met.
            box = dashboard.query_one("#objectives", ObjectivesView)
            deadline = time.monotonic() + 120
            while not box.all_met:
                assert time.monotonic() < deadline, f"objectives never met: {box.views}"
                await pilot.press("o")
                await pilot.pause(1.5)
            assert "✔ MET" in str(box.content)

            # Submit through the modal: the right choice as a radio button.
            await pilot.press("s")
            await wait_for(pilot, lambda: isinstance(app.screen, SubmitModal), 5, "submit modal")
            modal = app.screen
            radios = modal.query_one("#q-root_cause", RadioSet)
            next(b for b in radios.query(RadioButton) if b.name == "a").value = True
            await pilot.pause()
            assert modal.answers() == {"root_cause": "a"}
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: isinstance(app.screen, ReportScreen), 60, "the report")
            report_screen = app.screen
            assert isinstance(report_screen, ReportScreen)
            await wait_for(
                pilot,
                lambda: report_screen.query_one("#breakdown", DataTable).row_count > 0,
                5,
                "the breakdown table",
            )
            score = report_screen.report["score"]
            # 100 for the objectives + 10 for the right answer, minus the 5-point hint.
            assert (score["total"], score["maximum"]) == (105.0, 110.0)
            assert score["percent"] == 95.5
            assert score["passed"] is True
            assert [
                (x["label"], x["points"]) for x in score["lines"] if x["category"] == "hints"
            ] == [("hint nudge", -5.0)]
            shown = text_of(report_screen.query_one("#score", Static))
            assert "105 / 110 (95.5%)" in shown and "PASSED" in shown
            assert report_screen.query_one("#breakdown", DataTable).row_count >= 2
            assert report_screen.query_one("#timeline", DataTable).row_count >= 3
            assert "answer given: a)" in text_of(report_screen.query_one("#questions", Static))

            # Export to HTML under the lab's reports directory.
            await pilot.press("e")
            await pilot.pause()
            html = report_screen.exported["html"]
            assert html.parent == session.lab.paths.root / "reports"
            assert "105 / 110 (95.5%)" in html.read_text(encoding="utf-8")

            # q asks (a lab runs), then stops the lab this app started and quits.
            await pilot.press("q")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), 5, "quit modal")
            await pilot.press("y")
            await wait_for(pilot, lambda: not session.lab_running(), 30, "the lab to stop")

    asyncio.run(play())
    lab = Lab.open(home, session.lab_id)
    assert {s.state for s in lab.status()} == {"not started"}
    assert node_processes(home) == []
    journal = lab.events.read()
    trainee = [e for e in journal if e["kind"] == "action" and e.get("actor") == "trainee"]
    assert [e["action"] for e in trainee] == ["config.set", "queue.retry"]


@pytest.mark.timeout(120)
def test_cancelling_a_free_play_boot_leaves_no_node_running(home: Path) -> None:
    session = TuiSession(home=home, lab_id="freeplay")
    app: SimlabApp = make_app(session, entries=[])

    async def play() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(
                pilot, lambda: isinstance(app.screen, ScenarioCatalogScreen), 10, "the catalog"
            )
            await pilot.press("f")
            await wait_for(pilot, lambda: isinstance(app.screen, BootScreen), 5, "boot")
            boot = app.screen
            assert isinstance(boot, BootScreen)
            await wait_for(pilot, lambda: len(boot.messages) >= 3, 30, "the first progress")
            await pilot.press("escape")
            await wait_for(
                pilot, lambda: isinstance(app.screen, ScenarioCatalogScreen), 60, "the catalog"
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
                await wait_for(
                    pilot, lambda: isinstance(app.screen, DashboardScreen), 10, "the dashboard"
                )
                dashboard = app.screen
                assert isinstance(dashboard, DashboardScreen)
                topology = dashboard.query_one("#topology", TopologyMap)
                await wait_for(
                    pilot,
                    lambda: (
                        len(topology.node_ids()) == len(lab.manifest.nodes)
                        and all(c.view.state == "up" for c in topology._cards.values())
                    ),
                    30,
                    "every node UP",
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
                await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), 5, "quit modal")
                assert "keeps running" in app.screen.question
                await pilot.press("y")
                await pilot.pause(0.5)

        asyncio.run(play())
        assert app.return_code == 0
        assert {s.state for s in lab.status()} == {"up"}
    finally:
        lab.down()
    assert node_processes(home / "labs" / "attached") == []
