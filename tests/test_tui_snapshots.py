"""Snapshots of the catalog, the dashboard and the report, fed static data (deterministic:
no clock, port, pid, UID or timing on screen). Update with `pytest --snapshot-update`."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from simlab.scenarios.catalog import CatalogEntry
from simlab.scenarios.schema import Scenario
from simlab.tui.app import make_app
from simlab.tui.screens.dashboard import DashboardScreen, HintView, LabFeed, TicketView
from simlab.tui.screens.report import ReportScreen
from simlab.tui.session import TuiSession
from simlab.tui.widgets.objectives import ObjectiveView
from simlab.tui.widgets.topology import NodeView

SIZE = (100, 32)
SMALL = (80, 24)


def scenario(sid: str, title: str, level: str, minutes: int, **extra: Any) -> Scenario:
    return Scenario.model_validate(
        {
            "id": sid,
            "title": title,
            "level": level,
            "expected_minutes": minutes,
            "summary": f"What happens in {title.lower()}: a short briefing for the catalog.",
            "domains": extra.pop("domains", {"cpsa": [2], "ciip": ["operations"]}),
            "ticket": {
                "reporter": "Dr. Lee, radiologist on duty",
                "priority": "high",
                "subject": "Images for ${order.accession} are missing",
                "body": "Please look.",
            },
            "objectives": [{"id": "ok", "title": "It works", "check": {"type": "echo"}}],
            "debrief": "Because.",
            "solution": [{"action": "queue.list", "node": "ct-1"}],
            **extra,
        }
    )


def entries() -> list[CatalogEntry]:
    return [
        CatalogEntry(
            Path("ct-late.yaml"),
            scenario(
                "ct-late",
                "The CT's images stopped arriving",
                "novice",
                10,
                domains={"cpsa": [2, 4], "ciip": ["image management"], "topics": ["dicom"]},
            ),
        ),
        CatalogEntry(
            Path("hl7-down.yaml"),
            scenario("hl7-down", "Nothing from the RIS since noon", "intermediate", 20),
        ),
        CatalogEntry(
            Path("meltdown.yaml"),
            scenario("meltdown", "Monday meltdown", "expert", 45, team=True),
        ),
        CatalogEntry(Path("broken.yaml"), None, "broken.yaml:3: ticket: field required"),
    ]


class StaticFeed(LabFeed):
    """A lab that never changes: what the dashboard snapshot shows."""

    lab_id = "demo"
    title = "The CT's images stopped arriving"
    free_play = False
    started_at = 1_000_000.0

    def status(self) -> list[NodeView]:
        return [
            NodeView("pacs", "pacs", "SIMLAB_PACS", "up"),
            NodeView("ris", "ris", None, "up"),
            NodeView("viewer", "viewer", "VIEWER", "up"),
            NodeView("ct-1", "modality", "CT_1", "unhealthy", "queue stalled"),
            NodeView("mr-1", "modality", "MR_1", "up"),
            NodeView("cr-1", "modality", "CR_1", "down", "process 1 is gone"),
            NodeView("net", "network", None, "up"),
        ]

    def new_events(self) -> list[dict[str, Any]]:
        t = self.started_at
        return [
            {"ts": t, "kind": "scenario_started", "scenario": "ct-late", "seed": 11},
            {"ts": t + 1, "kind": "fault_injected", "fault": "secret", "type": "wrong_called_ae"},
            {"ts": t + 2, "kind": "activity", "activity": "scan", "ok": True, "order": "A1"},
            {
                "ts": t + 3,
                "kind": "node_log",
                "node": "pacs",
                "level": "WARNING",
                "message": "association REJECTED: CT_1 (127.0.0.1:40112) -> PACS_MAIN: result 1 "
                "(rejected-permanent), source 1 (service-user), reason 7 (called AE title not "
                "recognised) (we are SIMLAB_PACS)",
            },
            {
                "ts": t + 4,
                "kind": "node_log",
                "node": "pacs",
                "level": "INFO",
                "message": "HL7 ORM^O01 ctrl=RIS12 from SIMLAB_RIS/RADIOLOGY: ACK AA",
            },
            {
                "ts": t + 65,
                "kind": "action",
                "action": "queue.list",
                "actor": "trainee",
                "args": {"node": "ct-1"},
                "ok": True,
                "result": "ct-1: 4 queued (4 failed)",
            },
            {"ts": t + 70, "kind": "hint_taken", "hint": "nudge", "cost": 5, "actor": "trainee"},
            {"ts": t + 90, "kind": "node_exited", "node": "cr-1", "pid": 1, "code": -9},
        ]

    def objectives(self, record: bool) -> list[ObjectiveView]:
        return [
            ObjectiveView("echo", "The CT verifies the PACS", True, True),
            ObjectiveView(
                "study", "The morning CT study is in the PACS", True, False, "No study yet."
            ),
            ObjectiveView("later", "Hidden", False, False),
        ]

    def ticket(self) -> TicketView:
        return TicketView(
            "Dr. Lee, radiologist on duty",
            "high",
            "This morning's CT head is not in the PACS",
            "The head CT for LEE^ANNA (accession ACC000002) was sent at 8:15.",
        )

    def hints(self) -> list[HintView]:
        return [
            HintView("nudge", 5, True, "Look at the CT's send queue."),
            HintView("where", 10, False),
        ]

    def elapsed(self) -> float:
        return 754.0


def report() -> dict[str, Any]:
    return {
        "scenario": {
            "id": "ct-late",
            "title": "The CT's images stopped arriving",
            "level": "novice",
            "expected_minutes": 10,
            "seed": 11,
            "domains": {"cpsa": [2], "ciip": [], "topics": []},
        },
        "lab": "demo",
        "actor": "trainee",
        "started_at": 0.0,
        "submitted_at": 400.0,
        "elapsed_seconds": 400.0,
        "score": {
            "total": 105.0,
            "maximum": 110.0,
            "percent": 95.5,
            "passed": True,
            "pass_percent": 70.0,
            "lines": [
                {
                    "category": "objectives",
                    "label": "The CT verifies the PACS",
                    "points": 10.0,
                    "detail": "met: ct-1 → pacs: 0x0000 Success",
                },
                {
                    "category": "objectives",
                    "label": "The study is in the PACS",
                    "points": 90.0,
                    "detail": "met: 4 images",
                },
                {
                    "category": "questions",
                    "label": "What did the PACS answer?",
                    "points": 10,
                    "detail": "answered 'a'",
                },
                {"category": "hints", "label": "hint nudge", "points": -5.0, "detail": ""},
            ],
        },
        "objectives": [
            {
                "id": "echo",
                "title": "The CT verifies the PACS",
                "ok": True,
                "evidence": "ct-1 → pacs: 0x0000 Success",
                "weight": 1,
                "revealed": True,
                "fail_message": "",
            },
            {
                "id": "study",
                "title": "The study is in the PACS",
                "ok": True,
                "evidence": "study 1.2.3 (4 images)",
                "weight": 3,
                "revealed": True,
                "fail_message": "",
            },
        ],
        "timeline": [
            {
                "t": 0.0,
                "kind": "scenario_started",
                "what": "scenario started",
                "detail": "",
                "actor": "",
            },
            {
                "t": 65.0,
                "kind": "action",
                "what": "action",
                "detail": "queue.list(node=ct-1) ok",
                "actor": "trainee",
            },
            {
                "t": 120.0,
                "kind": "action",
                "what": "action",
                "detail": "config.set(node=ct-1, key=destination.ae_title) ok",
                "actor": "trainee",
            },
            {
                "t": 400.0,
                "kind": "submitted",
                "what": "submitted",
                "detail": "",
                "actor": "trainee",
            },
        ],
        "faults": [],
        "questions": [
            {
                "id": "root_cause",
                "text": "What did the PACS answer?",
                "answer_given": "a",
                "choices": {"a": "A-ASSOCIATE-RJ 1/1/7", "b": "connection refused"},
            },
        ],
        "hints_taken": ["nudge"],
        "debrief": "The called AE title was wrong; the PACS rejected the association (1/1/7).",
    }


def app_for(tmp_path: Path) -> Any:
    return make_app(TuiSession(home=tmp_path, actor="trainee"), entries=entries())


def screen_text(svg: str) -> str:
    """The characters of an SVG screenshot, tags stripped (spans of one row stay adjacent)."""
    return html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")


async def settle(pilot: Pilot[None]) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


@pytest.mark.timeout(60)
def test_catalog_snapshot(snap_compare: Any, tmp_path: Path) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await settle(pilot)
        await pilot.press("down")

    assert snap_compare(app_for(tmp_path), terminal_size=SIZE, run_before=run_before)


@pytest.mark.timeout(60)
def test_catalog_snapshot_at_80x24_filtered(snap_compare: Any, tmp_path: Path) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await settle(pilot)
        pilot.app.screen.filter_by(level="novice")
        await pilot.pause()

    assert snap_compare(app_for(tmp_path), terminal_size=SMALL, run_before=run_before)


@pytest.mark.timeout(60)
def test_dashboard_snapshot(snap_compare: Any, tmp_path: Path) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await settle(pilot)
        await pilot.app.push_screen(DashboardScreen(StaticFeed(), live=False))
        await settle(pilot)

    assert snap_compare(app_for(tmp_path), terminal_size=SIZE, run_before=run_before)


@pytest.mark.timeout(60)
def test_dashboard_at_80x24_keeps_every_box_and_binding(tmp_path: Path) -> None:
    """The smallest supported terminal: every pane keeps its title, every key is in the footer."""
    import asyncio

    app = app_for(tmp_path)

    async def play() -> None:
        async with app.run_test(size=SMALL) as pilot:
            await settle(pilot)
            await app.push_screen(DashboardScreen(StaticFeed(), live=False))
            await settle(pilot)
            screen = app.screen
            text = screen_text(app.export_screenshot())
            for title in ("Topology", "Ticket", "Objectives 1/2", "Hints", "Events"):
                assert title in text, title
            for binding in screen.active_bindings.values():
                if binding.binding.show:
                    assert binding.binding.description in text, binding.binding.description
            assert "palette" in text

    asyncio.run(play())


@pytest.mark.timeout(60)
def test_dashboard_snapshot_in_the_light_theme(snap_compare: Any, tmp_path: Path) -> None:
    """ctrl+t: the same dashboard in the light theme (states still read as words)."""

    async def run_before(pilot: Pilot[None]) -> None:
        await settle(pilot)
        await pilot.app.push_screen(DashboardScreen(StaticFeed(), live=False))
        await settle(pilot)
        await pilot.press("ctrl+t")
        await settle(pilot)
        assert pilot.app.theme == "textual-light"

    assert snap_compare(app_for(tmp_path), terminal_size=SIZE, run_before=run_before)


@pytest.mark.timeout(60)
def test_report_snapshot(snap_compare: Any, tmp_path: Path) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await settle(pilot)
        await pilot.app.push_screen(ReportScreen(report(), None))
        await settle(pilot)

    assert snap_compare(app_for(tmp_path), terminal_size=SIZE, run_before=run_before)


def test_the_dashboard_hides_faults_and_the_catalog_hides_answers() -> None:
    """What the snapshots show, asserted in words (a snapshot alone proves nothing new)."""
    from simlab.tui.screens.catalog import preview_text
    from simlab.tui.widgets.event_log import format_event

    lines = [format_event(e, StaticFeed.started_at) for e in StaticFeed().new_events()]
    shown = [str(line) for line in lines if line is not None]
    assert len(shown) == 7
    assert shown[2].startswith("+00:03 pacs") and "reason 7" in shown[2]
    assert not any("wrong_called_ae" in line or "secret" in line for line in shown)
    assert shown[5].startswith("+01:10 hint taken")
    preview = str(preview_text(entries()[0]))
    assert "Images for … are missing" in preview and "Dr. Lee" in preview
    assert "Because." not in preview and "queue.list" not in preview


@pytest.mark.timeout(60)
def test_theme_switch_and_command_palette(tmp_path: Path) -> None:
    import asyncio

    from textual.command import CommandPalette

    app = app_for(tmp_path)

    async def play() -> None:
        async with app.run_test(size=SMALL) as pilot:
            await settle(pilot)
            assert app.theme == "textual-dark"
            await pilot.press("ctrl+t")
            assert app.theme == "textual-light"
            await pilot.press("ctrl+p")
            await pilot.pause()
            assert isinstance(app.screen, CommandPalette)
            await pilot.press("escape")
            await pilot.pause()
            await pilot.press("q")  # no lab runs: q quits at once
            await pilot.pause()

    asyncio.run(play())
    assert app.return_code == 0
