"""The node console's dialogs: confirm, config diff, AE entry, study tags, queued HL7 message."""

from __future__ import annotations

from typing import Any, TypeVar

from rich.syntax import Syntax
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static, TextArea

AE_TITLE_MAX = 16
"""An AE title is at most 16 characters (PS3.5, VR AE)."""

STUDY_TAGS = (
    ("PatientID", "patient_id"),
    ("PatientName", "patient_name"),
    ("PatientBirthDate", "birth_date"),
    ("PatientSex", "sex"),
    ("AccessionNumber", "accession"),
    ("StudyID", "study_id"),
    ("StudyDescription", "description"),
    ("ReferringPhysicianName", "referring_physician"),
    ("StudyDate", "study_date"),
    ("StudyTime", "study_time"),
)
"""The study attributes the PACS can correct (keyword, key in the study summary)."""

R = TypeVar("R")
"""What a form modal dismisses with (None when cancelled)."""

MODAL_CSS = """
ModalScreen.console-modal { align: center middle; }
ModalScreen.console-modal .dialog {
    width: 64; max-width: 95%; height: auto; max-height: 90%;
    border: thick $accent; background: $surface; padding: 0 1;
}
ModalScreen.console-modal .dialog.wide { width: 100; }
ModalScreen.console-modal .question { text-style: bold; margin-bottom: 1; }
ModalScreen.console-modal .buttons { height: auto; align-horizontal: right; }
ModalScreen.console-modal .buttons Button { margin-left: 2; }
ModalScreen.console-modal .error { color: $error; height: auto; }
ModalScreen.console-modal .diff-scroll { height: auto; max-height: 20; border: round $panel; }
ModalScreen.console-modal .fields { height: auto; max-height: 16; }
ModalScreen.console-modal .field { height: auto; }
ModalScreen.console-modal .field-label { width: 24; padding-top: 1; }
ModalScreen.console-modal .field-label.short { width: 13; }
ModalScreen.console-modal .field Input { width: 1fr; }
ModalScreen.console-modal TextArea { height: 14; }
"""


class DiffModal(ModalScreen[bool]):
    """The unified diff of a config change, to confirm before it is applied."""

    DEFAULT_CSS = MODAL_CSS
    SCOPED_CSS = False

    BINDINGS = [
        Binding("ctrl+s,y", "answer(True)", "Apply"),
        Binding("escape,n", "answer(False)", "Cancel"),
    ]

    def __init__(self, diff: str, title: str) -> None:
        super().__init__(classes="console-modal")
        self.diff = diff
        self.heading = title

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(self.heading, classes="question")
            with VerticalScroll(classes="diff-scroll"):
                yield Static(Syntax(self.diff, "diff", theme="ansi_dark"), id="diff")
            with Horizontal(classes="buttons"):
                yield Button("Apply", id="yes", variant="warning")
                yield Button("Cancel", id="no")

    def on_mount(self) -> None:
        self.query_one("#yes", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


def check_ae_title(title: str) -> str | None:
    """Why an AE title is not valid, or None."""
    if not title.strip():
        return "AE title is required"
    if len(title) > AE_TITLE_MAX:
        return f"AE title is at most {AE_TITLE_MAX} characters ({len(title)} given)"
    if "\\" in title or any(ord(c) < 32 or ord(c) > 126 for c in title):
        return "AE title: printable ASCII only, no backslash"
    return None


def check_port(text: str) -> tuple[int | None, str | None]:
    """The port as a number, or why it is not one."""
    try:
        port = int(text.strip())
    except ValueError:
        return None, f"port must be a number, not {text!r}"
    if not 1 <= port <= 65535:
        return None, f"port must be between 1 and 65535 ({port} given)"
    return port, None


class FormModal(ModalScreen[R]):
    """A console form: Save (ctrl+s, Enter in a field, the Save button) or Cancel (escape, the
    Cancel button, which dismisses with None). Subclasses compose the fields and validate in
    `action_save`."""

    DEFAULT_CSS = MODAL_CSS
    SCOPED_CSS = False

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "save", "Save")]

    def __init__(self) -> None:
        super().__init__(classes="console-modal")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "save":
            self.action_save()
        else:
            self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_save(self) -> None:
        raise NotImplementedError


