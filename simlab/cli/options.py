"""Options more than one command group shares: the runtime a new lab runs on and its base image."""

from __future__ import annotations

from typing import Annotated

import typer

RUNTIMES = ("local", "docker")
"""The runtimes a lab can be made on (see docs/docker.md)."""

RuntimeOpt = Annotated[
    str | None,
    typer.Option(
        "--runtime",
        help="local (child processes) or docker (containers on the lab's own network); "
        "a new lab is local unless told.",
    ),
]
BaseOpt = Annotated[
    str | None,
    typer.Option(
        "--base", help="Base image of the node image (docker runtime; see docs/docker.md)."
    ),
]


def runtime_error(runtime: str | None) -> str | None:
    """Why `runtime` is not one simlab knows (None when it is, or when none was given)."""
    if runtime is None or runtime in RUNTIMES:
        return None
    return f"unknown runtime {runtime!r}: use {' or '.join(RUNTIMES)}"
