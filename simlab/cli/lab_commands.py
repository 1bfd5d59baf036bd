"""`simlab lab …`: create, start, inspect and stop labs."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from simlab.cli.options import BaseOpt, RuntimeOpt, runtime_error
from simlab.cli.output import console, day_table, dcmtk_hint, endpoint_table, err_console
from simlab.runtime.compose import DEFAULT_IMAGE, ComposeError, write_compose
from simlab.runtime.lab import Lab, LabError
from simlab.runtime.manifest import default_home, list_labs

app = typer.Typer(help="Start, inspect and stop labs (a PACS and its department).")

LabOpt = Annotated[str, typer.Option("--lab", "-l", help="Lab id (a directory name).")]
HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", help="Where labs live. Default: $SIMLAB_HOME or ./.simlab"),
]

WATCH_INTERVAL = 0.5


def home_of(home: Path | None) -> Path:
    return home if home is not None else default_home()


def open_or_create_on(home: Path, lab_id: str, runtime: str | None, base: str | None) -> Lab:
    """The lab, created on `runtime` (default local) when new; an existing lab keeps its
    runtime, and asking for the other one is an error that says how to start over."""
    problem = runtime_error(runtime)
    if problem:
        raise LabError(problem)
    try:
        the_lab = Lab.open(home, lab_id)
    except LabError:
        return Lab.create(home, lab_id, runtime=runtime or "local", docker_base=base)
    if runtime is not None and runtime != the_lab.manifest.runtime:
        raise LabError(
            f"lab {lab_id} exists on the {the_lab.manifest.runtime} runtime; remove it with "
            f"`simlab lab down --lab {lab_id} --purge` to make it again on {runtime}"
        )
    return the_lab


def open_lab(home: Path | None, lab_id: str) -> Lab:
    try:
        return Lab.open(home_of(home), lab_id)
    except (LabError, ValueError) as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


@app.command()
def up(
    lab: LabOpt = "default",
    home: HomeOpt = None,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Start the lab and return; it keeps running.")
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="Seconds each node may take to become healthy.")
    ] = 30.0,
    runtime: RuntimeOpt = None,
    base: BaseOpt = None,
) -> None:
    """Start a lab (created on first use) and print its endpoints.

    Without --detach the command stays in the foreground, reports nodes that exit, and stops
    the lab on Ctrl-C.
    """
    try:
        the_lab = open_or_create_on(home_of(home), lab, runtime, base)
    except (LabError, ValueError) as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None

    def progress(node_id: str, message: str) -> None:
        console.print(f"  {node_id}: {message}")

    console.print(f"Starting lab [bold]{lab}[/] in {the_lab.paths.root}")
    try:
        the_lab.up(timeout=timeout, progress=progress)
    except LabError as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    statuses = the_lab.status()
    console.print(endpoint_table(lab, statuses))
    console.print(dcmtk_hint(statuses))
    console.print(f"Admin token: {the_lab.paths.token}")
    if detach:
        console.print(f"Lab {lab} is running. Stop it with: simlab lab down --lab {lab}")
        return
    _watch_foreground(the_lab)


def _watch_foreground(the_lab: Lab) -> None:
    """Stay with the lab until Ctrl-C/SIGTERM or until another command takes it down."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    the_lab.manifest.supervisor_pid = os.getpid()
    the_lab._save()
    console.print("Lab is running. Press Ctrl-C to stop it.")
    try:
        while not stop.wait(WATCH_INTERVAL):
            the_lab.reload_manifest()
            if the_lab.manifest.state in ("down", "stopping"):
                console.print("The lab was stopped by another command.")
                return
            for entry in the_lab.poll_exits():
                err_console.print(f"[yellow]node {entry.node_id} exited[/]; see its log.")
    except KeyboardInterrupt:
        pass
    console.print("Stopping the lab…")
    stopped = the_lab.down()
    console.print(f"Stopped: {', '.join(stopped) or 'nothing was running'}")


