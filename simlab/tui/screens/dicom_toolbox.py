"""The DICOM toolbox: echo, find (Q/R and worklist), move, store, a test image, dump a file.

What `echoscu`, `findscu`, `movescu`, `storescu` and `dcmdump` do, from the administrator's
workstation (calling AE ADMIN_WS) or from a node of the lab, to a node or to an address the
trainee types. Every network operation goes through the journalled actions (`dicom.echo`,
`dicom.find`, `dicom.move`, `dicom.store`) so scoring sees it, and runs in a thread worker; the
result shows the real codes: A-ASSOCIATE-RJ result/source/reason, the DIMSE status, the matches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Header,
    Input,
    Label,
    Select,
    Static,
    TextArea,
)
from textual.worker import Worker, WorkerState, get_current_worker

from simlab.client.dicom_scu import ADMIN_WS
from simlab.tui.widgets.toolbox_dicom_files import DumpRow, dump, write_test_image
from simlab.tui.widgets.toolbox_session import ToolboxSession, bound, compact, parse_key_values
from simlab.workflow.actions import ActionError, ActionResult

ADDRESS = "__address__"
"""The 'To' choice meaning: the called AE, host and port typed below."""
OPERATIONS = (
    ("Echo (C-ECHO)", "echo"),
    ("Find (C-FIND)", "find"),
    ("Move (C-MOVE)", "move"),
    ("Store files (C-STORE)", "store"),
    ("Send a test image", "test"),
    ("Dump a file", "dump"),
)
"""C-GET is not offered: the lab's SCU client has no get (use C-MOVE)."""
NEEDS = {
    "echo": {"peer"},
    "find": {"peer", "model", "query"},
    "move": {"peer", "model", "query", "destination"},
    "store": {"peer", "files"},
    "test": {"peer"},
    "dump": {"files"},
}
"""Which groups of the form each operation uses."""
MAX_COLUMNS = 8


