"""`simlab run --headless` in one shell, `simlab check / hint / admin / submit` in another —
as a trainee plays, with real processes throughout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import requires_dcmtk
from tests.polling import poll

SIMLAB = [sys.executable, "-m", "simlab"]


def simlab(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SIMLAB_HOME": str(home), "SIMLAB_ACTOR": "alice"}
    return subprocess.run(
        [*SIMLAB, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


@requires_dcmtk
@pytest.mark.timeout(200)
def test_a_trainee_plays_a_scenario_from_the_command_line(tmp_path: Path) -> None:
    env = {**os.environ, "SIMLAB_HOME": str(tmp_path), "SIMLAB_ACTOR": "alice"}
    runner = subprocess.Popen(
        [*SIMLAB, "run", "ct-wrong-called-ae", "--headless"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert runner.stdout is not None
        for line in runner.stdout:
            lines.append(line)
            if "simlab submit" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(90), "".join(lines)
        text = "".join(lines)
        assert "This morning's CT head is not in the PACS" in text
        assert "${" not in text, "ticket placeholders were not filled"

        checked = simlab(tmp_path, "check", "--json")
        assert checked.returncode == 0, checked.stderr
        objectives = {o["id"]: o for o in json.loads(checked.stdout)}
        assert objectives["ct_verifies"]["ok"] is False
        assert "1/1/7" in objectives["ct_verifies"]["evidence"]

        hint = simlab(tmp_path, "hint", "nudge", "--yes")
        assert hint.returncode == 0 and "send queue" in hint.stdout

        bad = simlab(tmp_path, "admin", "set", "ct-1", "destination.ae_title")
        assert bad.returncode != 0  # a wrong CLI argument is refused, not a crash

        fixed = simlab(tmp_path, "admin", "set", "ct-1", "destination.ae_title", "SIMLAB_PACS")
        assert fixed.returncode == 0, fixed.stderr
        retried = simlab(tmp_path, "admin", "queue", "ct-1", "retry")
        assert retried.returncode == 0, retried.stderr

        state = poll(
            lambda: json.loads(simlab(tmp_path, "check", "--json").stdout),
            lambda objectives: all(o["ok"] for o in objectives),
            60,
            "every objective",
            0.5,
            fail=False,
        )
        assert [o["id"] for o in state if not o["ok"]] == []

        submitted = simlab(tmp_path, "submit", "--answer", "root_cause=a", "--json")
        assert submitted.returncode == 0, submitted.stderr
        report = json.loads(submitted.stdout)
        assert report["actor"] == "alice"
        assert report["score"]["categories"]["hints"] == -5
        assert report["score"]["percent"] == pytest.approx(100 * 105 / 110, abs=0.1)
        actions = [t for t in report["timeline"] if t["kind"] == "action"]
        assert any("config.set" in t["detail"] and t["actor"] == "alice" for t in actions)
        assert runner.wait(60) == 0  # the runner sees the submit and stops the lab
        assert "Stopping the lab" in "".join(lines)
        again = simlab(tmp_path, "submit", "--answer", "root_cause=a")
        assert again.returncode == 1 and "already submitted" in again.stderr
    finally:
        if runner.poll() is None:
            runner.terminate()
            runner.wait(30)
