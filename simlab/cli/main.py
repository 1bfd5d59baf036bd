"""The `simlab` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from simlab.cli import (
    admin_commands,
    fault_commands,
    image_commands,
    lab_commands,
    scenario_commands,
)

app = typer.Typer(
    name="simlab",
    help=(
        "simlab: a training lab for PACS administrators. Starts a simulated radiology "
        "department (PACS, RIS, modalities, viewer) speaking real DICOM and HL7."
    ),
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(lab_commands.app, name="lab")
app.add_typer(admin_commands.app, name="admin")
app.add_typer(fault_commands.app, name="faults")
app.add_typer(scenario_commands.scenario_app, name="scenario")
app.add_typer(image_commands.app, name="image")
app.command("run")(scenario_commands.run)
app.command("check")(scenario_commands.check)
app.command("hint")(scenario_commands.hint)
app.command("submit")(scenario_commands.submit)


@app.callback(invoke_without_command=True)
def _default(ctx: typer.Context) -> None:
    """With no command, `simlab` opens the TUI (the scenario catalog)."""
    if ctx.invoked_subcommand is None:
        _open_tui(None, None)


@app.command("tui")
def tui(
    lab: Annotated[
        str | None,
        typer.Option("--lab", "-l", help="Attach to this lab if it runs (else start it here)."),
    ] = None,
    home: Annotated[
        Path | None,
        typer.Option("--home", help="Where labs live. Default: $SIMLAB_HOME or ./.simlab"),
    ] = None,
) -> None:
    """Open the TUI: the scenario catalog, or the dashboard of a running lab (--lab)."""
    _open_tui(home, lab)


def _open_tui(home: Path | None, lab: str | None) -> None:
    from simlab.tui.app import run_tui  # textual loads only when the TUI opens

    run_tui(home, lab)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
