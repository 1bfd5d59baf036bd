"""The node console (TUI) against a real department lab: config with diff, AE table, studies and
tags, queues, logs, restart — each change journalled as an action of the trainee."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Button, DataTable, Input, TextArea, Tree

from simlab.runtime.lab import Lab
from simlab.tui.screens.console import NodeConsoleScreen
from simlab.tui.session import TuiSession
from simlab.tui.widgets.confirm import ConfirmModal
from simlab.tui.widgets.console_modals import (
    AeEditModal,
    DiffModal,
    QueueEditModal,
)
from simlab.tui.widgets.console_panes import (
    AePane,
    ConfigPane,
    LogPane,
    QueuePane,
    StudiesPane,
)
from simlab.workflow.actions import ActionResult
from tests.pilot_helpers import until
from tests.polling import poll

SIZE = (100, 32)


class ConsoleApp(App[None]):
    """A minimal host: pushes one node console."""

    def __init__(self, session: Any, node_id: str, backend: Any = None) -> None:
        super().__init__()
        self.session = session
        self.node_id = node_id
        self.backend = backend

    def on_mount(self) -> None:
        self.push_screen(NodeConsoleScreen(self.session, self.node_id, self.backend))


def console(app: ConsoleApp) -> NodeConsoleScreen:
    screen = app.screen_stack[1]
    assert isinstance(screen, NodeConsoleScreen)
    return screen


def actions_of(lab: Lab, name: str) -> list[dict[str, Any]]:
    return [e for e in lab.events.read() if e.get("kind") == "action" and e["action"] == name]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab.create(tmp_path_factory.mktemp("home"), "console")
    try:
        lab.up(timeout=60)
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def session(lab: Lab) -> TuiSession:
    session = TuiSession(home=lab.paths.home, actor="trainee")
    session.attach(lab, None, started_here=False)
    return session


def store_study(lab: Lab, patient_id: str, name: str, accession: str) -> dict[str, Any]:
    """Acquire a study on the CT (hand-keyed patient) and wait until the PACS holds it."""
    ct = lab.client("ct-1")
    proc = ct.post(
        "/patients/unscheduled",
        {"patient_id": patient_id, "patient_name": name, "accession_number": accession},
    )
    ct.post("/procedures/start", {"procedure_id": proc["id"]})
    ct.post(f"/procedures/{proc['id']}/acquire", {})
    pacs = lab.client("pacs")
    studies = poll(
        lambda: pacs.get("/studies", accession=accession),
        lambda s: bool(s) and s[0]["instance_count"] >= 1,
        60,
        f"the PACS to hold {accession}",
    )
    return dict(studies[0])


# ------------------------------------------------------------------------------------- config
@pytest.mark.timeout(120)
def test_config_edit_shows_a_diff_applies_and_is_journalled(lab: Lab, session: TuiSession) -> None:
    seen: dict[str, int] = {}

    async def run() -> None:
        app = ConsoleApp(session, "pacs")
        async with app.run_test(size=SIZE) as pilot:
            pane = await until(
                pilot,
                lambda: (p := console(app).query_one(ConfigPane)).original and p,
                "the config",
            )
            before = seen["before"] = pane.original["dicom"]["max_associations"]
            edited = json.loads(json.dumps(pane.original))
            edited["dicom"]["max_associations"] = before + 4
            area = pane.query_one("#config-text", TextArea)
            area.load_text(json.dumps(edited, indent=2))
            area.focus()
            await pilot.press("ctrl+s")
            modal = await until(
                pilot, lambda: isinstance(app.screen, DiffModal) and app.screen, "the diff"
            )
            assert f'-    "max_associations": {before},' in modal.diff
            assert f'+    "max_associations": {before + 4},' in modal.diff
            await pilot.press("y")
            await until(
                pilot,
                lambda: (
                    lab.client("pacs").get("/config")["dicom"]["max_associations"] == before + 4
                ),
                "the node to apply the change",
            )
            await until(
                pilot,
                lambda: pane.original["dicom"]["max_associations"] == before + 4,
                "the console to show the applied config",
            )

            # a value the node refuses: the 422 names the field, nothing changes
            bad = json.loads(json.dumps(pane.original))
            bad["dicom"]["port"] = "not-a-port"
            area.load_text(json.dumps(bad, indent=2))
            area.focus()
            await pilot.press("ctrl+s")
            await until(pilot, lambda: isinstance(app.screen, DiffModal), "the diff")
            await pilot.press("y")
            error = pane.query_one("#config-error")
            await until(pilot, lambda: "dicom.port" in str(error.render()), "the 422 detail")
            assert "422" in str(error.render())

    asyncio.run(run())
    patched = actions_of(lab, "config.patch")
    assert patched[-2]["ok"] is True and patched[-2]["actor"] == "trainee"
    assert patched[-2]["args"]["patch"] == {"dicom": {"max_associations": seen["before"] + 4}}
    assert patched[-1]["ok"] is False
    assert actions_of(lab, "config.get")[-1]["actor"] == "trainee"


# ------------------------------------------------------------------------------------ AE table
@pytest.mark.timeout(120)
def test_add_and_remove_an_ae_row(lab: Lab, session: TuiSession) -> None:
    async def run() -> None:
        app = ConsoleApp(session, "pacs")
        async with app.run_test(size=SIZE) as pilot:
            pane = console(app).show_tab("ae")
            assert isinstance(pane, AePane)
            await until(pilot, lambda: pane.rows, "the AE table")
            await pilot.press("a")
            modal = await until(
                pilot, lambda: isinstance(app.screen, AeEditModal) and app.screen, "the AE form"
            )
            modal.query_one("#ae_title", Input).value = "A_TITLE_TOO_LONG_X"
            modal.query_one("#port", Input).value = "11112"
            await pilot.press("ctrl+s")
            assert "at most 16" in str(modal.query_one("#error").render())
            modal.query_one("#ae_title", Input).value = "NEWMOD"
            modal.query_one("#port", Input).value = "99999"
            await pilot.press("ctrl+s")
            assert "between 1 and 65535" in str(modal.query_one("#error").render())
            modal.query_one("#port", Input).value = "11112"
            modal.query_one("#description", Input).value = "new modality"
            await pilot.press("ctrl+s")
            await until(
                pilot, lambda: any(r["ae_title"] == "NEWMOD" for r in pane.rows), "the new row"
            )
            on_node = {r["ae_title"]: r for r in lab.client("pacs").get("/ae-table")}
            assert on_node["NEWMOD"]["port"] == 11112
            assert on_node["NEWMOD"]["description"] == "new modality"

            table = pane.query_one("#ae-table", DataTable)
            table.focus()
            table.move_cursor(row=[r["ae_title"] for r in pane.rows].index("NEWMOD"))
            await pilot.press("d")
            await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the confirmation")
            await pilot.press("y")
            await until(
                pilot, lambda: all(r["ae_title"] != "NEWMOD" for r in pane.rows), "the removal"
            )
            assert "NEWMOD" not in {r["ae_title"] for r in lab.client("pacs").get("/ae-table")}

    asyncio.run(run())
    put, delete = actions_of(lab, "ae.put")[-1], actions_of(lab, "ae.delete")[-1]
    assert put["ok"] and put["actor"] == "trainee" and put["args"]["ae_title"] == "NEWMOD"
    assert delete["ok"] and delete["args"]["ae_title"] == "NEWMOD"


# ------------------------------------------------------------------------------------- studies
@pytest.mark.timeout(180)
def test_studies_tree_tag_viewer_edit_and_delete(lab: Lab, session: TuiSession) -> None:
    study = store_study(lab, "MRN-77", "MÜLLER^ANNA", "ACC77")

    async def run() -> None:
        app = ConsoleApp(session, "pacs")
        async with app.run_test(size=SIZE) as pilot:
            pane = console(app).show_tab("studies")
            assert isinstance(pane, StudiesPane)
            tree = pane.query_one("#studies-tree", Tree)

            def study_node() -> Any:
                for patient in tree.root.children:
                    for node in patient.children:
                        data = node.data or {}
                        if data.get("study", {}).get("study_uid") == study["study_uid"]:
                            return node
                return None

            node = await until(pilot, study_node, "the study in the tree")
            assert "MÜLLER^ANNA" in str(node.parent.label)
            assert "acc ACC77" in str(node.label)
            node.expand()
            await until(pilot, lambda: node.children and node.children[0].children, "series")
            instance = node.children[0].children[0]
            assert instance.data["kind"] == "instance"
            tree.focus()
            tree.select_node(instance)
            await until(pilot, lambda: pane.dump_lines, "the tag dump")
            assert "(0010,0010) PN [MÜLLER^ANNA]  # PatientName" in pane.dump_lines
            assert "(0008,0050) SH [ACC77]  # AccessionNumber" in pane.dump_lines
            assert not any(line.startswith("(7FE0,0010)") for line in pane.dump_lines)
            sop_uid = instance.data["instance"]["sop_uid"]
            direct = lab.client("pacs").get(f"/instances/{sop_uid}/dump")
            assert direct["sop_uid"] == sop_uid
            assert direct["lines"][0] == "# File Meta Information"
            assert f"(0008,0018) UI [{sop_uid}]  # SOPInstanceUID" in direct["lines"]

            # edit a study tag through the modal
            tree.move_cursor(node)
            await pilot.press("e")
            modal = await until(
                pilot, lambda: app.screen is not console(app) and app.screen, "the study form"
            )
            modal.query_one("#tag-StudyDescription", Input).value = "HEAD CT"
            await pilot.press("ctrl+s")
            await until(
                pilot,
                lambda: (
                    lab.client("pacs").get(f"/studies/{study['study_uid']}")["description"]
                    == "HEAD CT"
                ),
                "the edit on the PACS",
            )
            node = await until(pilot, lambda: study_node(), "the tree again")
            await until(pilot, lambda: "HEAD CT" in str(study_node().label), "the new label")

            # delete it (with confirmation)
            tree.move_cursor(study_node())
            await pilot.press("d")
            await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the confirmation")
            await pilot.press("y")
            await until(pilot, lambda: study_node() is None, "the study to leave the tree")
            assert lab.client("pacs").get("/studies", accession="ACC77") == []

    asyncio.run(run())
    edit = actions_of(lab, "study.edit")[-1]
    assert edit["ok"] and edit["args"]["tags"] == {"StudyDescription": "HEAD CT"}
    assert actions_of(lab, "study.delete")[-1]["ok"]


def test_dump_route_answers_404_for_an_unknown_instance(lab: Lab) -> None:
    from simlab.client.admin import AdminApiError

    with pytest.raises(AdminApiError) as err:
        lab.client("pacs").get("/instances/1.2.3.4/dump")
    assert err.value.status == 404


# --------------------------------------------------------------------------------------- queue
@pytest.mark.timeout(180)
def test_ct_queue_shows_failures_and_retry_all_sends_them(lab: Lab, session: TuiSession) -> None:
    ct = lab.client("ct-1")
    cfg = ct.get("/config")
    good_port = cfg["destination"]["port"]
    fast = {"send_queue": {"max_attempts": 1, "backoff_initial": 0.2}}
    ct.patch("/config", {"destination": {"port": 9}, **fast})
    proc = ct.post(
        "/patients/unscheduled",
        {"patient_id": "MRN-88", "patient_name": "QUEUE^TEST", "accession_number": "ACC88"},
    )
    ct.post("/procedures/start", {"procedure_id": proc["id"]})
    ct.post(f"/procedures/{proc['id']}/acquire", {})
    poll(
        lambda: ct.get("/queue", procedure_id=proc["id"])["items"],
        lambda items: bool(items) and all(i["state"] == "failed" for i in items),
        60,
        "the CT's images to fail",
    )
    ct.patch("/config", {"destination": {"port": good_port}})

    retried: list[int] = []

    async def run() -> None:
        app = ConsoleApp(session, "ct-1")
        async with app.run_test(size=SIZE) as pilot:
            screen = console(app)
            assert [t for t, _ in screen.tabs] == ["config", "queue", "logs"]
            pane = screen.show_tab("queue")
            assert isinstance(pane, QueuePane)
            await until(
                pilot, lambda: any(i["state"] == "failed" for i in pane.items), "failed rows"
            )
            failed = next(i for i in pane.items if i["state"] == "failed")
            assert failed["reason"]
            table = pane.query_one("#queue-table", DataTable)
            table.focus()
            table.move_cursor(row=pane.items.index(failed))
            retried.append(failed["id"])
            await pilot.press("r")
            await until(pilot, lambda: actions_of(lab, "queue.retry"), "the retry of one")
            await pilot.press("R")
            await until(
                pilot,
                lambda: all(
                    i["state"] == "sent" for i in ct.get("/queue", procedure_id=proc["id"])["items"]
                ),
                "the retried images to be sent",
                timeout=60,
            )
            await pilot.press("f5")
            await until(
                pilot,
                lambda: not any(i["state"] == "failed" for i in pane.items),
                "the refreshed queue",
            )

    try:
        asyncio.run(run())
    finally:
        ct.patch("/config", {"destination": {"port": good_port}, "send_queue": cfg["send_queue"]})
    retries = actions_of(lab, "queue.retry")
    assert retries[-2]["args"] == {"node": "ct-1", "id": retried[0]}
    assert retries[-2]["actor"] == "trainee"
    assert "id" not in retries[-1]["args"] and retries[-1]["ok"]


def queue_bad_adt(lab: Lab, control_id: str) -> int:
    """Queue on the RIS an ADT^A04 without a patient id: the PACS answers AE 101, it goes dead."""
    hl7 = lab.client("pacs").get("/config")["hl7"]
    message = "\r".join(
        [
            f"MSH|^~\\&|SIMLAB_RIS|RADIOLOGY|{hl7['application']}|{hl7['facility']}|"
            f"20250101120000||ADT^A04|{control_id}|P|2.5.1",
            "EVN|A04|20250101120000",
            "PID|1||||DOE^JOHN||19700101|M",
        ]
    )
    ris = lab.client("ris")
    entry = ris.post("/queue", {"destination": "pacs", "message": message})
    poll(
        lambda: ris.get(f"/queue/{entry['id']}"),
        lambda e: e["state"] == "dead",
        30,
        f"queue entry {entry['id']} to go dead",
    )
    return int(entry["id"])


@pytest.mark.timeout(120)
def test_ris_queue_edit_resends_and_delete_drops(lab: Lab, session: TuiSession) -> None:
    ris = lab.client("ris")
    dead = queue_bad_adt(lab, "TUIEDIT1")

    async def run() -> None:
        app = ConsoleApp(session, "ris")
        async with app.run_test(size=SIZE) as pilot:
            pane = console(app).show_tab("queue")
            assert isinstance(pane, QueuePane)
            await until(pilot, lambda: any(i["id"] == dead for i in pane.items), "the entry")
            item = next(i for i in pane.items if i["id"] == dead)
            assert item["state"] == "dead" and item["ack_code"] == "AE"
            table = pane.query_one("#queue-table", DataTable)
            table.focus()
            table.move_cursor(row=pane.items.index(item))
            await pilot.press("e")
            modal = await until(
                pilot, lambda: isinstance(app.screen, QueueEditModal) and app.screen, "the editor"
            )
            area = modal.query_one("#message", TextArea)
            assert "PID|1||||DOE^JOHN" in area.text
            area.load_text(area.text.replace("PID|1||||", "PID|1||MRN-55|||"))
            await pilot.press("ctrl+s")
            await until(
                pilot, lambda: ris.get(f"/queue/{dead}")["state"] == "sent", "the edited message"
            )

            second = queue_bad_adt(lab, "TUIDEL1")
            await pilot.press("f5")
            await until(pilot, lambda: any(i["id"] == second for i in pane.items), "the entry")
            table.move_cursor(row=[i["id"] for i in pane.items].index(second))
            await pilot.press("d")
            await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the confirmation")
            await pilot.press("y")
            await until(
                pilot, lambda: ris.get(f"/queue/{second}")["state"] == "deleted", "the deletion"
            )

    asyncio.run(run())
    edit = actions_of(lab, "queue.edit")[-1]
    assert edit["ok"] and edit["actor"] == "trainee" and edit["args"]["id"] == dead
    assert "MRN-55" in edit["args"]["message"]
    assert actions_of(lab, "queue.delete")[-1]["ok"]
    assert any(p["patient_id"] == "MRN-55" for p in lab.client("pacs").get("/hl7/patients"))


# ----------------------------------------------------------------------------------------- log
@pytest.mark.timeout(120)
def test_log_filter_and_follow(lab: Lab, session: TuiSession) -> None:
    # An AE-table change writes an "AE table:" line, whatever the other tests did before.
    pacs = lab.client("pacs")
    pacs.put("/ae-table/TUILOG", {"host": "127.0.0.1", "port": 4999})
    pacs.delete("/ae-table/TUILOG")

    async def run() -> None:
        app = ConsoleApp(session, "pacs")
        async with app.run_test(size=SIZE) as pilot:
            pane = console(app).show_tab("logs")
            assert isinstance(pane, LogPane)
            await until(pilot, lambda: pane.lines, "the log")
            await pilot.press("slash")
            await pilot.press(*"AE table")
            assert pane.query_one("#log-filter", Input).value == "AE table"
            assert pane.shown and all("ae table" in ln.lower() for ln in pane.shown)
            assert len(pane.shown) < len(pane.lines)

            pane.query_one("#log-filter", Input).value = ""
            pane.set_follow(True)
            assert pane.following
            # something happens on the node (not through the console): follow shows it
            session.actions.ae_put(node="pacs", ae_title="FOLLOWME", host="127.0.0.1", port=104)
            await until(
                pilot, lambda: any("FOLLOWME" in ln for ln in pane.shown), "the followed line"
            )
            pane.set_follow(False)
            assert not pane.following

    asyncio.run(run())
    session.actions.ae_delete(node="pacs", ae_title="FOLLOWME")
    assert actions_of(lab, "api")[-1]["args"]["path"] == "/log"


# ------------------------------------------------------------------------------------- restart
@pytest.mark.timeout(120)
def test_restart_asks_then_restarts_the_node(lab: Lab, session: TuiSession) -> None:
    pid = lab.client("ris").health()["pid"]

    async def run() -> None:
        app = ConsoleApp(session, "ris")
        async with app.run_test(size=SIZE) as pilot:
            screen = console(app)
            assert [t for t, _ in screen.tabs] == ["config", "ae", "queue", "logs"]
            await pilot.press("ctrl+r")
            await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the confirmation")
            await pilot.press("y")
            await until(
                pilot,
                lambda: [e for e in actions_of(lab, "node.restart") if e["ok"]],
                "the restart",
                timeout=60,
            )

    asyncio.run(run())
    restarted = actions_of(lab, "node.restart")[-1]
    assert restarted["actor"] == "trainee" and restarted["args"] == {"node": "ris"}
    assert lab.client("ris").health()["pid"] != pid


# ------------------------------------------------------------------------------------ snapshot
class StaticBackend:
    """Fixed content for the snapshot: a PACS with one patient, one study, one instance."""

    node_id = "pacs"
    role = "pacs"
    title = "PACS (pacs)  AE SIMLAB_PACS  DICOM 127.0.0.1:11112  HL7 2575  admin 8042"

    STUDY = {
        "study_uid": "1.2.3.1",
        "study_date": "20250101",
        "accession": "ACC1",
        "description": "CT HEAD",
        "modalities": ["CT"],
        "patient_id": "MRN-1",
        "issuer": "",
        "patient_name": "MÜLLER^ANNA",
        "instance_count": 1,
    }

    def config(self) -> dict[str, Any]:
        return {"node_id": "pacs", "role": "pacs", "dicom": {"ae_title": "SIMLAB_PACS"}}

    def ae_rows(self) -> list[dict[str, Any]]:
        return [{"ae_title": "CT_1", "host": "127.0.0.1", "port": 104, "description": "CT"}]

    def studies(self) -> list[dict[str, Any]]:
        return [dict(self.STUDY)]

    def study(self, study_uid: str) -> dict[str, Any]:
        instance = {"sop_uid": "1.2.3.1.1.1", "number": "1"}
        series = {"number": "1", "modality": "CT", "description": "Axial", "instances": [instance]}
        return {**self.STUDY, "series": [series]}

    def dump(self, sop_uid: str) -> list[str]:
        return [
            "# Dataset (pixel data not shown)",
            "(0008,0060) CS [CT]  # Modality",
            "(0010,0010) PN [MÜLLER^ANNA]  # PatientName",
            "(0010,0020) LO [MRN-1]  # PatientID",
        ]

    def queue(self) -> list[dict[str, Any]]:
        return []

    def queue_entry(self, entry_id: int) -> dict[str, Any]:
        return {}

    def log(self, lines: int, journal: bool) -> list[str]:
        return ["INFO pacs: started"]

    def _ok(self, *args: Any) -> ActionResult:
        return ActionResult("fake", True, "done")

    config_patch = ae_put = ae_delete = study_delete = study_edit = _ok
    queue_retry = queue_edit = queue_delete = restart = _ok


@pytest.mark.timeout(60)
def test_console_snapshot(snap_compare: Any) -> None:
    app = ConsoleApp(None, "pacs", StaticBackend())

    async def run_before(pilot: Pilot[Any]) -> None:
        pane = console(app).show_tab("studies")
        assert isinstance(pane, StudiesPane)
        tree = pane.query_one("#studies-tree", Tree)
        node = await until(
            pilot, lambda: tree.root.children and tree.root.children[0].children, "the tree"
        )
        node[0].expand()
        await until(pilot, lambda: node[0].children and node[0].children[0].children, "series")
        instance = node[0].children[0].children[0]
        tree.focus()
        tree.select_node(instance)
        await until(pilot, lambda: pane.dump_lines, "the tags")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


@pytest.mark.timeout(60)
def test_console_fits_80x24_and_shows_each_tabs_bindings() -> None:
    async def run() -> None:
        app = ConsoleApp(None, "pacs", StaticBackend())
        async with app.run_test(size=(80, 24)) as pilot:
            screen = console(app)
            assert [t for t, _ in screen.tabs] == ["config", "ae", "studies", "logs"]
            for tab, _ in screen.tabs:
                pane = screen.show_tab(tab)
                await pilot.pause()
                for button in [*pane.query(Button), screen.query_one("#console-restart", Button)]:
                    region = button.region
                    assert region.height > 0 and region.right <= 80 and region.bottom <= 24, (
                        tab,
                        button.id,
                        region,
                    )
                assert bool(screen.check_action("pane", ("add",))) == (tab == "ae")
                assert bool(screen.check_action("pane", ("apply",))) == (tab == "config")
                assert bool(screen.check_action("pane", ("toggle_follow",))) == (tab == "logs")
            await pilot.press("escape")
            assert not isinstance(app.screen, NodeConsoleScreen)

    asyncio.run(run())


# ------------------------------------------------------------------------------ viewer tags
@pytest.mark.timeout(180)
def test_viewer_studies_tree_shows_the_tag_dump(lab: Lab, session: TuiSession) -> None:
    study = store_study(lab, "MRN-VIEW", "BERG^OLA", "ACCVIEW1")
    opened = lab.client("viewer", timeout=60).post("/studies/open", {"accession": "ACCVIEW1"})
    assert opened["ok"] is True, opened
    held_count = lab.client("viewer").get("/studies", accession="ACCVIEW1")[0]["instances"]
    seen: dict[str, Any] = {}

    async def run() -> None:
        app = ConsoleApp(session, "viewer")
        async with app.run_test(size=SIZE) as pilot:
            screen = console(app)
            assert [t for t, _ in screen.tabs] == ["config", "ae", "studies", "logs"]
            pane = screen.show_tab("studies")
            assert isinstance(pane, StudiesPane)
            # the viewer edits no study: its console offers no "e" there (the PACS does)
            assert screen.check_action("pane", ("edit",)) is False
            tree = pane.query_one("#studies-tree", Tree)

            def study_node() -> Any:
                for patient in tree.root.children:
                    for node in patient.children:
                        data = node.data or {}
                        if data.get("study", {}).get("study_uid") == study["study_uid"]:
                            return node
                return None

            node = await until(pilot, study_node, "the study in the viewer's tree")
            assert "BERG^OLA" in str(node.parent.label)
            assert "acc ACCVIEW1" in str(node.label)
            assert f"({held_count} img)" in str(node.label)
            node.expand()
            await until(pilot, lambda: node.children and node.children[0].children, "series")
            series = node.children[0]
            assert str(series.label).startswith("series ")
            instance = series.children[0]
            assert instance.data["kind"] == "instance"
            tree.focus()
            tree.select_node(instance)
            await until(pilot, lambda: pane.dump_lines, "the tag dump")
            seen["sop_uid"] = instance.data["instance"]["sop_uid"]
            seen["lines"] = list(pane.dump_lines)
            assert f"Tags of {seen['sop_uid']}" in str(pane.query_one("#tags-title").render())

    asyncio.run(run())
    lines = seen["lines"]
    assert "(0010,0010) PN [BERG^OLA]  # PatientName" in lines
    assert "(0008,0050) SH [ACCVIEW1]  # AccessionNumber" in lines
    assert f"(0008,0018) UI [{seen['sop_uid']}]  # SOPInstanceUID" in lines
    assert not any(line.startswith("(7FE0,0010)") for line in lines)
    held = {
        i["sop_uid"]
        for i in lab.client("viewer").get(f"/studies/{study['study_uid']}")["instance_list"]
    }
    assert seen["sop_uid"] in held
    reads = [e for e in actions_of(lab, "api") if e["args"].get("node") == "viewer"]
    assert any(e["args"]["path"].endswith("/dump") and e["ok"] for e in reads)


# ------------------------------------------------------------------------------------ 80x24
async def show_static_tags(app: ConsoleApp, pilot: Pilot[Any]) -> StudiesPane:
    """Open the static PACS's studies tab and select its one instance (its tags show)."""
    pane = console(app).show_tab("studies")
    assert isinstance(pane, StudiesPane)
    tree = pane.query_one("#studies-tree", Tree)
    node = await until(
        pilot, lambda: tree.root.children and tree.root.children[0].children, "the tree"
    )
    node[0].expand()
    await until(pilot, lambda: node[0].children and node[0].children[0].children, "series")
    tree.focus()
    tree.select_node(node[0].children[0].children[0])
    await until(pilot, lambda: pane.dump_lines, "the tags")
    await pilot.pause()
    return pane


