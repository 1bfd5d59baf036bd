"""`simlab faults …`: the fault catalog, and live injection/revert for instructors and tests."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from simlab.cli.lab_commands import HomeOpt, LabOpt, open_lab
from simlab.cli.output import console, err_console
from simlab.faults.base import FaultError
from simlab.faults.catalog import load_catalog
from simlab.faults.manager import FaultManager
from simlab.scenarios.session import load_session

app = typer.Typer(help="The fault catalog; inject and revert faults in a running lab.")


@app.command("list")
def list_(
    family: Annotated[str | None, typer.Option(help="Only this family.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Every fault simlab can inject, by family, with its symptom."""
    catalog = load_catalog()
    rows = [c for c in catalog.values() if family in (None, c.family)]
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "type": c.kind,
                        "family": c.family,
                        "title": c.title,
                        "symptom": c.symptom,
                        "root_cause": c.root_cause,
                        "params": c.Params.model_json_schema(),
                    }
                    for c in rows
                ],
                indent=2,
            )
        )
        return
    table = Table(title=f"Faults ({len(rows)})")
    for col in ("type", "family", "title"):
        table.add_column(col)
    for c in sorted(rows, key=lambda c: (c.family, c.kind)):
        table.add_row(c.kind, c.family, c.title)
    console.print(table)


def _parse_params(pairs: list[str]) -> dict[str, object]:
    params: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--param")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


@app.command()
def inject(
    fault_type: Annotated[str, typer.Argument(help="A type from `simlab faults list`.")],
    fault_id: Annotated[str | None, typer.Option("--id", help="Name of this injection.")] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE (JSON values parse).")
    ] = None,
    lab: LabOpt = "default",
    home: HomeOpt = None,
) -> None:
    """Inject a fault into a running lab now (instructor view, rehearsals, tests)."""
    the_lab = open_lab(home, lab)
    session = load_session(the_lab)
    manager = FaultManager(the_lab, seed=session.seed if session else 0)
    try:
        record = manager.inject(
            fault_id or f"live-{fault_type}", fault_type, _parse_params(param or []), "instructor"
        )
    except (FaultError, KeyError, ValueError) as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    console.print(f"injected {record.fault_id} ({record.kind})")


@app.command()
def revert(
    fault_id: Annotated[str | None, typer.Argument(help="Which active fault.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Revert every active fault.")] = False,
    lab: LabOpt = "default",
    home: HomeOpt = None,
) -> None:
    """Revert an active fault (or all): the lab is healthy again, as before the injection."""
    manager = FaultManager(open_lab(home, lab))
    try:
        if all_:
            done = manager.revert_all()
            console.print(f"reverted: {', '.join(done) or 'nothing was active'}")
        elif fault_id:
            manager.revert(fault_id)
            console.print(f"reverted {fault_id}")
        else:
            raise typer.BadParameter("give a fault id or --all")
    except FaultError as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None


@app.command()
def active(lab: LabOpt = "default", home: HomeOpt = None) -> None:
    """The faults active in a lab now (instructor view: this reveals the scenario)."""
    for record in FaultManager(open_lab(home, lab)).active():
        console.print(f"  {record.fault_id}: {record.kind} {json.dumps(record.params)}")
