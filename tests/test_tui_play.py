"""Two scenarios played from the catalog to the score report through the TUI alone.

The trainee never touches the CLI or the action engine: they read the ticket, open node
consoles from the topology map, edit config in the console's editor (with the diff before
apply), retry the send queue, add an AE table row, reproduce the failure with the DICOM
toolbox, submit with the root-cause answers, and read the score. Every node is a real process;
objectives are judged by probing them; the score is asserted to the point.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, RadioButton, RadioSet, Select, Static, TextArea
from textual.widgets.text_area import Selection

from simlab.runtime.lab import Lab
from simlab.tui.app import SimlabApp, make_app
from simlab.tui.screens.catalog import ScenarioCatalogScreen
from simlab.tui.screens.console import NodeConsoleScreen
from simlab.tui.screens.dashboard import DashboardScreen
from simlab.tui.screens.dicom_toolbox import DicomToolboxScreen
from simlab.tui.screens.lab_modals import SubmitModal
from simlab.tui.screens.report import ReportScreen
from simlab.tui.session import TuiSession
from simlab.tui.widgets.confirm import ConfirmModal
from simlab.tui.widgets.console_modals import AeEditModal, DiffModal
from simlab.tui.widgets.console_panes import AePane, ConfigPane, QueuePane
from simlab.tui.widgets.objectives import ObjectivesView
from simlab.tui.widgets.topology import TopologyMap
from tests.conftest import node_processes
from tests.pilot_helpers import start_from_catalog, stop_labs_under, text_of, until

SIZE = (100, 32)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A home for the module's labs; whatever lab is left running is stopped at the end."""
    root = tmp_path_factory.mktemp("tui-play")
    yield root
    stop_labs_under(root)


# ------------------------------------------------------------------------------ the trainee's moves
async def filter_and_preview(pilot: Pilot[None], app: SimlabApp) -> None:
    """The catalog filters by level, and its preview shows the briefing, never the answer."""
    catalog = await until(
        pilot,
        lambda: isinstance(app.screen, ScenarioCatalogScreen) and app.screen,
        "the catalog",
        10,
    )
    everything = len(catalog.shown)
    catalog.query_one("#level", Select).value = "novice"
    await pilot.pause()
    assert 0 < len(catalog.shown) < everything
    assert {e.scenario.level for e in catalog.shown if e.scenario} == {"novice"}
    ids = [e.scenario.id for e in catalog.shown if e.scenario]
    catalog.query_one("#scenarios", DataTable).move_cursor(row=ids.index("ct-wrong-called-ae"))
    await pilot.pause()
    preview = text_of(catalog.query_one("#preview", Static))
    assert "service visit" in preview and "Dr. Lee" in preview and "about 10 min" in preview
    assert "PACS_MAIN" not in preview and "1/1/7" not in preview


async def open_dashboard(pilot: Pilot[None], app: SimlabApp, scenario_id: str) -> DashboardScreen:
    """From the catalog to a dashboard whose nodes are all UP."""
    await start_from_catalog(pilot, app, scenario_id)
    dashboard = await until(
        pilot,
        lambda: isinstance(app.screen, DashboardScreen) and app.screen,
        "the dashboard",
        120,
        0.2,
    )
    topology = dashboard.query_one("#topology", TopologyMap)
    await until(
        pilot,
        lambda: topology._cards and all(c.view.state == "up" for c in topology._cards.values()),
        "every node UP on the map",
        30,
        0.2,
    )
    return dashboard


async def open_console(pilot: Pilot[None], app: SimlabApp, node_id: str) -> NodeConsoleScreen:
    """Focus the node's card on the map and press Enter: its console opens."""
    dashboard = app.screen
    assert isinstance(dashboard, DashboardScreen)
    dashboard.query_one(f"#node-{node_id}").focus()
    await pilot.pause()
    await pilot.press("enter")
    console = await until(
        pilot,
        lambda: isinstance(app.screen, NodeConsoleScreen) and app.screen,
        f"the console of {node_id}",
        10,
    )
    assert console.node_id == node_id
    return console


async def next_tab(pilot: Pilot[None], console: NodeConsoleScreen, tab_id: str) -> Any:
    """alt+→ until the console shows `tab_id`; the pane, once it has loaded."""
    for _ in range(len(console.tabs)):
        if console.active_pane().id == f"pane-{tab_id}":
            break
        await pilot.press("alt+right")
    pane = console.active_pane()
    assert pane.id == f"pane-{tab_id}", f"no {tab_id} tab in {console.tabs}"
    return pane


async def back_to_dashboard(pilot: Pilot[None], app: SimlabApp) -> None:
    """Escape (twice if the first one only leaves an editor) back to the dashboard."""
    for _ in range(2):
        await pilot.press("escape")
        await pilot.pause()
        if isinstance(app.screen, DashboardScreen):
            return
    raise AssertionError(f"escape left the trainee on {type(app.screen).__name__}")


