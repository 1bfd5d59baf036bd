"""`simlab run / check / hint / submit` and `simlab scenario …`: play and author scenarios."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from simlab.cli.lab_commands import HomeOpt, LabOpt, home_of, open_lab
from simlab.cli.options import BaseOpt, RuntimeOpt, runtime_error
from simlab.cli.output import console, dcmtk_hint, endpoint_table, err_console
from simlab.faults.base import FaultError
from simlab.runtime.lab import Lab, LabError
from simlab.scenarios.catalog import catalog_markdown, find_scenario, scenario_catalog
from simlab.scenarios.checks import CHECK_TYPES
from simlab.scenarios.engine import ScenarioError, ScenarioRun
from simlab.scenarios.loader import ScenarioError as ScenarioFileError
from simlab.scenarios.loader import load_scenario
from simlab.scenarios.report import render_text
from simlab.scenarios.schema import Scenario
from simlab.scenarios.submission import submit as submit_session

scenario_app = typer.Typer(help="Scenarios: list, validate, show, schema.")
TICK_SECONDS = 0.5


def _fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]error:[/] {message}")
    return typer.Exit(code)


def _resume(home: Path | None, lab: str) -> ScenarioRun:
    try:
        return ScenarioRun.resume(open_lab(home, lab))
    except (ScenarioError, ScenarioFileError) as exc:
        raise _fail(str(exc)) from None


def print_ticket(scenario: Scenario, the_run: ScenarioRun | None = None) -> None:
    """The ticket as the trainee reads it (placeholders filled once the lab is seeded)."""
    t = scenario.ticket
    fill = the_run.fill if the_run else (lambda text: text)
    console.rule(f"[bold]Ticket[/] — {t.priority} — from {t.reporter}")
    console.print(fill(t.subject) + "\n", style="bold", markup=False, highlight=False)
    console.print(fill(t.body).strip(), markup=False, highlight=False)
    console.rule()


def run(
    scenario: Annotated[
        str, typer.Argument(help="Scenario id (see `simlab scenario list`) or file.")
    ],
    headless: Annotated[
        bool, typer.Option("--headless", help="No TUI: print the ticket and wait.")
    ] = False,
    lab: LabOpt = "default",
    home: HomeOpt = None,
    max_minutes: Annotated[
        float,
        typer.Option(help="Stop the lab after this long (default: 4 times the expected time)."),
    ] = 0,
    actor: Annotated[str, typer.Option(help="Trainee name for the journal and report.")] = "",
    runtime: RuntimeOpt = None,
    base: BaseOpt = None,
) -> None:
    """Start a lab for a scenario, fire its faults, show the ticket, wait for the fix.

    In another shell: `simlab check`, `simlab hint`, `simlab admin …`, `simlab submit`.
    Ctrl-C stops the lab. `--runtime docker` runs the department in containers.
    """
    problem = runtime_error(runtime)
    if problem:
        raise _fail(problem, 2)
    runtime = runtime or "local"
    try:
        path = find_scenario(scenario)
        parsed = load_scenario(path)
    except (ScenarioFileError, FileNotFoundError) as exc:
        raise _fail(str(exc), 2) from None
    root = home_of(home)
    _clear_stopped_lab(root, lab)
    if not headless:
        from simlab.tui.app import run_tui  # the TUI only when asked for: headless stays light

        run_tui(root, lab, scenario=path, runtime=runtime, docker_base=base)
        return
    actor = actor or os.environ.get("SIMLAB_ACTOR", "trainee")
    try:
        the_run = ScenarioRun.start(
            root,
            path,
            lab,
            progress=lambda m: console.print(f"  {m}"),
            actor=actor,
            runtime=runtime,
            docker_base=base,
        )
    except (LabError, ScenarioError, FaultError) as exc:
        with contextlib.suppress(LabError, ValueError):
            Lab.open(root, lab).down()
        raise _fail(str(exc)) from None
    statuses = the_run.lab.status()
    console.print(endpoint_table(lab, statuses))
    console.print(dcmtk_hint(statuses))
    console.print(
        f"[bold]{parsed.title}[/] ({parsed.level}, about {parsed.expected_minutes:g} min)"
    )
    print_ticket(parsed, the_run)
    console.print(
        "Diagnose and fix with `simlab admin …` (or DCMTK). "
        "`simlab check` shows the objectives, `simlab hint` offers hints, "
        "`simlab submit` scores. Ctrl-C stops the lab."
    )
    limit = (max_minutes or parsed.expected_minutes * 4) * 60
    _wait(the_run, limit)


def _clear_stopped_lab(root: Path, lab_id: str) -> None:
    """A scenario starts in a fresh lab; a stopped lab of the same id is replaced."""
    try:
        replaced = Lab.clear_stopped(root, lab_id)
    except LabError as exc:
        raise _fail(f"{exc}, or use --lab") from None
    if replaced:
        console.print(f"  replaced the stopped lab {lab_id}")


def _wait(the_run: ScenarioRun, limit_seconds: float) -> None:
    """Fire timed/event faults until submit, Ctrl-C, SIGTERM or the time limit (bounded)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    lab = the_run.lab
    deadline = time.monotonic() + limit_seconds
    try:
        while not stop.wait(TICK_SECONDS) and time.monotonic() < deadline:
            lab.reload_manifest()
            if lab.manifest.state in ("down", "stopping"):
                console.print("The lab was stopped by another command.")
                return
            for fired in the_run.tick():
                console.print(f"[dim]{time.strftime('%H:%M:%S')} scenario: {fired}[/]")
            for entry in lab.poll_exits():
                err_console.print(f"[yellow]node {entry.node_id} exited[/]")
            if the_run.state.submitted_at is not None:
                console.print("Submitted. The report is in " + str(lab.paths.root / "reports"))
                break
        else:
            if not stop.is_set():
                console.print("Time limit reached.")
    except KeyboardInterrupt:
        pass
    console.print("Stopping the lab…")
    lab.down()


