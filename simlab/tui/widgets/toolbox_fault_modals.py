"""The instructor's dialogs: inject a fault (its params as JSON, validated) and confirm."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static, TextArea

from simlab.faults.base import Fault


def default_params(fault: type[Fault]) -> dict[str, Any]:
    """The fault's parameters as its Params model defaults them (None where one is required)."""
    try:
        return fault.Params().model_dump(mode="json")
    except ValidationError:
        schema = fault.Params.model_json_schema()
        return {name: prop.get("default") for name, prop in schema.get("properties", {}).items()}


@dataclass(frozen=True)
class InjectRequest:
    fault_id: str
    kind: str
    params: dict[str, Any]


class InjectFaultModal(ModalScreen[InjectRequest | None]):
    """Edit a fault's params (JSON), validated against its Params model before it is injected."""

    DEFAULT_CSS = """
    InjectFaultModal { align: center middle; }
    InjectFaultModal > Vertical {
        width: 76; max-width: 100%; height: auto; max-height: 100%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    InjectFaultModal #inject-params { height: 10; }
    InjectFaultModal #inject-error { color: $error; height: auto; }
    InjectFaultModal Horizontal { height: auto; }
    InjectFaultModal Button { width: 1fr; }
    """
    BINDINGS = [
        Binding("ctrl+s", "submit", "Inject"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, fault: type[Fault], fault_id: str) -> None:
        super().__init__()
        self.fault = fault
        self.fault_id = fault_id

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"[b]Inject {self.fault.kind}[/b] ({self.fault.family})")
            yield Static(self.fault.title)
            yield Label("Fault id")
            yield Input(self.fault_id, id="inject-id")
            yield Label("Params (JSON)")
            yield TextArea(
                json.dumps(default_params(self.fault), indent=2),
                language="json",
                id="inject-params",
            )
            yield Static("", id="inject-error")
            with Horizontal():
                yield Button("Inject  Ctrl+S", variant="error", id="inject-ok")
                yield Button("Cancel  Esc", id="inject-cancel")

    def read_request(self) -> InjectRequest:
        """The request the form holds; ValueError with every problem when it is not valid."""
        fault_id = self.query_one("#inject-id", Input).value.strip()
        if not fault_id:
            raise ValueError("give the fault an id")
        try:
            raw = json.loads(self.query_one("#inject-params", TextArea).text or "{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ValueError("params must be a JSON object")
        try:
            params = self.fault.Params.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ValueError(problems) from None
        return InjectRequest(fault_id, self.fault.kind, params.model_dump(mode="json"))

    @on(Button.Pressed, "#inject-ok")
    def action_submit(self) -> None:
        try:
            request = self.read_request()
        except ValueError as exc:
            self.query_one("#inject-error", Static).update(str(exc))
            return
        self.dismiss(request)

    @on(Button.Pressed, "#inject-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
