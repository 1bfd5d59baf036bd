"""The HL7 toolbox: compose or paste a message, send it over MLLP, read the ACK, inspect it.

Templates (ADT^A04/A08/A40, ORM^O01) are dated today and addressed to the target's configured
HL7 application/facility (MSH-5/MSH-6), read from its config. A message to a node goes through
the journalled `hl7.send` action (`to` the node, or `host` + `port` for an address the trainee
types), so both are journalled with the actor. The ACK shows MSA-1 (AA/AE/AR, coloured and spelt
out), MSA-3, ERR-3 with its table 0357 meaning and ERR-2; the inspector shows the message or the
ACK segment by segment, field by field (PID-5), component by component.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Header, Input, Label, Select, Static, TextArea
from textual.worker import Worker, WorkerState, get_current_worker

from simlab.client.admin import AdminApiError
from simlab.common.hl7_messages import Hl7Error, read_ack
from simlab.runtime.lab import LabError
from simlab.tui.widgets.footer import AdaptiveFooter
from simlab.tui.widgets.toolbox_hl7 import (
    ACK_MEANING,
    TEMPLATES,
    Addressing,
    Hl7Inspector,
    compose,
    error_meaning,
    to_wire,
)
from simlab.tui.widgets.toolbox_session import ToolboxSession, bound
from simlab.workflow.actions import ActionError

ADDRESS = "__address__"
DEFAULT_IDENTITY = ("SIMLAB_PACS", "RADIOLOGY")
"""MSH-5/MSH-6 used when the target's config cannot be read."""