class AeEditModal(FormModal[dict[str, Any] | None]):
    """Add or change one AE table row; validated before it is sent."""

    def __init__(self, row: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.row = row or {}
        self.editing = bool(row)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Edit AE" if self.editing else "Add AE", classes="question")
            fields = (
                ("ae_title", "AE title", str(self.row.get("ae_title", ""))),
                ("host", "Host", str(self.row.get("host", "127.0.0.1"))),
                ("port", "Port", str(self.row.get("port", ""))),
                ("description", "Description", str(self.row.get("description") or "")),
            )
            for key, label, value in fields:
                with Horizontal(classes="field"):
                    yield Label(label, classes="field-label short")
                    yield Input(
                        value,
                        id=key,
                        type="integer" if key == "port" else "text",
                        disabled=self.editing and key == "ae_title",
                    )
            yield Static("", id="error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Save", id="save", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#host" if self.editing else "#ae_title", Input).focus()

    def action_save(self) -> None:
        value = {k: self.query_one(f"#{k}", Input).value for k in ("ae_title", "host", "port")}
        error = check_ae_title(value["ae_title"])
        port, port_error = check_port(value["port"])
        error = error or port_error
        if not error and not value["host"].strip():
            error = "host is required"
        if error:
            self.query_one("#error", Static).update(error)
            return
        row: dict[str, Any] = {
            "ae_title": value["ae_title"].strip(),
            "host": value["host"].strip(),
            "port": port,
        }
        description = self.query_one("#description", Input).value.strip()
        if description or self.row.get("description"):
            row["description"] = description
        self.dismiss(row)


class StudyEditModal(FormModal[dict[str, str] | None]):
    """Correct a study's patient and study attributes; only the changed ones are returned."""

    def __init__(self, study: dict[str, Any]) -> None:
        super().__init__()
        self.study = study

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Edit study {self.study.get('study_uid', '')}", classes="question")
            with VerticalScroll(classes="fields"):
                for keyword, key in STUDY_TAGS:
                    with Horizontal(classes="field"):
                        yield Label(keyword, classes="field-label")
                        yield Input(str(self.study.get(key) or ""), id=f"tag-{keyword}")
            yield Static("", id="error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Save", id="save", variant="primary")
                yield Button("Cancel", id="cancel")

    def changes(self) -> dict[str, str]:
        out = {}
        for keyword, key in STUDY_TAGS:
            value = self.query_one(f"#tag-{keyword}", Input).value
            if value != str(self.study.get(key) or ""):
                out[keyword] = value
        return out

    def action_save(self) -> None:
        changes = self.changes()
        if not changes:
            self.query_one("#error", Static).update("nothing changed")
            return
        self.dismiss(changes)


class QueueEditModal(FormModal[str | None]):
    """Edit the raw text of a queued HL7 message (one segment per line)."""

    def __init__(self, entry_id: int, message: str) -> None:
        super().__init__()
        self.entry_id = entry_id
        self.message = message

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(
                f"Queued message {self.entry_id} (one segment per line)", classes="question"
            )
            text = "\n".join(s for s in self.message.replace("\r\n", "\r").split("\r") if s)
            yield TextArea(text, id="message", soft_wrap=False, show_line_numbers=True)
            yield Static("", id="error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Save and resend", id="save", variant="primary")
                yield Button("Cancel", id="cancel")

    def action_save(self) -> None:
        text = self.query_one("#message", TextArea).text.strip()
        if not text.startswith("MSH"):
            self.query_one("#error", Static).update("an HL7 message starts with MSH")
            return
        self.dismiss("\r".join(line for line in text.splitlines() if line.strip()) + "\r")