def check(
    lab: LabOpt = "default",
    home: HomeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Evaluate the scenario's objectives against the real state of the lab, now."""
    the_run = _resume(home, lab)
    results = the_run.objectives()
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in results if r.revealed], indent=2))
        return
    table = Table(title=f"Objectives — {the_run.scenario.title}")
    table.add_column("")
    table.add_column("Objective")
    table.add_column("Evidence")
    for r in results:
        if not r.revealed:
            continue
        mark = "[green]✔ met[/]" if r.result.ok else "[red]✘ not yet[/]"
        text = r.result.evidence if r.result.ok else (r.fail_message or r.result.evidence)
        table.add_row(mark, r.title, text)
    hidden = sum(1 for r in results if not r.revealed)
    console.print(table)
    if hidden:
        console.print(f"[dim]{hidden} more objective(s) appear as you progress.[/]")


def hint(
    hint_id: Annotated[str | None, typer.Argument(help="Which hint to take.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    lab: LabOpt = "default",
    home: HomeOpt = None,
) -> None:
    """List the hints with their cost, or take one (it costs points; asks first)."""
    the_run = _resume(home, lab)
    hints = the_run.scenario.hints
    if hint_id is None:
        if not hints:
            console.print("This scenario has no hints.")
        for h in hints:
            taken = h.id in the_run.state.hints_taken
            console.print(f"  {h.id}: costs {h.cost:g} points" + (" (taken)" if taken else ""))
        return
    chosen = next((h for h in hints if h.id == hint_id), None)
    if chosen is None:
        raise _fail(f"no hint {hint_id!r}; hints: {', '.join(h.id for h in hints) or 'none'}", 2)
    if (
        chosen.id not in the_run.state.hints_taken
        and not yes
        and not typer.confirm(f"Hint {chosen.id} costs {chosen.cost:g} points. Take it?")
    ):
        raise typer.Exit(0)
    console.print(the_run.take_hint(chosen.id))


def submit(
    answer: Annotated[
        list[str] | None, typer.Option("--answer", "-a", help="QUESTION=ANSWER (repeatable).")
    ] = None,
    lab: LabOpt = "default",
    home: HomeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Answer the root-cause questions, score the lab as it is now, write the report."""
    the_run = _resume(home, lab)
    answers: dict[str, str] = {}
    for item in answer or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r} is not QUESTION=ANSWER", param_hint="--answer")
        answers[key.strip()] = value.strip()
    for q in the_run.scenario.questions:
        if q.id in answers or not sys.stdin.isatty():
            continue
        console.print(f"\n[bold]{q.text}[/]")
        for key, text in (q.choices or {}).items():
            console.print(f"  {key}) {text}")
        answers[q.id] = typer.prompt("Your answer", default="", show_default=False)
    try:
        result = submit_session(the_run, answers, actor=the_run.state.actor)
    except ScenarioError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(result.report, indent=2, ensure_ascii=False))
        return
    console.print(render_text(result.report), markup=False, highlight=False)
    console.print(f"Report: {result.paths['html']}")


# ------------------------------------------------------------------------- simlab scenario …
@scenario_app.command("list")
def list_scenarios(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="As docs/scenarios.md.")] = False,
) -> None:
    """The shipped scenarios: id, level, expected minutes, title."""
    rows = scenario_catalog()
    if markdown:
        typer.echo(catalog_markdown(rows))
        return
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    table = Table(title="Scenarios")
    for col in ("id", "level", "min", "team", "title", "CPSA"):
        table.add_column(col)
    for r in rows:
        s = r.scenario
        if s is None:
            table.add_row(r.path.stem, "[red]invalid[/]", "", "", r.error.splitlines()[0], "")
            continue
        table.add_row(
            s.id,
            s.level,
            f"{s.expected_minutes:g}",
            "yes" if s.team else "",
            s.title,
            ",".join(str(c) for c in s.domains.cpsa),
        )
    console.print(table)


@scenario_app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Scenario files.", exists=False)],
) -> None:
    """Check scenario files: YAML, schema, fault types and params, checks, actions."""
    bad = 0
    for path in files:
        try:
            scenario = load_scenario(path)
        except ScenarioFileError as exc:
            bad += 1
            err_console.print(str(exc), markup=False, highlight=False)
            continue
        console.print(
            f"{path}: ok ({scenario.id}, {len(scenario.faults)} faults, "
            f"{len(scenario.objectives)} objectives)"
        )
    if bad:
        raise typer.Exit(1)


@scenario_app.command()
def schema() -> None:
    """Print the JSON Schema of a scenario file (for editor autocompletion)."""
    typer.echo(json.dumps(Scenario.model_json_schema(), indent=2))


@scenario_app.command()
def checks() -> None:
    """The objective check types and what they verify."""
    for kind in sorted(CHECK_TYPES):
        console.print(f"  [bold]{kind}[/]: {CHECK_TYPES[kind].describe}")


@scenario_app.command()
def show(scenario: Annotated[str, typer.Argument(help="Scenario id or file.")]) -> None:
    """The briefing of a scenario: title, level, domains, summary, ticket (no answers)."""
    try:
        s = load_scenario(find_scenario(scenario))
    except (ScenarioFileError, FileNotFoundError) as exc:
        raise _fail(str(exc), 2) from None
    console.print(f"[bold]{s.title}[/] ({s.id})")
    console.print(
        f"level {s.level}, about {s.expected_minutes:g} minutes"
        + (", team exercise" if s.team else "")
    )
    console.print(f"CPSA {s.domains.cpsa}  CIIP {s.domains.ciip}  topics {s.domains.topics}")
    console.print(s.summary.strip())
    print_ticket(s)
