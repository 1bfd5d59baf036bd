"""The DICOM and HL7 toolboxes, driven with Pilot against a real default department lab.

One lab (module-scoped) serves every test; each test opens the screen in a one-screen app, fills
the form, presses the key a user presses, waits for the worker, and reads what the screen shows.
The snapshot tests use a static session (fixed manifest, fixed clock) so nothing varies.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import DataTable, Input, Select, Static, TextArea

from simlab.runtime.events import EventLog
from simlab.runtime.lab import Lab
from simlab.runtime.manifest import LabManifest, NodeEntry
from simlab.scenarios.engine import ScenarioRun
from simlab.tui.screens.toolbox import DicomToolboxScreen, HL7ToolboxScreen
from simlab.tui.widgets.toolbox_hl7 import Hl7Inspector, field_value
from simlab.workflow.actions import ActionResult, Actions
from tests.dicom_files import Ids, study_files
from tests.pilot_helpers import OneScreenApp

SIZE = (100, 32)


def synced(fn: Callable[..., Any]) -> Callable[..., None]:
    """Run an async test body with asyncio.run (no async plugin needed); fixtures still work."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


def make_session(lab: Lab, actor: str = "trainee", run: ScenarioRun | None = None) -> Any:
    """The TUI's own TuiSession bound to `lab` (a stand-in when it does not exist)."""
    try:
        from simlab.tui.session import TuiSession
    except ImportError:
        return StaticSession(lab=lab, actions=Actions(lab, actor), actor=actor, run=run)
    session = TuiSession(home=lab.paths.home, actor=actor)
    session.attach(lab, run, started_here=False)
    return session


async def settle(pilot: Pilot[Any]) -> None:
    """Wait for every worker (protocol work) and the messages they posted."""
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


# ----------------------------------------------------------------------------- static stubs


class _StubClient:
    def get(self, path: str) -> dict[str, Any]:
        assert path == "/config"
        return {"hl7": {"application": "SIMLAB_PACS", "facility": "RADIOLOGY"}}


@dataclass
class StaticLab:
    """A lab that never runs: a fixed manifest, an events file, a client answering /config."""

    root: Path
    manifest: LabManifest = field(init=False)
    events: EventLog = field(init=False)

    def __post_init__(self) -> None:
        def node(
            node_id: str, role: str, ae: str | None, base: int, hl7: bool = False
        ) -> NodeEntry:
            return NodeEntry(
                node_id=node_id,
                role=role,
                module="static",
                ae_title=ae,
                dicom_port=base if ae else None,
                hl7_port=base + 1 if hl7 else None,
                admin_port=base + 2,
            )

        nodes = [
            node("pacs", "pacs", "SIMLAB_PACS", 11000, hl7=True),
            node("ris", "ris", "SIMLAB_RIS", 11010, hl7=True),
            node("viewer", "viewer", "VIEWER", 11020),
            node("ct-1", "modality", "CT_1", 11030),
            node("net", "network", None, 11040),
        ]
        self.manifest = LabManifest(lab_id="static", created_at=0.0, nodes=nodes)
        self.events = EventLog(self.root / "events.jsonl")

    def client(self, node_id: str, timeout: float = 10.0) -> _StubClient:
        return _StubClient()


@dataclass
class StaticSession:
    """What the screens read from a session, with nothing that changes between runs."""

    lab: Any
    actions: Any = None
    actor: str = "trainee"
    run: Any = None


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab.create(tmp_path_factory.mktemp("home"), "tools")
    try:
        lab.up(timeout=60)
        yield lab
    finally:
        lab.down()


def status_of(screen: Screen[Any], selector: str) -> str:
    return str(screen.query_one(selector, Static).content)


async def run_dicom(pilot: Pilot[Any], op: str, **fields: str) -> str:
    """Set the operation and the form's inputs, press F5, wait, return the status text."""
    screen = pilot.app.screen
    screen.query_one("#tbx-op", Select).value = op
    await pilot.pause()
    for name, value in fields.items():
        widget = screen.query_one(f"#tbx-{name}")
        if isinstance(widget, Select):
            widget.value = value
        elif isinstance(widget, TextArea):
            widget.text = value
        else:
            assert isinstance(widget, Input)
            widget.value = value
    await pilot.pause()
    await pilot.press("f5")
    await settle(pilot)
    return status_of(screen, "#tbx-status")


