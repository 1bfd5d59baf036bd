"""The instructor view, driven with Pilot against a real default department lab: inject a fault
from the catalog and revert it, and watch another actor's actions appear in the live feed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, TextArea

from simlab.faults.catalog import load_catalog
from simlab.faults.manager import FaultManager
from simlab.runtime.lab import Lab
from simlab.scenarios.engine import ScenarioRun
from simlab.tui.screens.instructor import InstructorScreen
from simlab.tui.widgets.confirm import ConfirmModal
from simlab.tui.widgets.toolbox_fault_modals import InjectFaultModal, default_params
from simlab.workflow.actions import Actions
from tests.test_tui_toolboxes import SIZE, OneScreenApp, make_session, settle, synced


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab.create(tmp_path_factory.mktemp("home"), "tools")
    try:
        lab.up(timeout=60)
        yield lab
    finally:
        for record in reversed(FaultManager(lab).active()):
            FaultManager(lab).revert(record.fault_id, actor="test-teardown")
        lab.down()


def rows(table: DataTable[Any]) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def test_every_fault_has_its_params_prefilled() -> None:
    catalog = load_catalog()
    assert "wrong_called_ae" in catalog
    for kind, fault in catalog.items():
        params = default_params(fault)
        assert set(params) == set(fault.Params.model_fields), kind


@pytest.mark.timeout(90)
@synced
async def test_inject_wrong_called_ae_from_the_catalog_then_revert(lab: Lab) -> None:
    app = OneScreenApp(lambda: InstructorScreen(make_session(lab, actor="instructor")))
    async with app.run_test(size=SIZE) as pilot:
        screen = pilot.app.screen
        assert isinstance(screen, InstructorScreen)
        catalog = screen.query_one("#ins-catalog", DataTable)
        catalog.focus()
        catalog.move_cursor(row=catalog.get_row_index("wrong_called_ae"))
        await pilot.pause()
        assert "1/1/7" in str(screen.query_one("#ins-symptom").content) or "reason 7" in str(
            screen.query_one("#ins-symptom").content
        )
        await pilot.press("i")
        await pilot.pause()
        modal = pilot.app.screen
        assert isinstance(modal, InjectFaultModal)
        params = modal.query_one("#inject-params", TextArea)
        assert '"node": "ct-1"' in params.text and '"called_ae"' in params.text
        params.text = '{"node": "ct-1", "called_ae": 42}'
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert pilot.app.screen is modal, "invalid params must keep the dialog open"
        assert "called_ae" in str(modal.query_one("#inject-error").content)
        params.text = '{"node": "ct-1", "called_ae": "PACS_MAIN"}'
        await pilot.press("ctrl+s")
        await settle(pilot)
        await pilot.press("f5")
        await settle(pilot)
        active = FaultManager(lab).active()
        assert [(f.fault_id, f.kind) for f in active] == [("wrong_called_ae", "wrong_called_ae")]
        assert lab.client("ct-1").get("/config")["destination"]["ae_title"] == "PACS_MAIN"
        shown = rows(screen.query_one("#ins-active", DataTable))
        assert shown and shown[0][:3] == ["wrong_called_ae", "wrong_called_ae", "ct-1"], shown
        injected = [e for e in lab.events.read() if e["kind"] == "fault_injected"]
        assert injected[-1]["actor"] == "instructor"

        screen.query_one("#ins-active", DataTable).focus()
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(pilot.app.screen, ConfirmModal)
        await pilot.press("y")
        await settle(pilot)
        await pilot.press("f5")
        await settle(pilot)
        assert FaultManager(lab).active() == []
        assert rows(screen.query_one("#ins-active", DataTable)) == []
    assert lab.client("ct-1").get("/config")["destination"]["ae_title"] != "PACS_MAIN"


@pytest.mark.timeout(60)
@synced
async def test_the_feed_shows_another_actors_actions(lab: Lab) -> None:
    app = OneScreenApp(lambda: InstructorScreen(make_session(lab, actor="instructor"), poll=0.2))
    async with app.run_test(size=SIZE) as pilot:
        screen = pilot.app.screen
        assert isinstance(screen, InstructorScreen)
        await settle(pilot)
        before = screen.query_one("#ins-feed", DataTable).row_count
        result = Actions(lab, "trainee-bob").dicom_echo(to="pacs")
        assert result.ok, result.text
        for _ in range(50):
            await pilot.pause(0.1)
            feed = rows(screen.query_one("#ins-feed", DataTable))
            if len(feed) > before:
                break
        assert feed[-1][:3] == ["✔", "trainee-bob", "dicom.echo"], feed[-3:]
        assert '"to":"pacs"' in feed[-1][3]
        hints = rows(screen.query_one("#ins-hints", DataTable))
        assert hints == [["(no scenario running)", "", ""]]


@pytest.mark.timeout(120)
@synced
async def test_reveal_a_hint_of_the_running_scenario(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    scenario = Path(__file__).resolve().parent.parent / "scenarios" / "ct-wrong-called-ae.yaml"
    run = ScenarioRun.start(tmp_path_factory.mktemp("home"), scenario, "hints")
    try:
        first = run.scenario.hints[0].id
        app = OneScreenApp(
            lambda: InstructorScreen(make_session(run.lab, actor="instructor", run=run))
        )
        async with app.run_test(size=SIZE) as pilot:
            screen = pilot.app.screen
            assert isinstance(screen, InstructorScreen)
            hints = screen.query_one("#ins-hints", DataTable)
            assert rows(hints)[0][:3] == [first, f"{run.scenario.hints[0].cost:g}", ""]
            hints.focus()
            await pilot.press("h")
            await pilot.pause()
            assert isinstance(pilot.app.screen, ConfirmModal)
            await pilot.press("y")
            await settle(pilot)
            assert rows(screen.query_one("#ins-hints", DataTable))[0][2] == "yes"
        assert first in ScenarioRun.resume(run.lab).state.hints_taken
        taken = [e for e in run.lab.events.read() if e["kind"] == "hint_taken"]
        assert taken and taken[-1]["actor"] == "instructor" and taken[-1]["hint"] == first
    finally:
        run.lab.down()