@pytest.mark.timeout(60)
def test_console_snapshot_at_80x24(snap_compare: Any) -> None:
    """The PACS console at 80x24: a one-row header (title cut with an ellipsis, the restart
    button whole), the tree stacked above the full-width tags, every binding in the footer."""
    app = ConsoleApp(None, "pacs", StaticBackend())

    async def run_before(pilot: Pilot[Any]) -> None:
        pane = await show_static_tags(app, pilot)
        screen = console(app)
        assert screen.has_class("-narrow")
        tree, tags = pane.query_one("#studies-tree"), pane.query_one("#tags")
        assert tree.region.width == tags.region.width == 80
        assert tree.region.bottom <= tags.region.y
        head = screen.query_one("#console-head")
        assert head.region.height == 1
        restart = screen.query_one("#console-restart", Button).region
        assert restart.y == 0 and restart.right <= 80

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


class StaticRis(StaticBackend):
    """A RIS with one dead message: the queue tab has the most bindings of any console tab."""

    node_id = "ris"
    role = "ris"
    title = "RIS (ris)  AE SIMLAB_RIS  DICOM 127.0.0.1:11113  HL7 2576  admin 8043"

    def queue(self) -> list[dict[str, Any]]:
        return [
            {
                "id": 1,
                "destination": "pacs",
                "type": "ADT^A04",
                "state": "dead",
                "attempts": 3,
                "ack_code": "AE",
                "ack_error_code": 101,
                "ack_text": "Required field missing: PID-3",
            }
        ]