async def retype(pilot: Pilot[None], area: TextArea, old: str, new: str) -> None:
    """Select `old` in the editor (first occurrence after a '"ae_title"' key) and type `new`."""
    for row, line in enumerate(area.text.splitlines()):
        col = line.find(f'"{old}"')
        if col >= 0 and '"ae_title"' in line:
            area.focus()
            area.selection = Selection((row, col + 1), (row, col + 1 + len(old)))
            await pilot.press(*new)
            return
    raise AssertionError(f"{old!r} is not an ae_title in the editor")


async def run_toolbox(
    pilot: Pilot[None], app: SimlabApp, op: str, fields: dict[str, Any]
) -> DicomToolboxScreen:
    """Open the DICOM toolbox with `d`, fill the form, press F5 and wait for the answer."""
    await pilot.press("d")
    box = await until(
        pilot,
        lambda: isinstance(app.screen, DicomToolboxScreen) and app.screen,
        "the DICOM toolbox",
        10,
    )
    box.query_one("#tbx-op", Select).value = op
    await pilot.pause()
    for selector, value in fields.items():
        widget = box.query_one(selector)
        if isinstance(widget, TextArea):
            widget.load_text(value)
        else:
            widget.value = value  # type: ignore[attr-defined]
    await pilot.pause()
    box.last_result = None
    await pilot.press("f5")
    await until(pilot, lambda: box.last_result is not None, f"the {op} result", 60, 0.1)
    return box


async def check_until_met(pilot: Pilot[None], dashboard: DashboardScreen) -> ObjectivesView:
    """Press `o` until every objective is met (the lab settles in its own time)."""
    box = dashboard.query_one("#objectives", ObjectivesView)
    for _ in range(80):
        if box.all_met:
            return box
        await pilot.press("o")
        await pilot.pause(1.5)
    raise AssertionError(f"objectives never met: {box.views}")


async def submit(pilot: Pilot[None], app: SimlabApp, answers: dict[str, str]) -> ReportScreen:
    """`s`, tick each answer's radio button, ctrl+s: the report screen."""
    await pilot.press("s")
    modal = await until(
        pilot, lambda: isinstance(app.screen, SubmitModal) and app.screen, "the submit modal", 5
    )
    for question, choice in answers.items():
        radios = modal.query_one(f"#q-{question}", RadioSet)
        next(b for b in radios.query(RadioButton) if b.name == choice).value = True
    await pilot.pause()
    assert modal.answers() == answers
    await pilot.press("ctrl+s")
    report = await until(
        pilot, lambda: isinstance(app.screen, ReportScreen) and app.screen, "the report", 90, 0.2
    )
    await until(
        pilot, lambda: report.query_one("#breakdown", DataTable).row_count > 0, "the breakdown"
    )
    return report


async def quit_and_stop(pilot: Pilot[None], app: SimlabApp, session: TuiSession) -> None:
    await pilot.press("q")
    await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the quit question", 5)
    await pilot.press("y")
    await until(pilot, lambda: not session.lab_running(), "the lab to stop", 30, 0.2)


def trainee_actions(home: Path, lab_id: str) -> list[str]:
    journal = Lab.open(home, lab_id).events.read()
    return [e["action"] for e in journal if e["kind"] == "action" and e.get("actor") == "trainee"]


