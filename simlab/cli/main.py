"""The `simlab` command."""

from __future__ import annotations

import typer

from simlab.cli import admin_commands, fault_commands, lab_commands, scenario_commands

app = typer.Typer(
    name="simlab",
    help=(
        "simlab: a training lab for PACS administrators. Starts a simulated radiology "
        "department (PACS, RIS, modalities, viewer) speaking real DICOM and HL7."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(lab_commands.app, name="lab")
app.add_typer(admin_commands.app, name="admin")
app.add_typer(fault_commands.app, name="faults")
app.add_typer(scenario_commands.scenario_app, name="scenario")
app.command("run")(scenario_commands.run)
app.command("check")(scenario_commands.check)
app.command("hint")(scenario_commands.hint)
app.command("submit")(scenario_commands.submit)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
