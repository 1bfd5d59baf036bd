"""Starting, watching and stopping one node process on the local runtime."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from simlab.client.admin import AdminApiError, AdminClient


class NodeStartError(RuntimeError):
    """A node did not become healthy; the message names the node and its log."""


@dataclass
class NodeProcess:
    """A running node: its process and how to reach its admin API."""

    node_id: str
    popen: subprocess.Popen[bytes] | None
    pid: int

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return pid_alive(self.pid)

    def exit_code(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def pid_cmdline(pid: int) -> str:
    """The command line of a process ('' when gone), to check a pid file is not stale."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def spawn_node(module: str, config_path: Path, stderr_path: Path) -> NodeProcess:
    """Start `python -m <module> --config <config_path>` in its own session.

    Its own session means a Ctrl-C in the terminal does not hit the node directly (the lab stops
    it in order), and `lab down` can signal the whole process group.
    """
    config_path = config_path.resolve()
    stderr_path.parent.mkdir(parents=True, exist_ok=True)
    with open(stderr_path, "ab") as err:
        popen = subprocess.Popen(
            [sys.executable, "-m", module, "--config", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
            close_fds=True,
            cwd=str(config_path.parent),
        )
    node_id = config_path.parent.name
    return NodeProcess(node_id=node_id, popen=popen, pid=popen.pid)


def wait_healthy(
    proc: NodeProcess,
    client: AdminClient,
    timeout: float,
    log_path: Path,
    stderr_path: Path,
) -> dict:
    """Poll the node's /health until it answers ok; fail fast if the process exits.

    Raises NodeStartError naming the node, the reason and where its log is.
    """
    deadline = time.monotonic() + timeout
    delay = 0.02
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if not proc.alive():
            code = proc.exit_code()
            raise NodeStartError(
                f"node {proc.node_id} exited during start (exit code {code}); "
                f"see {stderr_path} and {log_path}: {_last_line(stderr_path)}"
            )
        try:
            health = client.health()
            if health.get("status") == "ok":
                return health
            last_error = f"health says {health.get('status')}"
        except AdminApiError as exc:
            last_error = exc.message
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)
    raise NodeStartError(
        f"node {proc.node_id} did not become healthy within {timeout:.0f} s ({last_error}); "
        f"see its log {log_path}"
    )


def stop_process(pid: int, grace: float = 5.0) -> bool:
    """SIGTERM the node's process group, wait up to `grace`, then SIGKILL. True if it is gone."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return True
    _signal_group(pgid, signal.SIGTERM)
    _signal_group(pgid, signal.SIGCONT)  # a hung (SIGSTOPped) node must see its SIGTERM
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            _reap(pid)
            return True
        time.sleep(0.02)
    _signal_group(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            _reap(pid)
            return True
        time.sleep(0.02)
    return False


def kill_now(pid: int) -> None:
    """kill -9 the node (a crash, as a fault or a durability test makes one)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5.0
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    _reap(pid)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _reap(pid: int) -> None:
    """Collect the exit status of our own child, waiting until every thread of it is gone.

    The main thread shows as a zombie while the process's other threads still exit (and still
    hold its sockets), so a restart right after a kill must wait for the reap, not the zombie.
    A process that is not our child is reaped by its parent; nothing to wait for here.
    """
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""
