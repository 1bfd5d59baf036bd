"""What the Pilot tests share: wait on the app's own state (never a blind sleep), read a Static,
and start a scenario from the catalog the way a trainee does."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from textual.app import App
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import DataTable, Static

from simlab.runtime.lab import Lab, LabError

T = TypeVar("T")


async def until(
    pilot: Pilot[Any], cond: Callable[[], T], what: str, timeout: float = 30, step: float = 0.05
) -> T:
    """Let the app run until `cond()` is truthy and return it (workers finish in threads
    meanwhile); fail after `timeout` seconds naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(step)


def text_of(static: Static) -> str:
    return str(static.content)


async def start_from_catalog(pilot: Pilot[Any], app: App[Any], scenario_id: str) -> None:
    """Pick `scenario_id` in the catalog with the cursor and press Enter, as a trainee does."""
    from simlab.tui.screens.boot import BootScreen
    from simlab.tui.screens.catalog import ScenarioCatalogScreen

    catalog = await until(
        pilot,
        lambda: isinstance(app.screen, ScenarioCatalogScreen) and app.screen,
        "the catalog",
        10,
    )
    ids = [e.scenario.id if e.scenario else "" for e in catalog.shown]
    assert scenario_id in ids, f"{scenario_id} is not in the catalog: {ids}"
    table = catalog.query_one("#scenarios", DataTable)
    table.focus()
    table.move_cursor(row=ids.index(scenario_id))
    await pilot.pause()
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, BootScreen), "the boot screen", 5)


class OneScreenApp(App[None]):
    """An app that shows one screen (built by `factory`) over an empty default screen."""

    TITLE = "simlab"

    def __init__(self, factory: Callable[[], Screen[Any]]) -> None:
        super().__init__()
        self.factory = factory

    def on_mount(self) -> None:
        self.push_screen(self.factory())


def stop_labs_under(home: Path) -> None:
    """Stop whatever lab a test module left running under `home`."""
    for labs in (home / "labs").glob("*"):
        try:
            Lab.open(home, labs.name).down()
        except (LabError, ValueError):
            continue
