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


def engine(timeout: float = 180.0) -> Any:
    """A connected `docker.DockerClient` (pinged), or DockerUnavailable."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError as exc:  # pragma: no cover - docker is a declared dependency
        raise DockerUnavailable(f"the Docker SDK for Python is not installed: {exc}") from None
    where = os.environ.get("DOCKER_HOST") or "the local socket /var/run/docker.sock"
    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
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
