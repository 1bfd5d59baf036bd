"""The DICOM toolbox: echo, find (Q/R and worklist), move, get, store, a test image, dump a file.

What `echoscu`, `findscu`, `movescu`, `getscu`, `storescu` and `dcmdump` do, from the
administrator's workstation (calling AE ADMIN_WS) or from a node of the lab, to a node or to an
address the trainee types. Every network operation goes through the journalled actions
(`dicom.echo`, `dicom.find`, `dicom.move`, `dicom.get`, `dicom.store`) so scoring sees it, and runs
in a thread worker; the result shows the real codes: A-ASSOCIATE-RJ result/source/reason, the
DIMSE status, the matches, the files a C-GET brought back. Those files are on the workstation's
disk (the lab's admin_ws/received/), and "Dump a file" offers them, newest first, beside a path.
"""

from __future__ import annotations

import contextlib
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
    Header,
    Input,
    Label,
    Select,
    Static,
    TextArea,
)
from textual.widgets.select import InvalidSelectValueError
from textual.worker import Worker, WorkerState, get_current_worker

from simlab.client.dicom_scu import ADMIN_WS
from simlab.tui.widgets.footer import AdaptiveFooter
from simlab.tui.widgets.toolbox_dicom_files import (
    DumpRow,
    dump,
    received_choices,
    write_test_image,
)
from simlab.tui.widgets.toolbox_session import ToolboxSession, bound, compact, parse_key_values
from simlab.workflow.actions import ActionError, ActionResult

