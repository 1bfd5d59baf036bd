"""`simlab image …`: the container image the Docker runtime runs every node from.

`simlab image base` makes the base image offline (debootstrap + docker import), `simlab image
build` builds the node image from it (cached: a rebuild after a code change is fast), `simlab
image list` shows simlab's images, `simlab image prune` removes earlier builds. Exit 2 when it
cannot be done: no Docker engine, no permission on its socket, no base image, no debootstrap or
not root.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.table import Table

from simlab.cli.output import console, err_console
from simlab.runtime.docker_engine import DockerUnavailable, engine
from simlab.runtime.docker_image import (
    DEFAULT_BASE,
    DEFAULT_SUITE,
    NODE_REPOSITORY,
    ImageError,
    build_image,
    list_images,
    make_base_image,
    prune_images,
)

app = typer.Typer(help="The simlab node image for the Docker runtime: base, build, list.")


def _fail(message: str) -> NoReturn:
    err_console.print(f"[red]error:[/] {message}", markup=True, highlight=False)
    raise typer.Exit(2)


def _client():  # type: ignore[no-untyped-def]
    try:
        return engine()
    except DockerUnavailable as exc:
        _fail(str(exc))


def _progress(line: str) -> None:
    err_console.print(line, markup=False, highlight=False, style="dim")


@app.command("base")
def base(
    tag: Annotated[str, typer.Option(help="Tag of the base image.")] = DEFAULT_BASE,
    suite: Annotated[str, typer.Option(help="Debian suite for debootstrap.")] = DEFAULT_SUITE,
    rootfs: Annotated[
        Path | None,
        typer.Option(help="Import this existing rootfs (with python3) instead of debootstrap."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Make it again even if the tag exists.")] = False,
) -> None:
    """Make the base image offline: a Debian rootfs with python3 (debootstrap --variant=minbase,
    needs root), imported with docker import."""
    client = _client()
    try:
        made = make_base_image(
            client, tag=tag, suite=suite, rootfs=rootfs, force=force, progress=_progress
        )
    except ImageError as exc:
        _fail(str(exc))
    console.print(made, markup=False, highlight=False)


@app.command("build")
def build(
    base: Annotated[
        str | None,
        typer.Option(help=f"Image to build FROM (needs python3). Default: {DEFAULT_BASE}"),
    ] = None,
    repository: Annotated[
        str | None,
        typer.Option(help=f"Repository of the image. Default: {NODE_REPOSITORY}"),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print tag, cached and seconds as JSON.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No build output.")] = False,
) -> None:
    """Build the simlab node image (cached by content: unchanged code returns at once)."""
    client = _client()
    try:
        result = build_image(
            client, base=base, tag=repository, progress=None if quiet else _progress
        )
    except ImageError as exc:
        _fail(str(exc))
    if as_json:
        print(json.dumps(result.as_dict()))
        return
    state = "cached" if result.cached else "built"
    console.print(
        f"{result.tag} ({state} in {result.seconds:.1f} s, from {result.base})",
        markup=False,
        highlight=False,
    )


@app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """simlab's images on the engine, with size and creation time."""
    client = _client()
    images = list_images(client)
    if as_json:
        print(json.dumps([vars(i) for i in images]))
        return
    if not images:
        console.print("no simlab images (make them with `simlab image base`, `simlab image build`)")
        return
    table = Table(title="simlab images", title_justify="left")
    for column in ("tags", "id", "kind", "version", "size", "created (UTC)"):
        table.add_column(column, overflow="fold")
    for img in images:
        table.add_row(
            ", ".join(img.tags) or "<none>",
            img.image_id.removeprefix("sha256:"),
            img.kind,
            img.version,
            f"{img.size / 1e6:.0f} MB",
            img.created,
        )
    console.print(table)


@app.command("prune")
def prune() -> None:
    """Remove earlier node images (all but simlab-node:latest) and untagged simlab images."""
    client = _client()
    removed = prune_images(client)
    console.print(
        f"removed {len(removed)} image(s)" + (": " + ", ".join(removed) if removed else ""),
        markup=False,
        highlight=False,
    )
