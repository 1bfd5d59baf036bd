"""`simlab admin …`: what an administrator does through a node's console, from the shell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from simlab.cli.lab_commands import HomeOpt, LabOpt, open_lab
from simlab.cli.output import err_console
from simlab.client.admin import AdminApiError

app = typer.Typer(help="Administer a node of a running lab through its admin API.")

NodeArg = Annotated[str, typer.Argument(help="Node id, e.g. pacs.")]


def _print(payload: object) -> None:
    typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))


def _call(lab: str, home: Path | None, node: str, method: str, path: str, body=None):
    the_lab = open_lab(home, lab)
    try:
        client = the_lab.client(node)
        return client.request(method, path, body)
    except KeyError as exc:
        err_console.print(f"[red]error:[/] {exc.args[0]}")
        raise typer.Exit(2) from None
    except AdminApiError as exc:
        err_console.print(f"[red]error:[/] {node}: {exc.status or 'unreachable'} {exc.message}")
        if exc.detail:
            err_console.print(json.dumps(exc.detail, indent=2))
        raise typer.Exit(1) from None


@app.command()
def call(
    node: NodeArg,
    method: Annotated[str, typer.Argument(help="GET, PUT, PATCH, POST or DELETE.")],
    path: Annotated[str, typer.Argument(help="API path, e.g. /ae-table or /studies.")],
    data: Annotated[str | None, typer.Option("--data", "-d", help="JSON body.")] = None,
    lab: LabOpt = "default",
    home: HomeOpt = None,
) -> None:
    """Send one request to a node's admin API and print the JSON answer."""
    method = method.upper()
    if method not in {"GET", "PUT", "PATCH", "POST", "DELETE"}:
        raise typer.BadParameter(f"unknown method {method}", param_hint="METHOD")
    body = None
    if data is not None:
        try:
            body = json.loads(data)
        except ValueError as exc:
            raise typer.BadParameter(f"not valid JSON: {exc}", param_hint="--data") from None
    _print(_call(lab, home, node, method, path, body))


@app.command()
def config(node: NodeArg, lab: LabOpt = "default", home: HomeOpt = None) -> None:
    """Show a node's configuration."""
    _print(_call(lab, home, node, "GET", "/config"))


@app.command()
def log(
    node: NodeArg,
    lines: Annotated[int, typer.Option("-n", help="How many lines.")] = 50,
    lab: LabOpt = "default",
    home: HomeOpt = None,
) -> None:
    """Show the end of a node's log."""
    the_lab = open_lab(home, lab)
    try:
        payload = the_lab.client(node).get("/log", lines=lines)
    except (KeyError, AdminApiError) as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    for line in payload["lines"]:
        typer.echo(line)