class HL7ToolboxScreen(Screen[None]):
    """Compose or paste an HL7 v2 message, send it over MLLP, read and inspect the ACK."""

    CSS_PATH = "hl7_toolbox.tcss"
    TITLE = "HL7 toolbox"
    BINDINGS = [
        Binding("f5", "send", "Send"),
        Binding("f2", "focus_template", "Template"),
        Binding("f6", "inspect_message", "Inspect"),
        Binding("f7", "inspect_ack", "ACK"),
        Binding("escape", "cancel_or_back", "Cancel/Back"),
    ]

    def __init__(
        self,
        session: ToolboxSession,
        *,
        now: Callable[[], datetime] = datetime.now,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.session = session
        self.lab, self.actions = bound(session)
        self.now = now
        self.ack_text = ""
        self._identity: dict[str, tuple[str, str]] = {}

    def compose(self) -> ComposeResult:
        targets = [
            (f"{n.node_id} (HL7)", n.node_id) for n in self.lab.manifest.nodes if n.hl7_port
        ] + [("host:port typed below", ADDRESS)]
        default = next((v for _l, v in targets if v == "pacs"), targets[0][1])
        yield Header(show_clock=False)
        with Horizontal(id="hl7-body"):
            with Vertical(id="hl7-compose"):
                with Horizontal(classes="row"):
                    yield Select([(t, t) for t in TEMPLATES], prompt="template…", id="hl7-template")
                    yield Select(targets, value=default, allow_blank=False, id="hl7-target")
                yield Input(placeholder="host:port", compact=True, id="hl7-address")
                yield Label("Message (segments on lines; sent with CR)", classes="caption")
                yield TextArea("", id="hl7-message", soft_wrap=False)
                with Horizontal(classes="row buttons"):
                    yield Button("Send  F5", id="hl7-send", variant="primary")
                    yield Button("Inspect  F6", id="hl7-inspect")
            with Vertical(id="hl7-answer"):
                yield Static("Pick a template (F2) or paste a message, then F5.", id="hl7-ack")
                yield Hl7Inspector(id="hl7-tree")
        yield AdaptiveFooter()

    def on_mount(self) -> None:
        self.sub_title = f"as {self.session.actor}"
        self.query_one("#hl7-address").display = False

    @on(Select.Changed, "#hl7-target")
    def _target_chosen(self, event: Select.Changed) -> None:
        address = self.query_one("#hl7-address", Input)
        address.display = event.value == ADDRESS
        if address.display:
            address.focus()

    # ------------------------------------------------------------------------ templates
    def action_focus_template(self) -> None:
        self.query_one("#hl7-template", Select).focus()

    @on(Select.Changed, "#hl7-template")
    def _template_chosen(self, event: Select.Changed) -> None:
        if event.value is Select.NULL:
            return
        target = str(self.query_one("#hl7-target", Select).value)
        self._compose_template(str(event.value), target)

    @work(thread=True, exit_on_error=False, exclusive=True, group="hl7-template")
    def _compose_template(self, kind: str, target: str) -> None:
        app, facility = self._target_identity(target)
        text = compose(
            kind, Addressing(receiving_application=app, receiving_facility=facility), self.now()
        )
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self.set_message, text)

    def _target_identity(self, target: str) -> tuple[str, str]:
        """MSH-5/MSH-6 the target expects: its config's hl7.application/facility."""
        if target == ADDRESS:
            return DEFAULT_IDENTITY
        if target not in self._identity:
            try:
                hl7 = self.lab.client(target, timeout=5).get("/config").get("hl7", {})
                self._identity[target] = (
                    str(hl7.get("application") or DEFAULT_IDENTITY[0]),
                    str(hl7.get("facility") or DEFAULT_IDENTITY[1]),
                )
            except (AdminApiError, LabError, OSError, KeyError, AttributeError):
                return DEFAULT_IDENTITY
        return self._identity[target]

    def set_message(self, text: str) -> None:
        """Put a message in the editor and show it in the inspector."""
        self.query_one("#hl7-message", TextArea).text = text
        self.query_one(Hl7Inspector).show(text, "message")

    # ------------------------------------------------------------------------ inspector
    @on(Button.Pressed, "#hl7-inspect")
    def action_inspect_message(self) -> None:
        text = self.query_one("#hl7-message", TextArea).text
        if not text.strip():
            self.notify("no message to inspect", severity="warning")
            return
        self.query_one(Hl7Inspector).show(text, "message")

    def action_inspect_ack(self) -> None:
        if not self.ack_text:
            self.notify("no ACK yet", severity="warning")
            return
        self.query_one(Hl7Inspector).show(self.ack_text, "ACK")

    # ------------------------------------------------------------------------ sending
    def action_cancel_or_back(self) -> None:
        running = [w for w in self.workers if w.group == "hl7-send" and w.is_running]
        if running:
            for worker in running:
                worker.cancel()
            self.query_one("#hl7-answer").loading = False
            self.query_one("#hl7-ack", Static).update(Text("cancelled", "yellow"))
            return
        self.dismiss(None)

    @on(Button.Pressed, "#hl7-send")
    def action_send(self) -> None:
        text = self.query_one("#hl7-message", TextArea).text
        if not text.strip().startswith("MSH"):
            self.notify("an HL7 message starts with an MSH segment", severity="error")
            return
        target = str(self.query_one("#hl7-target", Select).value)
        address: tuple[str, int] | None = None
        if target == ADDRESS:
            host, _, port = self.query_one("#hl7-address", Input).value.strip().rpartition(":")
            if not host or not port.isdigit():
                self.notify("type the address as host:port", severity="error")
                return
            address = (host, int(port))
        self.query_one("#hl7-ack", Static).update(Text("sending… (Esc cancels)", "italic"))
        self.query_one("#hl7-answer").loading = True
        self._send(target, address, to_wire(text))

    @work(thread=True, exit_on_error=False, exclusive=True, group="hl7-send")
    def _send(self, target: str, address: tuple[str, int] | None, message: str) -> None:
        worker = get_current_worker()
        try:
            if address is None:
                result = self.actions.hl7_send(to=target, message=message)
            else:
                result = self.actions.hl7_send(host=address[0], port=address[1], message=message)
        except (ActionError, OSError) as exc:
            if not worker.is_cancelled:
                self.app.call_from_thread(self._failed, str(exc))
            return
        if not worker.is_cancelled:
            self.app.call_from_thread(self._show_ack, result.ok, result.data or {}, result.text)

    def _failed(self, text: str) -> None:
        self.query_one("#hl7-answer").loading = False
        self.query_one("#hl7-ack", Static).update(Text(f"✘ {text}", "bold red"))
        self.notify(text, title="HL7 toolbox", severity="error")

    def _show_ack(self, ok: bool, data: dict[str, Any], text: str) -> None:
        self.query_one("#hl7-answer").loading = False
        self.ack_text = str(data.get("ack") or "")
        self.query_one("#hl7-ack", Static).update(self.describe_ack(ok, text))
        if self.ack_text:
            self.query_one(Hl7Inspector).show(self.ack_text, "ACK")

    def describe_ack(self, ok: bool, text: str) -> Text:
        """MSA-1 coloured and spelt out, MSA-2, MSA-3, ERR-3 with its meaning, ERR-2."""
        if not self.ack_text:
            return Text(f"✘ no ACK: {text}", "bold red")
        try:
            summary = read_ack(self.ack_text)
        except (Hl7Error, ValueError, IndexError) as exc:
            return Text(f"✘ unreadable ACK: {exc}", "bold red")
        meaning, colour = ACK_MEANING.get(summary.ack_code, ("unknown code", "red"))
        out = Text()
        out.append("MSA-1 ", "bold")
        out.append(f" {summary.ack_code or '?'} ", f"bold reverse {colour}")
        out.append(f" {meaning}\n", f"bold {colour}")
        out.append("MSA-2 ", "bold")
        out.append(f"{summary.control_id}\n")
        if summary.text:
            out.append("MSA-3 ", "bold")
            out.append(f"{summary.text}\n")
        if summary.error_code is not None:
            out.append("ERR-3 ", "bold")
            out.append(f"{summary.error_code} ", f"bold {colour}")
            out.append(f"{error_meaning(summary.error_code)}\n")
        if summary.error_location:
            out.append("ERR-2 ", "bold")
            out.append(f"{summary.error_location}\n")
        return out

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place a worker's unexpected failure is reported (the screen stays usable)."""
        if event.state == WorkerState.ERROR:
            self.query_one("#hl7-answer").loading = False
            self.notify(
                f"{type(event.worker.error).__name__}: {event.worker.error}",
                title="HL7 toolbox",
                severity="error",
            )
