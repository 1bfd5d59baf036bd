"""Modal dialogs of the trainee's flow: a yes/no confirmation and the submit form."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet

from simlab.scenarios.schema import Question

MODAL_CSS = """
SubmitModal { align: center middle; }
SubmitModal > Vertical {
    width: 76; max-width: 100%; height: auto; max-height: 90%;
    border: thick $accent; background: $surface; padding: 1 2;
}
SubmitModal Horizontal { height: auto; align: right middle; }
SubmitModal Button { margin-left: 2; }
SubmitModal VerticalScroll { height: auto; max-height: 16; }
SubmitModal .question { margin-top: 1; text-style: bold; }
SubmitModal RadioSet { width: 100%; }
"""


class SubmitModal(ModalScreen[dict[str, str] | None]):
    """The root-cause questions: choices as radio buttons, short answers as inputs.

    Dismisses with {question id: answer} (unanswered questions left out), or None on cancel.
    """

    DEFAULT_CSS = MODAL_CSS
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "submit", "Submit"),
    ]

    def __init__(self, questions: list[Question]) -> None:
        super().__init__()
        self.questions = questions

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Submit: the lab is judged as it is now. Answer the questions first.")
            with VerticalScroll():
                if not self.questions:
                    yield Label("This scenario asks no questions.", classes="question")
                for q in self.questions:
                    yield Label(q.text, classes="question", markup=False)
                    if q.choices is not None:
                        with RadioSet(id=f"q-{q.id}"):
                            for key, text in q.choices.items():
                                yield RadioButton(f"{key}) {text}", name=key)
                    else:
                        yield Input(placeholder="your answer", id=f"q-{q.id}")
            with Horizontal():
                yield Button("Submit (ctrl+s)", id="submit", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def answers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for q in self.questions:
            if q.choices is not None:
                pressed = self.query_one(f"#q-{q.id}", RadioSet).pressed_button
                if pressed is not None and pressed.name:
                    out[q.id] = pressed.name
            else:
                value = self.query_one(f"#q-{q.id}", Input).value.strip()
                if value:
                    out[q.id] = value
        return out

    @on(Button.Pressed, "#submit")
    def action_submit(self) -> None:
        self.dismiss(self.answers())

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
