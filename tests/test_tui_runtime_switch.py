"""The TUI's runtime switch: `r` in the catalog chooses where the next lab runs (local processes
or Docker containers), and a docker boot without an engine fails on the boot screen, in words,
leaving nothing running. No container is started here: DOCKER_HOST names no engine."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from textual.widgets import Label, RichLog, Static

from simlab.runtime.lab import Lab
from simlab.scenarios.catalog import scenario_catalog
from simlab.tui.app import SimlabApp, make_app
from simlab.tui.screens.boot import BootScreen
from simlab.tui.screens.catalog import ScenarioCatalogScreen
from simlab.tui.session import TuiSession
from tests.conftest import node_processes
from tests.pilot_helpers import stop_labs_under, text_of, until

NO_ENGINE = "unix:///nonexistent/docker.sock"


def shown(widget: Label) -> str:
    """The characters a label shows (its markup rendered)."""
    return str(widget.render())


def log_text(log: RichLog) -> str:
    """A RichLog's text with its wrapping undone."""
    return re.sub(r"\s+", " ", " ".join(strip.text.strip() for strip in log.lines))


@pytest.mark.timeout(60)
def test_r_in_the_catalog_switches_the_runtime_shown_and_the_sessions(tmp_path: Path) -> None:
    session = TuiSession(home=tmp_path)
    app: SimlabApp = make_app(session, entries=scenario_catalog())

    async def play() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            catalog = await until(
                pilot,
                lambda: isinstance(app.screen, ScenarioCatalogScreen) and app.screen,
                "the catalog",
                10,
            )
            runtime = catalog.query_one("#runtime", Label)
            preview = catalog.query_one("#preview", Static)
            assert session.runtime == "local"
            assert shown(runtime) == "r Runtime local"
            assert "on the local runtime" in text_of(preview)
            titles = [c.title for c in app.get_system_commands(catalog)]
            assert "Switch runtime to docker" in titles

            await pilot.press("r")
            await until(pilot, lambda: session.runtime == "docker", "the session on docker", 5)
            assert shown(runtime) == "r Runtime docker"
            assert "in Docker containers" in text_of(preview)
            assert "first start builds the image" in text_of(preview)
            titles = [c.title for c in app.get_system_commands(catalog)]
            assert "Switch runtime to local" in titles

            await pilot.press("r")
            await until(pilot, lambda: session.runtime == "local", "the session on local", 5)
            assert shown(runtime) == "r Runtime local"

            app.action_toggle_runtime()  # what the command palette's entry runs
            await until(pilot, lambda: session.runtime == "docker", "the palette's switch", 5)
            assert shown(runtime) == "r Runtime docker"

    asyncio.run(play())


@pytest.mark.timeout(60)
def test_free_play_on_docker_without_an_engine_fails_on_the_boot_screen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)
    session = TuiSession(home=tmp_path, lab_id="freeplay")
    app: SimlabApp = make_app(session, entries=[])

    async def play() -> None:
        async with app.run_test(size=(100, 32)) as pilot:
            await until(
                pilot, lambda: isinstance(app.screen, ScenarioCatalogScreen), "the catalog", 10
            )
            await pilot.press("r")
            await until(pilot, lambda: session.runtime == "docker", "docker chosen", 5)
            await pilot.press("f")
            boot = await until(
                pilot, lambda: isinstance(app.screen, BootScreen) and app.screen, "boot", 5
            )
            assert "in Docker containers" in shown(boot.query_one("#headline", Label))
            await until(pilot, lambda: boot.failed, "the boot to fail", 40)
            text = log_text(boot.query_one("#progress", RichLog))
            assert "Failed:" in text and "Docker engine" in text, text
            assert NO_ENGINE in text, text
            assert app.screen is boot and session.lab is None
            await pilot.press("escape")  # back to the catalog, still on docker
            await until(
                pilot, lambda: isinstance(app.screen, ScenarioCatalogScreen), "the catalog", 5
            )
            assert session.runtime == "docker"

    try:
        asyncio.run(play())
        lab = Lab.open(tmp_path, "freeplay")
        assert lab.manifest.runtime == "docker"
        assert all(e.pid is None and e.container is None for e in lab.manifest.nodes)
        assert not any(lab.node_running(e) for e in lab.manifest.nodes)
        assert node_processes(tmp_path / "labs" / "freeplay") == []
    finally:
        stop_labs_under(tmp_path)  # still with DOCKER_HOST pointing nowhere
