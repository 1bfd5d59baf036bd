"""The one entrypoint form every node uses: `python -m simlab.nodes.<node> --config FILE`.

It parses the command line, loads and validates the config, sets up the node log, reads the
lab's admin token, starts the node and then waits for SIGTERM/SIGINT to stop it cleanly. The
same form runs a node as a local child process or as a container's command.
"""

from __future__ import annotations

import argparse
import errno
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from simlab.common.config import NodeConfig, load_config, resolve

C = TypeVar("C", bound=NodeConfig)

EXIT_CONFIG_ERROR = 2
EXIT_ADDRESS_IN_USE = 3
"""Exit code a node uses when a port is taken, so the runtime can pick other ports and retry."""


class RunnableNode(Protocol):
    """What the runner needs from a node."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def read_token(config_path: Path, config: NodeConfig) -> str:
    """The lab's admin token from the file named in the config (stripped)."""
    token = resolve(config_path, config.admin.token_file).read_text(encoding="utf-8").strip()
    if len(token) < 16:
        raise ValueError("admin token file holds fewer than 16 characters")
    return token


def run_node(
    description: str,
    model: type[C],
    factory: Callable[[Path, C, str], RunnableNode],
    argv: list[str] | None = None,
) -> int:
    """Run a node until it is told to stop; returns the process exit code."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, type=Path, help="node config file (JSON)")
    args = parser.parse_args(argv)
    config_path: Path = args.config.resolve()
    try:
        config = load_config(model, config_path)
        token = read_token(config_path, config)
    except (OSError, ValueError, ValidationError) as exc:
        print(f"{description}: cannot load {config_path}: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR

    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        node = factory(config_path, config, token)
        node.start()
    except OSError as exc:
        print(f"{description}: cannot start: {exc}", file=sys.stderr)
        return EXIT_ADDRESS_IN_USE if exc.errno == errno.EADDRINUSE else 1
    try:
        while not stop.wait(3600):
            pass
    finally:
        node.stop()
    return 0


def config_model_name(model: type[BaseModel]) -> str:
    return model.__name__