# ------------------------------------------------------------------------------------ the plays
@pytest.mark.timeout(360)
def test_ct_wrong_called_ae_fixed_in_the_ct_console_and_verified_with_the_toolbox(
    home: Path,
) -> None:
    session = TuiSession(home=home, actor="trainee", lab_id="play-ct")
    app = make_app(session)
    seen: dict[str, Any] = {}

    async def play() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await filter_and_preview(pilot, app)
            dashboard = await open_dashboard(pilot, app, "ct-wrong-called-ae")
            assert session.lab is not None and session.run is not None and session.started_here
            pacs_ae = session.lab.manifest.node("pacs").ae_title
            card = dashboard.query_one("#topology", TopologyMap)._cards["pacs"]
            assert "UP" in str(card.content) and pacs_ae in str(card.content)

            # The ticket, filled from the seeded data; the event log never shows the fault.
            accession = session.run.state.refs["morning_ct"]["accession"]
            await until(
                pilot,
                lambda: accession in text_of(dashboard.query_one("#ticket", Static)),
                "the ticket",
            )
            ticket = text_of(dashboard.query_one("#ticket", Static))
            assert "This morning's CT head is not in the PACS" in ticket and "${" not in ticket
            # ... but it shows the traffic as the nodes log it: the PACS refusing the CT, 1/1/7.
            events = dashboard.query_one("#events")

            def log_text() -> str:
                """The log's text, wrapped lines joined again."""
                return " ".join(" ".join(str(line.text).split()) for line in events.lines)

            await until(
                pilot,
                lambda: "association REJECTED: CT_1" in log_text(),
                "the PACS's rejection in the event log",
                30,
                0.2,
            )
            assert "reason 7 (called AE title not recognised)" in log_text()
            assert "fault injected" not in log_text() and "wrong_called_ae" not in log_text()

            # A hint, through the confirmation: it costs 5 points.
            await pilot.press("h")
            await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the hint question")
            await pilot.press("y")
            await until(
                pilot, lambda: any(h.taken for h in dashboard.hint_views), "the hint taken", 10
            )
            assert session.run.state.hints_taken == ["nudge"]
            assert "send queue" in dashboard.hint_views[0].text

            # The CT's console: its send queue shows why nothing arrived.
            console = await open_console(pilot, app, "ct-1")
            queue = await next_tab(pilot, console, "queue")
            assert isinstance(queue, QueuePane)
            await until(
                pilot,
                lambda: any("1/1/7" in str(i.get("reason")) for i in queue.items),
                "the queue's 1/1/7 failure",
            )
            seen["failed"] = len(queue.items)

            # Config: the destination's called AE is PACS_MAIN; type the PACS's own title.
            await pilot.press("alt+left")
            config = console.active_pane()
            assert isinstance(config, ConfigPane)
            await until(pilot, lambda: config.original, "the CT's config")
            assert config.original["destination"]["ae_title"] == "PACS_MAIN"
            area = config.query_one("#config-text", TextArea)
            await retype(pilot, area, "PACS_MAIN", pacs_ae)
            await pilot.press("ctrl+s")
            diff = await until(
                pilot, lambda: isinstance(app.screen, DiffModal) and app.screen, "the diff", 5
            )
            assert '-    "ae_title": "PACS_MAIN",' in diff.diff
            assert f'+    "ae_title": "{pacs_ae}",' in diff.diff
            await pilot.press("y")
            await until(
                pilot,
                lambda: (config.original or {}).get("destination", {}).get("ae_title") == pacs_ae,
                "the CT to apply its new destination",
            )
            await back_to_dashboard(pilot, app)

            # Verify from the CT's console AE with the toolbox: C-ECHO CT_1 → PACS.
            box = await run_toolbox(pilot, app, "echo", {"#tbx-from": "ct-1", "#tbx-to": "pacs"})
            assert box.last_result.ok, box.last_result.text  # type: ignore[union-attr]
            assert "Success" in text_of(box.query_one("#tbx-status", Static))
            await back_to_dashboard(pilot, app)

            # Back in the CT's console: retry everything that failed.
            console = await open_console(pilot, app, "ct-1")
            queue = await next_tab(pilot, console, "queue")
            await until(pilot, lambda: queue.items, "the queue")
            await pilot.press("R")
            await until(
                pilot,
                lambda: "queue.retry" in trainee_actions(home, "play-ct"),
                "the retry to be done",
                30,
                0.2,
            )
            await back_to_dashboard(pilot, app)

            await check_until_met(pilot, dashboard)
            report = await submit(pilot, app, {"root_cause": "a"})
            # 100 for the objectives + 10 for the right answer, minus the 5-point hint.
            score = report.report["score"]
            assert (score["total"], score["maximum"], score["percent"]) == (105.0, 110.0, 95.5)
            assert score["passed"] is True
            assert [
                (x["label"], x["points"]) for x in score["lines"] if x["category"] == "hints"
            ] == [("hint nudge", -5.0)]
            shown = text_of(report.query_one("#score", Static))
            assert "105 / 110 (95.5%)" in shown and "PASSED" in shown
            assert report.query_one("#timeline", DataTable).row_count >= 3
            assert "answer given: a)" in text_of(report.query_one("#questions", Static))

            # Export to HTML under the lab's reports directory.
            await pilot.press("e")
            await until(pilot, lambda: report.exported.get("html"), "the HTML export", 10)
            html = report.exported["html"]
            assert html.parent == session.lab.paths.root / "reports"
            assert "105 / 110 (95.5%)" in html.read_text(encoding="utf-8")
            await quit_and_stop(pilot, app, session)

    asyncio.run(play())
    assert seen["failed"] >= 1
    done = trainee_actions(home, "play-ct")
    assert "config.patch" in done and "dicom.echo" in done and "queue.retry" in done
    assert node_processes(home / "labs" / "play-ct") == []