@pytest.mark.timeout(60)
def test_every_console_tab_at_80x24_shows_its_bindings_in_the_footer() -> None:
    from textual.widgets import Footer

    async def run() -> None:
        for backend in (StaticBackend(), StaticRis()):
            app = ConsoleApp(None, backend.node_id, backend)
            async with app.run_test(size=(80, 24)) as pilot:
                screen = console(app)
                footer = screen.query_one(Footer)
                assert footer.compact
                for tab, _ in screen.tabs:
                    pane = screen.show_tab(tab)
                    if tab == "queue":
                        await until(pilot, lambda p=pane: p.items, "the queue")
                    await pilot.pause()
                    await pilot.pause(0.1)  # the footer recomposes after the bindings change
                    shown = [
                        b.description
                        for _key, (_node, b, enabled, _tip) in screen.active_bindings.items()
                        if b.show and enabled
                    ]
                    palette = footer.query_one(".-command-palette").region
                    keys = [
                        k
                        for k in footer.query("FooterKey")
                        if k.region.width and not k.has_class("-command-palette")
                    ]
                    assert {k.description for k in keys} == set(shown), tab
                    for key in keys:  # whole, and left of the palette key
                        assert key.region.right <= palette.x, (tab, key.description)
                    assert palette.right <= 80
                    title = screen.query_one("#console-title")
                    assert title.region.height == 1 and title.region.y == 0

    asyncio.run(run())