ADDRESS = "__address__"
"""The 'To' choice meaning: the called AE, host and port typed below."""
OPERATIONS = (
    ("Echo (C-ECHO)", "echo"),
    ("Find (C-FIND)", "find"),
    ("Move (C-MOVE)", "move"),
    ("Get (C-GET)", "get"),
    ("Store files (C-STORE)", "store"),
    ("Send a test image", "test"),
    ("Dump a file", "dump"),
)
"""Get (C-GET) retrieves to the workstation itself on the same association (it is the Storage
SCP there, SCP/SCU role selection): no destination AE to configure, the files land in the lab's
admin_ws/received/ and "Dump a file" lists them."""
NEEDS = {
    "echo": {"peer"},
    "find": {"peer", "model", "query"},
    "move": {"peer", "model", "query", "destination"},
    "get": {"peer", "model", "query"},
    "store": {"peer", "files"},
    "test": {"peer"},
    "dump": {"files", "received"},
}
"""Which groups of the form each operation uses."""
MAX_COLUMNS = 8
FORM_FIELDS = (
    "#tbx-op",
    "#tbx-from",
    "#tbx-to",
    "#tbx-called",
    "#tbx-host",
    "#tbx-port",
    "#tbx-model",
    "#tbx-level",
    "#tbx-dest",
    "#tbx-query",
    "#tbx-files",
)
"""The form's fields, remembered in the session between two openings of the toolbox."""
UNIQUE_KEYS = {
    "PATIENT": ("PatientID",),
    "STUDY": ("StudyInstanceUID",),
    "SERIES": ("StudyInstanceUID", "SeriesInstanceUID"),
    "IMAGE": ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"),
}
"""What names a match for a retrieve: the unique key of its level and of the levels above it
(PS3.4 C.4.2.2.1 / C.4.3.2.1: a C-MOVE or C-GET identifier holds unique keys only)."""


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
        self._last_op = ""
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
                with Vertical(id="grp-received", classes="grp"):
                    yield Label("or a C-GET file (newest first)")
                    yield Select([], prompt="no received files", compact=True, id="tbx-received")
                yield Button("Run  F5", id="tbx-run", variant="primary")
            with Vertical(id="tbx-result"):
                yield Static("Choose an operation and press F5.", id="tbx-status")
                yield DataTable(id="tbx-table", zebra_stripes=True, cursor_type="row")
        yield AdaptiveFooter()

    def on_mount(self) -> None:
        self.sub_title = f"as {self.session.actor}"
        self._show_groups("echo")
        remembered = getattr(self.session, "forms", {}).get("dicom")
        if remembered:
            self.restore_form(remembered)

    def form_values(self) -> dict[str, str]:
        """The form as text, field by field (what the session remembers)."""
        values: dict[str, str] = {}
        for selector in FORM_FIELDS:
            widget = self.query_one(selector)
            if isinstance(widget, Select):
                values[selector] = "" if widget.value is Select.NULL else str(widget.value)
            elif isinstance(widget, TextArea):
                values[selector] = widget.text
            elif isinstance(widget, Input):
                values[selector] = widget.value
        return values

    def restore_form(self, values: dict[str, str]) -> None:
        """Put remembered values back; a choice that no longer exists is left as it is."""
        for selector, value in values.items():
            widget = self.query_one(selector)
            if isinstance(widget, Select):
                if value:
                    with contextlib.suppress(InvalidSelectValueError):
                        widget.value = value
            elif isinstance(widget, TextArea):
                widget.load_text(value)
            elif isinstance(widget, Input):
                widget.value = value
        self._show_groups(values.get("#tbx-op") or "echo")

    def remember_form(self) -> None:
        forms = getattr(self.session, "forms", None)
        if isinstance(forms, dict):
            forms["dicom"] = self.form_values()

    # ------------------------------------------------------------------------------ form
    @on(Select.Changed, "#tbx-op")
    def _op_changed(self, event: Select.Changed) -> None:
        self._show_groups(str(event.value))

    def _show_groups(self, op: str) -> None:
        needs = NEEDS.get(op, set())
        for group in ("peer", "model", "destination", "query", "files", "received"):
            self.query_one(f"#grp-{group}").display = group in needs
        if "received" in needs:
            self.refresh_received()

    def refresh_received(self, select_newest: bool = False) -> None:
        """Fill the received-files list from the workstation's disk (newest first)."""
        try:
            choices = received_choices(self.lab)
        except OSError:
            choices = []
        widget = self.query_one("#tbx-received", Select)
        current = widget.value
        widget.set_options(choices)
        widget.prompt = "choose a received file" if choices else "no received files"
        values = [v for _label, v in choices]
        if values and (select_newest or current not in values):
            widget.value = values[0]
        elif current in values:
            widget.value = current

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
            if not files and "received" in needs:
                chosen = self.query_one("#tbx-received", Select).value
                if chosen is not Select.NULL:
                    files = [str(chosen)]
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
        self.remember_form()
        self.dismiss(None)

    @on(Button.Pressed, "#tbx-run")
    def action_run(self) -> None:
        try:
            op, args = self.build_request()
        except ValueError as exc:
            self.notify(str(exc), title="DICOM toolbox", severity="error")
            return
        self.remember_form()
        self._last_op = op
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
            elif op == "get":
                result = actions.dicom_get(**args)
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
        if op == "get":
            self.refresh_received(select_newest=True)
            table.add_columns("File", "SOP Class", "SOP Instance UID")
            for row in data.get("files") or []:
                table.add_row(
                    Path(row["file"]).name[:16] + "….dcm",
                    row.get("sop_class_name") or row.get("sop_class", ""),
                    row.get("sop_instance", ""),
                )
            if data.get("directory"):
                status.append(f"\nsaved in {data['directory']}", style="dim")
                self._set_status(status)
        elif data.get("matches"):
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

    @on(DataTable.RowSelected, "#tbx-table")
    def retrieve_selected_match(self, event: DataTable.RowSelected) -> None:
        """Enter on a C-FIND match: the form becomes a C-MOVE of that match, named by its
        unique keys — what a trainee otherwise copies UID by UID from findscu's output."""
        result = self.last_result
        if self._last_op != "find" or not isinstance(result, ActionResult):
            return
        if str(self.query_one("#tbx-model", Select).value) == "worklist":
            return
        data = result.data if isinstance(result.data, dict) else {}
        matches = data.get("matches") or []
        if not 0 <= event.cursor_row < len(matches):
            return
        match = matches[event.cursor_row]
        level = str(match.get("QueryRetrieveLevel") or "")
        if level not in UNIQUE_KEYS:
            chosen = self.query_one("#tbx-level", Select).value
            level = str(chosen) if chosen is not Select.NULL else "STUDY"
        keys = {k: match.get(k) for k in UNIQUE_KEYS.get(level, ())}
        missing = [k for k, v in keys.items() if not v]
        if missing:
            self.notify(
                f"the match has no {', '.join(missing)}: add it to the query's return keys",
                title="DICOM toolbox",
                severity="warning",
            )
            return
        self.query_one("#tbx-op", Select).value = "move"
        self.query_one("#tbx-level", Select).value = level
        self.query_one("#tbx-query", TextArea).load_text(
            "\n".join(f"{k}={v}" for k, v in keys.items())
        )
        self.notify(
            f"{level} retrieve of the selected match: give a destination (or choose Get), F5",
            title="DICOM toolbox",
        )

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