@app.command()
def status(
    lab: LabOpt = "default",
    home: HomeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show every node's health and endpoints."""
    the_lab = open_lab(home, lab)
    statuses = the_lab.status()
    if as_json:
        rows = [
            {**st.entry.model_dump(mode="json"), "state": st.state, "detail": st.detail}
            for st in statuses
        ]
        for row, st in zip(rows, statuses, strict=True):
            if "links" in st.health:  # the department network: its links and their state
                row["links"] = st.health["links"]
        typer.echo(json.dumps({"lab": lab, "state": the_lab.manifest.state, "nodes": rows}))
        return
    console.print(endpoint_table(lab, statuses))
    if any(st.state != "up" for st in statuses):
        raise typer.Exit(1)


@app.command()
def down(
    lab: LabOpt = "default",
    home: HomeOpt = None,
    purge: Annotated[
        bool, typer.Option("--purge", help="Also delete the lab directory and all its data.")
    ] = False,
) -> None:
    """Stop every node of a lab; nothing is left running."""
    the_lab = open_lab(home, lab)
    if purge:
        the_lab.destroy()
        console.print(f"Lab {lab} stopped and deleted.")
        return
    stopped = the_lab.down()
    console.print(f"Lab {lab} is down (stopped: {', '.join(stopped) or 'nothing was running'}).")


@app.command("list")
def list_(home: HomeOpt = None) -> None:
    """List the labs under the home directory and their state."""
    root = home_of(home)
    labs = list_labs(root)
    if not labs:
        console.print(f"No labs under {root}.")
        return
    for lab_id in labs:
        the_lab = Lab.open(root, lab_id)
        console.print(f"{lab_id}\t{the_lab.manifest.state}\t{the_lab.paths.root}")


@app.command()
def events(
    lab: LabOpt = "default",
    home: HomeOpt = None,
    last: Annotated[int, typer.Option("-n", help="How many of the newest events.")] = 50,
) -> None:
    """Print the lab's event log (nodes started, exited, …)."""
    the_lab = open_lab(home, lab)
    for event in the_lab.events.read(limit=last):
        typer.echo(json.dumps(event, ensure_ascii=False))


@app.command("simulate-day")
def simulate_day_command(
    lab: LabOpt = "default",
    home: HomeOpt = None,
    studies: Annotated[int, typer.Option(min=1, max=2000, help="Orders in the day.")] = 40,
    seed: Annotated[int, typer.Option(help="Decides patients, orders and modalities.")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Play a working day through the running lab and print the reconciliation report.

    Patients are registered and orders placed at the RIS (ADT, ORM), modalities query their
    worklist, perform the procedures (MPPS, C-STORE, storage commitment) and the viewer opens
    every study (C-FIND, C-MOVE). Exit code 1 when any order does not reconcile.
    """
    from rich.progress import Progress

    from simlab.workflow.day import CHECKS, simulate_day

    the_lab = open_lab(home, lab)
    statuses = the_lab.status()
    down = [st.entry.node_id for st in statuses if st.state != "up"]
    if down:
        err_console.print(f"[red]error:[/] nodes not up: {', '.join(down)} (simlab lab up)")
        raise typer.Exit(2)
    clients = {st.entry.node_id: the_lab.client(st.entry.node_id, timeout=120) for st in statuses}
    stations = {
        st.entry.node_id: (st.health["profile"], st.entry.ae_title or "")
        for st in statuses
        if st.entry.role == "modality"
    }
    the_lab.events.append("simulate_day_started", studies=studies, seed=seed)
    with Progress(console=err_console, transient=True) as bar:
        tasks: dict[str, object] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)  # type: ignore[arg-type]

        report = simulate_day(clients, stations, studies=studies, seed=seed, progress=progress)
    the_lab.events.append("simulate_day_finished", ok=report.ok, seconds=report.seconds)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), ensure_ascii=False))
    else:
        console.print(day_table(report, CHECKS))
        good = sum(o.ok for o in report.orders)
        console.print(
            f"{good} of {len(report.orders)} orders reconcile "
            f"(seed {seed}, {report.seconds:.1f} s)."
        )
    if not report.ok:
        raise typer.Exit(1)


@app.command("export-compose")
def export_compose(
    lab: LabOpt = "default",
    home: HomeOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Where to write (default: <lab>/compose.yaml)."),
    ] = None,
    image: Annotated[str, typer.Option(help="The node image the services run.")] = DEFAULT_IMAGE,
) -> None:
    """Write a Compose file for a docker-runtime lab (run it with `docker compose up -d`)."""
    the_lab = open_lab(home, lab)
    target = out or the_lab.paths.root / "compose.yaml"
    try:
        write_compose(the_lab.manifest, the_lab.paths.root, target, image)
    except (ComposeError, OSError) as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    console.print(f"Wrote {target}")
    console.print(
        f"Start it with: cd {the_lab.paths.root} && docker compose -f {target.name} up -d"
    )
