"""Reaching a Docker engine, with the errors a user can act on.

The engine is whatever the Docker SDK finds from the environment (DOCKER_HOST, or the local
socket), so a classroom can point simlab at another machine's engine. Every failure to reach it
becomes `DockerUnavailable` whose message says what to do: start an engine, get permission on
its socket, or fix DOCKER_HOST.
"""

from __future__ import annotations

import os
from typing import Any


class DockerUnavailable(RuntimeError):
    """No usable Docker engine; the message says why and what to do."""


API_TIMEOUT = 900.0
"""Seconds one engine call may take. On the vfs storage driver creating a container copies the
whole image, which takes minutes on a loaded machine (a 30 s limit failed a CI run)."""

PING_TIMEOUT = 15.0
"""Seconds to wait for the first answer: an engine that is there answers at once."""


def engine(timeout: float = API_TIMEOUT) -> Any:
    """A connected `docker.DockerClient` (pinged within PING_TIMEOUT), or DockerUnavailable.

    `timeout` bounds each later API call; the ping has its own short limit so that a wrong
    DOCKER_HOST is reported in seconds, not after the long per-call limit.
    """
    try:
        import docker
        from docker.errors import DockerException
    except ImportError as exc:  # pragma: no cover - docker is a declared dependency
        raise DockerUnavailable(f"the Docker SDK for Python is not installed: {exc}") from None
    where = os.environ.get("DOCKER_HOST") or "the local socket /var/run/docker.sock"
    try:
        client = docker.from_env(timeout=int(min(timeout, PING_TIMEOUT)))
        client.ping()
        client.api.timeout = int(timeout)
    except DockerException as exc:
        text = str(exc)
        if "Permission denied" in text or "PermissionError" in text:
            raise DockerUnavailable(
                f"no permission on the Docker socket ({where}): run as root or join the "
                "'docker' group"
            ) from None
        if "No such file" in text or "FileNotFoundError" in text or "Connection refused" in text:
            raise DockerUnavailable(
                f"no Docker engine answers at {where}: start one (Debian: apt-get install "
                "docker.io, then as root `dockerd --storage-driver=vfs &`) or set DOCKER_HOST"
            ) from None
        raise DockerUnavailable(f"cannot use the Docker engine at {where}: {text}") from None
    return client