@pytest.mark.timeout(360)
def test_viewer_move_destination_unknown_reproduced_with_a_move_and_fixed_in_the_ae_table(
    home: Path,
) -> None:
    session = TuiSession(home=home, actor="trainee", lab_id="play-viewer")
    app = make_app(session)

    async def play() -> None:
        async with app.run_test(size=SIZE) as pilot:
            dashboard = await open_dashboard(pilot, app, "viewer-move-destination-unknown")
            assert session.run is not None
            accession = session.run.state.refs["head_ct"]["accession"]
            move_by_accession = {
                "#tbx-to": "pacs",
                "#tbx-level": "STUDY",
                "#tbx-query": f"AccessionNumber={accession}",
                "#tbx-dest": "SIMLAB_VIEWER",
            }

            # Reproduce the radiologist's retrieve: C-MOVE to SIMLAB_VIEWER from ADMIN_WS.
            box = await run_toolbox(
                pilot,
                app,
                "move",
                move_by_accession,
            )
            status = text_of(box.query_one("#tbx-status", Static))
            assert "0xA801" in status, status
            await back_to_dashboard(pilot, app)

            # Where the workstation listens: its own console's config.
            console = await open_console(pilot, app, "viewer")
            config = console.active_pane()
            assert isinstance(config, ConfigPane)
            await until(pilot, lambda: config.original, "the viewer's config")
            viewer = {
                "ae": config.original["dicom"]["ae_title"],
                "host": config.original["dicom"]["host"],
                "port": str(config.original["dicom"]["port"]),
            }
            await back_to_dashboard(pilot, app)

            # The PACS AE table has no SIMLAB_VIEWER: add it back.
            console = await open_console(pilot, app, "pacs")
            table = await next_tab(pilot, console, "ae")
            assert isinstance(table, AePane)
            await until(pilot, lambda: table.rows, "the PACS AE table")
            assert viewer["ae"] not in {r["ae_title"] for r in table.rows}
            await pilot.press("a")
            form = await until(
                pilot, lambda: isinstance(app.screen, AeEditModal) and app.screen, "the AE form"
            )
            form.query_one("#ae_title", Input).value = viewer["ae"]
            form.query_one("#host", Input).value = viewer["host"]
            form.query_one("#port", Input).value = viewer["port"]
            form.query_one("#description", Input).value = "reading room workstation"
            await pilot.press("ctrl+s")
            await until(
                pilot,
                lambda: any(r["ae_title"] == viewer["ae"] for r in table.rows),
                "the new AE row",
            )
            await back_to_dashboard(pilot, app)

            # Now the PACS takes the destination and checks the identifier: a STUDY-level
            # retrieve names the study by its unique key (PS3.4 C.4.2.2.1), so find it first.
            box = await run_toolbox(
                pilot,
                app,
                "move",
                move_by_accession,
            )
            assert "0xA900" in text_of(box.query_one("#tbx-status", Static))
            await back_to_dashboard(pilot, app)
            box = await run_toolbox(
                pilot,
                app,
                "find",
                {
                    "#tbx-to": "pacs",
                    "#tbx-level": "STUDY",
                    "#tbx-query": f"AccessionNumber={accession}\nStudyInstanceUID=",
                },
            )
            matches = box.last_result.data["matches"]  # type: ignore[union-attr]
            results = box.query_one("#tbx-table", DataTable)
            assert len(matches) == 1 and results.row_count == 1
            study_uid = matches[0]["StudyInstanceUID"]

            # Enter on the match: the form becomes a retrieve of it by its unique key, and
            # the destination typed before is still there.
            results.focus()
            await pilot.press("enter")
            await until(
                pilot,
                lambda: box.form_values()["#tbx-op"] == "move",
                "the match to become a C-MOVE",
                5,
            )
            form = box.form_values()
            assert form["#tbx-query"] == f"StudyInstanceUID={study_uid}"
            assert form["#tbx-dest"] == "SIMLAB_VIEWER" and form["#tbx-level"] == "STUDY"
            box.last_result = None
            await pilot.press("f5")
            await until(pilot, lambda: box.last_result is not None, "the move result", 60, 0.1)
            assert box.last_result.ok, box.last_result.text  # type: ignore[union-attr]
            assert "0x0000" in text_of(box.query_one("#tbx-status", Static))
            await back_to_dashboard(pilot, app)

            await check_until_met(pilot, dashboard)
            report = await submit(pilot, app, {"status": "a", "viewer_reject": "b"})
            score = report.report["score"]
            assert score["total"] == score["maximum"] and score["percent"] == 100.0
            assert score["passed"] is True
            questions = text_of(report.query_one("#questions", Static))
            assert "answer given: a)" in questions and "answer given: b)" in questions
            await quit_and_stop(pilot, app, session)

    asyncio.run(play())
    done = trainee_actions(home, "play-viewer")
    assert done.count("dicom.move") == 3 and "dicom.find" in done and "ae.put" in done
    assert node_processes(home / "labs" / "play-viewer") == []