class DicomToolboxScreen(Screen[None]):
    """Echo, find, move, store, send a test image and dump a file, with the real codes."""

    CSS_PATH = "dicom_toolbox.tcss"
    TITLE = "DICOM toolbox"
    BINDINGS = [
        Binding("f5", "run", "Run"),
        Binding("ctrl+r", "run", "Run", show=False),
        Binding("ctrl+o", "focus_operation", "Operation"),
        Binding("ctrl+t", "focus_results", "Results"),
        Binding("escape", "cancel_or_back", "Cancel/Back"),
    ]

    def __init__(self, session: ToolboxSession, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.session = session
        self.lab, self.actions = bound(session)
        self._worker: Worker[None] | None = None
        self.last_result: ActionResult | list[DumpRow] | None = None
        """What the last operation came to (for tests and for a future 'copy' action)."""

    # ------------------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        nodes = self.lab.manifest.nodes
        callers = [(f"{ADMIN_WS} (workstation)", ADMIN_WS)] + [
            (f"{n.node_id} ({n.ae_title})", n.node_id) for n in nodes if n.ae_title
        ]
        targets = [
            (f"{n.node_id} ({n.ae_title})", n.node_id) for n in nodes if n.ae_title and n.dicom_port
        ] + [("an address typed below", ADDRESS)]
        default_target = next((v for _l, v in targets if v == "pacs"), targets[0][1])
        yield Header(show_clock=False)
        with Horizontal(id="tbx-body"):
            with VerticalScroll(id="tbx-form"):
                yield Label("Operation")
                yield Select(OPERATIONS, value="echo", allow_blank=False, compact=True, id="tbx-op")
                with Vertical(id="grp-peer", classes="grp"):
                    yield Label("From (calling AE)")
                    yield Select(
                        callers, value=ADMIN_WS, allow_blank=False, compact=True, id="tbx-from"
                    )
                    yield Label("To (called)")
                    yield Select(
                        targets, value=default_target, allow_blank=False, compact=True, id="tbx-to"
                    )
                    yield Input(
                        placeholder="called AE (blank: the node's)", compact=True, id="tbx-called"
                    )
                    with Horizontal(classes="row"):
                        yield Input(placeholder="host", compact=True, id="tbx-host")
                        yield Input(placeholder="port", type="integer", compact=True, id="tbx-port")
                with Vertical(id="grp-model", classes="grp"):
                    yield Label("Model / level")
                    with Horizontal(classes="row"):
                        yield Select(
                            [
                                ("study root", "study"),
                                ("patient root", "patient"),
                                ("MWL", "worklist"),
                            ],
                            prompt="auto",
                            compact=True,
                            id="tbx-model",
                        )
                        yield Select(
                            [(lv, lv) for lv in ("PATIENT", "STUDY", "SERIES", "IMAGE")],
                            prompt="level",
                            compact=True,
                            id="tbx-level",
                        )
                with Vertical(id="grp-destination", classes="grp"):
                    yield Label("Move destination (AE title or node)")
                    yield Input(placeholder="e.g. VIEWER or viewer", compact=True, id="tbx-dest")
                with Vertical(id="grp-query", classes="grp"):
                    yield Label("Query keys (key=value a line)")
                    yield TextArea("", id="tbx-query", soft_wrap=False)
                with Vertical(id="grp-files", classes="grp"):
                    yield Label("File(s) (paths, space-separated)")
                    yield Input(placeholder="/path/to/file.dcm", compact=True, id="tbx-files")
                yield Button("Run  F5", id="tbx-run", variant="primary")
            with Vertical(id="tbx-result"):
                yield Static("Choose an operation and press F5.", id="tbx-status")
                yield DataTable(id="tbx-table", zebra_stripes=True, cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"as {self.session.actor}"
        self._show_groups("echo")

    # ------------------------------------------------------------------------------ form
    @on(Select.Changed, "#tbx-op")
    def _op_changed(self, event: Select.Changed) -> None:
        self._show_groups(str(event.value))

    def _show_groups(self, op: str) -> None:
        needs = NEEDS.get(op, set())
        for group in ("peer", "model", "destination", "query", "files"):
            self.query_one(f"#grp-{group}").display = group in needs

    def _value(self, selector: str) -> str:
        return self.query_one(selector, Input).value.strip()

    def build_request(self) -> tuple[str, dict[str, Any]]:
        """The operation and the action's arguments the form describes; ValueError if incomplete."""
        op = str(self.query_one("#tbx-op", Select).value)
        args: dict[str, Any] = {}
        needs = NEEDS[op]
        if "peer" in needs:
            target = str(self.query_one("#tbx-to", Select).value)
            called, host, port = (
                self._value("#tbx-called"),
                self._value("#tbx-host"),
                self._value("#tbx-port"),
            )
            args["from"] = str(self.query_one("#tbx-from", Select).value)
            if target == ADDRESS:
                if not (called and host and port):
                    raise ValueError("to call an address, type its AE title, host and port")
                args["to"] = called
            else:
                args["to"] = target
                if called:
                    args["ae_title"] = called
            if host:
                args["host"] = host
            if port:
                args["port"] = int(port)
        if "model" in needs:
            model = self.query_one("#tbx-model", Select).value
            level = self.query_one("#tbx-level", Select).value
            if model is not Select.NULL:
                args["model"] = str(model)
            if level is not Select.NULL:
                args["level"] = str(level)
        if "query" in needs:
            args["query"] = parse_key_values(self.query_one("#tbx-query", TextArea).text)
        if "destination" in needs:
            dest = self._value("#tbx-dest")
            if not dest:
                raise ValueError("C-MOVE needs a destination AE title (or a node)")
            args["destination"] = dest
        if "files" in needs:
            files = self._value("#tbx-files").split()
            if not files:
                raise ValueError("give the path of a DICOM file")
            args["files"] = files
        return op, args

    # ------------------------------------------------------------------------------ actions
    def action_focus_operation(self) -> None:
        self.query_one("#tbx-op", Select).focus()

    def action_focus_results(self) -> None:
        self.query_one("#tbx-table", DataTable).focus()

    def action_cancel_or_back(self) -> None:
        if self._worker is not None and self._worker.is_running:
            self._worker.cancel()
            self._set_status(Text("cancelled (the peer's answer will be ignored)", "yellow"))
            self.query_one("#tbx-result").loading = False
            return
        self.dismiss(None)

    @on(Button.Pressed, "#tbx-run")
    def action_run(self) -> None:
        try:
            op, args = self.build_request()
        except ValueError as exc:
            self.notify(str(exc), title="DICOM toolbox", severity="error")
            return
        label = dict((v, lbl) for lbl, v in OPERATIONS)[op]
        self._set_status(Text(f"{label}: running… (Esc cancels)", "italic"))
        self.query_one("#tbx-result").loading = True
        self._worker = self._run_operation(op, args)

    @work(thread=True, exit_on_error=False, exclusive=True, group="dicom-toolbox")
    def _run_operation(self, op: str, args: dict[str, Any]) -> None:
        worker = get_current_worker()
        actions = self.actions
        result: ActionResult | list[DumpRow] | None = None
        try:
            if op == "dump":
                result = dump(args["files"][0])
            elif op == "echo":
                result = actions.dicom_echo(**args)
            elif op == "find":
                result = actions.dicom_find(**args)
            elif op == "move":
                result = actions.dicom_move(**args)
            elif op == "store":
                result = actions.dicom_store(**args)
            elif op == "test":
                path = write_test_image()
                result = actions.dicom_store(**args, files=[str(path)])
        except (ActionError, ValueError, OSError) as exc:
            if not worker.is_cancelled:
                self.app.call_from_thread(self._failed, str(exc))
            return
        if not worker.is_cancelled and result is not None:
            self.app.call_from_thread(self._show, op, result)

    # ------------------------------------------------------------------------------ results
    def _set_status(self, text: Text) -> None:
        self.query_one("#tbx-status", Static).update(text)

    def _failed(self, text: str) -> None:
        self.query_one("#tbx-result").loading = False
        self._set_status(Text(f"✘ {text}", "bold red"))
        self.notify(text, title="DICOM toolbox", severity="error")

    def _show(self, op: str, result: ActionResult | list[DumpRow]) -> None:
        self.query_one("#tbx-result").loading = False
        self.last_result = result
        table = self.query_one("#tbx-table", DataTable)
        table.clear(columns=True)
        if isinstance(result, list):
            self._set_status(Text(f"✔ {len(result)} elements", "bold green"))
            table.add_columns("Tag", "VR", "Name", "Value")
            for row in result:
                table.add_row(row.tag, row.vr, "  " * row.depth + row.name, row.value)
            return
        status = Text("✔ " if result.ok else "✘ ", style="bold green" if result.ok else "bold red")
        status.append(result.text, style="green" if result.ok else "red")
        data = result.data if isinstance(result.data, dict) else {}
        code = data.get("status")
        if isinstance(code, int):
            status.append(f"\nDIMSE status 0x{code:04X}", style="bold")
        self._set_status(status)
        if data.get("matches"):
            self._matches_table(table, data["matches"])
        elif isinstance(data.get("details"), dict) and data["details"].get("files"):
            table.add_columns("File", "Status", "Result")
            for row in data["details"]["files"]:
                code = row.get("status")
                table.add_row(
                    Path(row["file"]).name,
                    "-" if code is None else f"0x{code:04X}",
                    row.get("text", ""),
                )
        else:
            table.add_columns("Field", "Value")
            for key, value in data.items():
                if key != "matches":
                    table.add_row(key, value if isinstance(value, str) else compact(value, 80))

    @staticmethod
    def _matches_table(table: DataTable[Any], matches: list[dict[str, Any]]) -> None:
        columns: list[str] = []
        for match in matches:
            for key in match:
                if key not in columns and key not in ("QueryRetrieveLevel", "SpecificCharacterSet"):
                    columns.append(key)
        columns = columns[:MAX_COLUMNS]
        table.add_columns(*columns)
        for match in matches:
            table.add_row(
                *[
                    v if isinstance(v, str) else compact(v, 40)
                    for v in (match.get(c, "") for c in columns)
                ]
            )

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place a worker's unexpected failure is reported (the screen stays usable)."""
        if event.state == WorkerState.ERROR:
            self.query_one("#tbx-result").loading = False
            self.notify(
                f"{type(event.worker.error).__name__}: {event.worker.error}",
                title="DICOM toolbox",
                severity="error",
            )
