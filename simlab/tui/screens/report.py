"""The score report: score, breakdown, objectives with evidence, timeline, questions, debrief.

Rendered from the report data `simlab.scenarios.report.build_report` makes (the same the
CLI prints and the HTML page shows); `e` writes the HTML (and text, JSON) under the lab's
reports directory and shows where.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Header, Label, Static

from simlab.scenarios.report import write_report
from simlab.tui.widgets.footer import AdaptiveFooter


def _clock(seconds: float) -> str:
    sign = "-" if seconds < 0 else ""
    seconds = abs(int(seconds))
    return f"{sign}{seconds // 60:02d}:{seconds % 60:02d}"


def score_text(report: dict[str, Any]) -> Text:
    s, sc = report["score"], report["scenario"]
    text = Text()
    text.append(f"{sc['title']}\n", style="bold")
    text.append(f"{sc['id']} · {sc['level']} · by {report['actor']}\n\n", style="dim")
    verdict = "PASSED" if s["passed"] else f"NOT PASSED (pass mark {s['pass_percent']:g}%)"
    text.append(
        f"Score {s['total']:g} / {s['maximum']:g} ({s['percent']:g}%) — ",
        style="bold",
    )
    text.append(verdict, style="bold green" if s["passed"] else "bold red")
    text.append(
        f"\nTime {_clock(report['elapsed_seconds'])} (expected {sc['expected_minutes']:g} min)"
    )
    return text


def objectives_text(report: dict[str, Any]) -> Text:
    text = Text()
    for o in report["objectives"]:
        if o["ok"]:
            text.append("✔ MET     ", style="bold green")
        else:
            text.append("✘ NOT MET ", style="bold red")
        text.append(o["title"] + "\n")
        text.append(f"          evidence: {o['evidence']}\n", style="dim")
    text.rstrip()
    return text


def questions_text(report: dict[str, Any]) -> Text:
    text = Text()
    if not report["questions"]:
        return Text("No questions.", style="dim")
    for q in report["questions"]:
        text.append(q["text"] + "\n", style="bold")
        given = q["answer_given"] or "(none)"
        if q.get("choices") and q["answer_given"] in q["choices"]:
            given = f"{q['answer_given']}) {q['choices'][q['answer_given']]}"
        text.append(f"  answer given: {given}\n")
    text.rstrip()
    return text


class ReportScreen(Screen[None]):
    """The score report of a submitted session."""

    CSS_PATH = Path(__file__).with_name("report.tcss")
    BINDINGS = [
        Binding("e", "export", "Export HTML"),
        Binding("b", "back", "Back to catalog"),
    ]

    class Exported(Message):
        def __init__(self, paths: dict[str, Path]) -> None:
            super().__init__()
            self.paths = paths

    class BackRequested(Message):
        """The trainee is done with this report (the app returns to the catalog)."""

    def __init__(self, report: dict[str, Any], reports_dir: Path | None) -> None:
        super().__init__()
        self.report = report
        self.reports_dir = reports_dir
        self.exported: dict[str, Path] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="report"):
            yield Static(score_text(self.report), id="score")
            yield Label("Score breakdown", classes="section")
            yield DataTable(id="breakdown", cursor_type="row", show_cursor=False)
            yield Label("Objectives", classes="section")
            yield Static(objectives_text(self.report), id="objectives")
            yield Label("Timeline", classes="section")
            yield DataTable(id="timeline", cursor_type="row", show_cursor=False)
            yield Label("Root-cause questions", classes="section")
            yield Static(questions_text(self.report), id="questions")
            yield Label("Debrief", classes="section")
            yield Static(Text(self.report["debrief"].strip()), id="debrief")
            yield Label("", id="exported")
        yield AdaptiveFooter()

    def on_mount(self) -> None:
        self.title = "Score report"
        s = self.report["score"]
        self.sub_title = f"{s['percent']:g}% — {'passed' if s['passed'] else 'not passed'}"
        breakdown = self.query_one("#breakdown", DataTable)
        breakdown.add_columns("points", "category", "what", "detail")
        for line in s["lines"]:
            breakdown.add_row(
                Text(f"{line['points']:+.1f}", justify="right"),
                line["category"],
                line["label"],
                line["detail"],
            )
        timeline = self.query_one("#timeline", DataTable)
        timeline.add_columns("t", "what", "who", "detail")
        for item in self.report["timeline"]:
            timeline.add_row(_clock(item["t"]), item["what"], item["actor"], item["detail"])
        self.query_one("#report").focus()

    def action_export(self) -> None:
        if self.reports_dir is None:
            self.notify("No lab to write the report into.", severity="error")
            return
        try:
            self.exported = write_report(self.report, self.reports_dir)
        except OSError as exc:
            self.notify(f"cannot write the report: {exc}", severity="error")
            return
        where = str(self.exported["html"])
        self.query_one("#exported", Label).update(f"Exported: {where}")
        self.notify(where, title="report written", timeout=15)
        self.post_message(self.Exported(self.exported))

    def action_back(self) -> None:
        self.post_message(self.BackRequested())