def table_rows(screen: Screen[Any], selector: str) -> list[list[str]]:
    table = screen.query_one(selector, DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


# ----------------------------------------------------------------------------- DICOM


@pytest.mark.timeout(60)
@synced
async def test_echo_from_admin_ws_to_pacs_succeeds(lab: Lab) -> None:
    app = OneScreenApp(lambda: DicomToolboxScreen(make_session(lab)))
    async with app.run_test(size=SIZE) as pilot:
        status = await run_dicom(pilot, "echo", to="pacs")
        assert "Success" in status and "0x0000" in status, status
    last = lab.events.read()[-1]
    assert last["kind"] == "action" and last["action"] == "dicom.echo" and last["ok"] is True


@pytest.mark.timeout(60)
@synced
async def test_echo_with_a_wrong_called_ae_shows_the_rejection(lab: Lab) -> None:
    app = OneScreenApp(lambda: DicomToolboxScreen(make_session(lab)))
    async with app.run_test(size=SIZE) as pilot:
        status = await run_dicom(pilot, "echo", to="pacs", called="WRONG_AE")
        assert "1/1/7" in status and status.startswith("✘"), status


@pytest.mark.timeout(60)
@synced
async def test_echo_from_a_node_uses_its_verify(lab: Lab) -> None:
    app = OneScreenApp(lambda: DicomToolboxScreen(make_session(lab)))
    async with app.run_test(size=SIZE) as pilot:
        status = await run_dicom(pilot, "echo", **{"from": "ct-1", "to": "pacs"})
        assert "echo from ct-1" in status and "CT_1" in status, status
    last = lab.events.read()[-1]
    assert last["action"] == "dicom.echo" and last["args"]["from"] == "ct-1"


@pytest.mark.timeout(90)
@synced
async def test_test_image_is_stored_then_found_and_dumped(lab: Lab) -> None:
    app = OneScreenApp(lambda: DicomToolboxScreen(make_session(lab)))
    async with app.run_test(size=SIZE) as pilot:
        screen = pilot.app.screen
        assert isinstance(screen, DicomToolboxScreen)
        status = await run_dicom(pilot, "test", to="pacs")
        assert status.startswith("✔") and "1 of 1 stored" in status, status
        rows = table_rows(screen, "#tbx-table")
        assert rows[0][1] == "0x0000", rows
        stored = screen.last_result
        path = Path(stored.data["details"]["files"][0]["file"])  # type: ignore[union-attr]

        status = await run_dicom(
            pilot, "find", to="pacs", model="study", query="PatientID=TOOLBOX01"
        )
        assert "Success" in status, status
        rows = table_rows(screen, "#tbx-table")
        assert rows and any("TOOLBOX^TEST^IMAGE" in cell for cell in rows[0]), rows

        study_uid = screen.last_result.data["matches"][0]["StudyInstanceUID"]  # type: ignore[union-attr]
        status = await run_dicom(
            pilot,
            "move",
            to="pacs",
            model="study",
            dest="viewer",
            query=f"StudyInstanceUID={study_uid}",
        )
        assert status.startswith("✔") and "1 completed" in status, status

        status = await run_dicom(pilot, "dump", files=str(path))
        assert status.startswith("✔"), status
        dumped = {row[2].strip(): row[3] for row in table_rows(screen, "#tbx-table")}
        assert dumped["PatientID"] == "TOOLBOX01"
        assert dumped["SOPClassUID"] == "1.2.840.10008.5.1.4.1.1.7"
    studies = Actions(lab, "test").studies_list(node="pacs", patient_id="TOOLBOX01")
    assert studies.ok and studies.data, studies
    if shutil.which("dciodvfy"):
        check = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        assert "Error" not in check.stderr + check.stdout, check.stderr


@pytest.mark.timeout(60)
@synced
async def test_a_typed_address_needs_host_and_port(lab: Lab) -> None:
    app = OneScreenApp(lambda: DicomToolboxScreen(make_session(lab)))
    async with app.run_test(size=SIZE) as pilot:
        pacs = lab.manifest.node("pacs")
        status = await run_dicom(
            pilot,
            "echo",
            to="__address__",
            called=str(pacs.ae_title),
            host=pacs.host,
            port=str(pacs.dicom_port),
        )
        assert "Success" in status, status


@pytest.mark.timeout(90)
@synced
async def test_get_lists_the_received_files_then_dump_shows_one(lab: Lab, tmp_path: Path) -> None:
    ids, _files = study_files(tmp_path, count=2, ids=Ids(patient_id="TBX-GET", accession="TBXG"))
    assert Actions(lab, "test").dicom_store(to="pacs", files=[str(tmp_path)]).ok
    app = OneScreenApp(lambda: DicomToolboxScreen(make_session(lab)))
    async with app.run_test(size=SIZE) as pilot:
        screen = pilot.app.screen
        assert isinstance(screen, DicomToolboxScreen)
        status = await run_dicom(
            pilot, "get", to="pacs", model="study", query=f"StudyInstanceUID={ids.study_uid}"
        )
        assert status.startswith("✔") and "0x0000 Success (2 completed" in status, status
        rows = table_rows(screen, "#tbx-table")
        received = {f["sop_instance"] for f in screen.last_result.data["files"]}  # type: ignore[union-attr]
        assert len(rows) == 2 and {r[2] for r in rows} == received, rows
        assert {r[1] for r in rows} == {"CT Image Storage"}

        screen.query_one("#tbx-op", Select).value = "dump"
        await pilot.pause()
        choices = screen.query_one("#tbx-received", Select)
        assert choices.display and choices.value is not Select.NULL
        assert screen.query_one("#tbx-files", Input).value == ""
        await pilot.press("f5")
        await settle(pilot)
        assert status_of(screen, "#tbx-status").startswith("✔")
        dumped = {row[0]: row[3] for row in table_rows(screen, "#tbx-table") if row[0]}
        assert dumped["(0008,0018)"] in received, dumped
    last = [e for e in lab.events.read() if e["kind"] == "action"][-1]
    assert last["action"] == "dicom.get" and last["actor"] == "trainee" and last["ok"] is True
    assert Actions(lab, "test").study_delete(node="pacs", study_uid=ids.study_uid).ok


# ----------------------------------------------------------------------------- HL7


async def compose_template(pilot: Pilot[Any], kind: str) -> str:
    screen = pilot.app.screen
    screen.query_one("#hl7-template", Select).value = kind
    await settle(pilot)
    return screen.query_one("#hl7-message", TextArea).text


def inspector_labels(screen: Screen[Any]) -> list[str]:
    tree = screen.query_one(Hl7Inspector)
    out: list[str] = []

    def walk(node: Any) -> None:
        for child in node.children:
            out.append(str(child.label))
            walk(child)

    walk(tree.root)
    return out


@pytest.mark.timeout(60)
@synced
async def test_hl7_adt_a04_to_the_pacs_is_accepted(lab: Lab) -> None:
    app = OneScreenApp(lambda: HL7ToolboxScreen(make_session(lab)))
    async with app.run_test(size=SIZE) as pilot:
        text = await compose_template(pilot, "ADT^A04")
        assert field_value(text, "MSH-5") == "SIMLAB_PACS"
        assert field_value(text, "MSH-6") == "RADIOLOGY"
        assert datetime.now().strftime("%Y%m%d") in field_value(text, "MSH-7")
        labels = inspector_labels(pilot.app.screen)
        assert any(label.startswith("PID-5 ") and "TOOLBOX^TEST" in label for label in labels)
        assert any(label.startswith("PID-5.1 TOOLBOX") for label in labels), labels
        await pilot.press("f5")
        await settle(pilot)
        ack = status_of(pilot.app.screen, "#hl7-ack")
        assert "AA" in ack and "Application Accept" in ack, ack
        assert any(label.startswith("MSA-1 ") for label in inspector_labels(pilot.app.screen))
    last = lab.events.read()[-1]
    assert last["action"] == "hl7.send" and last["ok"] is True


@pytest.mark.timeout(60)
@synced
async def test_hl7_wrong_msh5_is_rejected_with_err_103(lab: Lab) -> None:
    app = OneScreenApp(lambda: HL7ToolboxScreen(make_session(lab)))
    async with app.run_test(size=SIZE) as pilot:
        text = await compose_template(pilot, "ADT^A04")
        screen = pilot.app.screen
        assert isinstance(screen, HL7ToolboxScreen)
        screen.set_message(text.replace("|SIMLAB_PACS|", "|OLD_PACS|").replace("\n", "\r\n"))
        await pilot.press("f5")
        await settle(pilot)
        ack = status_of(screen, "#hl7-ack")
        assert "AR" in ack and "Application Reject" in ack, ack
        assert "ERR-3 103 Table value not found" in ack, ack
        assert "ERR-2 MSH" in ack, ack
        await pilot.press("f6")
        await pilot.pause()
        assert any(
            label.startswith("MSH-5 ") and "OLD_PACS" in label for label in inspector_labels(screen)
        )


@pytest.mark.timeout(60)
@synced
async def test_hl7_templates_update_and_order_are_accepted(lab: Lab) -> None:
    app = OneScreenApp(lambda: HL7ToolboxScreen(make_session(lab)))
    async with app.run_test(size=SIZE) as pilot:
        for kind in ("ADT^A04", "ADT^A08", "ORM^O01"):
            text = await compose_template(pilot, kind)
            assert field_value(text, "MSH-9").startswith(kind)
            await pilot.press("f5")
            await settle(pilot)
            ack = status_of(pilot.app.screen, "#hl7-ack")
            assert "MSA-1  AA" in ack, (kind, ack)


@pytest.mark.timeout(60)
@synced
async def test_hl7_to_a_typed_address_is_journalled(lab: Lab) -> None:
    pacs = lab.manifest.node("pacs")
    app = OneScreenApp(lambda: HL7ToolboxScreen(make_session(lab)))
    async with app.run_test(size=SIZE) as pilot:
        await compose_template(pilot, "ADT^A04")
        screen = pilot.app.screen
        screen.query_one("#hl7-target", Select).value = "__address__"
        await pilot.pause()
        address = screen.query_one("#hl7-address", Input)
        assert address.display
        address.value = f"{pacs.host}:{pacs.hl7_port}"
        await pilot.press("f5")
        await settle(pilot)
        assert "AA" in status_of(screen, "#hl7-ack")
    last = lab.events.read()[-1]
    assert last["action"] == "hl7.send" and last["args"]["port"] == pacs.hl7_port


# ----------------------------------------------------------------------------- snapshots


def static_session(tmp_path: Path) -> StaticSession:
    return StaticSession(lab=StaticLab(tmp_path), actions=object())


@pytest.mark.timeout(60)
def test_dicom_toolbox_snapshot(snap_compare: Any, tmp_path: Path) -> None:
    session = static_session(tmp_path)

    async def fill(pilot: Pilot[Any]) -> None:
        screen = pilot.app.screen
        assert isinstance(screen, DicomToolboxScreen)
        screen.query_one("#tbx-op", Select).value = "find"
        screen.query_one("#tbx-level", Select).value = "STUDY"
        screen.query_one("#tbx-query", TextArea).text = "PatientName=DOE*\nModalitiesInStudy=CT"
        await pilot.pause()
        # A fixed answer, as a C-FIND to the PACS returns it (no UID, port or time that varies).
        matches = [
            {
                "QueryRetrieveLevel": "STUDY",
                "PatientName": name,
                "PatientID": pid,
                "StudyDate": date,
                "AccessionNumber": acc,
                "ModalitiesInStudy": "CT",
                "StudyInstanceUID": f"1.2.826.0.1.3680043.2.1125.{n}",
            }
            for n, (name, pid, date, acc) in enumerate(
                [
                    ("DOE^JANE", "MRN-1001", "20261123", "ACC000002"),
                    ("DOE^JOHN", "MRN-1002", "20261120", "ACC000001"),
                ],
                1,
            )
        ]
        screen._last_op = "find"
        screen._show(
            "find",
            ActionResult(
                "dicom.find",
                True,
                "find ADMIN_WS -> SIMLAB_PACS: 0x0000 Success, 2 match(es)",
                {"status": 0, "matches": matches},
            ),
        )
        await pilot.pause()

    app = OneScreenApp(lambda: DicomToolboxScreen(session))
    assert snap_compare(app, terminal_size=SIZE, run_before=fill)


@pytest.mark.timeout(60)
def test_hl7_toolbox_snapshot(snap_compare: Any, tmp_path: Path) -> None:
    session = static_session(tmp_path)

    async def fill(pilot: Pilot[Any]) -> None:
        await compose_template(pilot, "ADT^A04")

    app = OneScreenApp(lambda: HL7ToolboxScreen(session, now=lambda: datetime(2026, 1, 2, 3, 4, 5)))
    assert snap_compare(app, terminal_size=SIZE, run_before=fill)
