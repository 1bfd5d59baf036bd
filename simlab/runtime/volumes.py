"""Scratch volumes: a small filesystem of its own that a fault gives a node.

Two storage faults need one: a full disk must be a real ENOSPC from a filesystem that is really
full (faking the error would teach nothing), and a long-term archive tier must be a volume that
can really go away. What a volume is depends on the runtime:

* local: a tmpfs of the asked size mounted under `<lab>/volumes/<node>-<name>`, which needs root
  (CAP_SYS_ADMIN); going away is an empty read-only tmpfs mounted over it, as a failed NFS
  export looks;
* docker: a size-limited tmpfs that the node's container is created with (`TMPFS_KB`, since a
  container cannot mount), used through `docker exec` as the node's own user; its `data`
  directory is what the node is pointed at, and going away swaps in an empty read-only
  directory. No root is needed on the host.

A node is pointed at `volume.path`, the path as the node sees it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

TMPFS_ROOT = "/lab/volumes"
"""Where a node's container has its scratch tmpfs mounts (docker runtime)."""

TMPFS_KB: dict[str, int] = {"storage": 4096, "archive-tier": 262_144}
"""The scratch tmpfs mounts every container is created with, by name, and their size (KiB).
A tmpfs costs memory only for what is written to it."""


def container_tmpfs(uid: int, gid: int) -> dict[str, str]:
    """The tmpfs mounts a node's container is created with: {path: mount options}, owned by
    the node's user (the docker runtime and the Compose export both use this)."""
    return {
        f"{TMPFS_ROOT}/{name}": f"size={kb}k,uid={uid},gid={gid},mode=0700"
        for name, kb in TMPFS_KB.items()
    }


class VolumeError(RuntimeError):
    """The volume could not be made, filled or taken away; the message says why."""


class ScratchVolume(ABC):
    """One small filesystem of one node."""

    name: str
    path: str
    """The directory as the node sees it (what the node's config is pointed at)."""

    @abstractmethod
    def mount(self, size_kb: int) -> None:
        """Make the empty volume (VolumeError when it exists already or cannot be made)."""

    @abstractmethod
    def fill(self, filename: str) -> None:
        """Write `filename` in it until the filesystem is full, to the last byte."""

    @abstractmethod
    def remove(self, filename: str) -> None:
        """Delete `filename` from it (no error when it is gone)."""

    @abstractmethod
    def hide(self) -> None:
        """The volume goes away: an empty read-only directory is where it was."""

    @abstractmethod
    def reveal(self) -> None:
        """Undo `hide`: the volume and what it held are back."""

    @abstractmethod
    def unmount(self) -> None:
        """Take the volume away for good (what a trainee left in it goes with it)."""


# ----------------------------------------------------------------------------------- local
class LocalVolume(ScratchVolume):
    """A tmpfs mounted on the host under the lab directory (root only)."""

    def __init__(self, root: Path, node_id: str, name: str) -> None:
        self.name = name
        self.mount_point = root / "volumes" / f"{node_id}-{name}"
        self.path = str(self.mount_point)

    def mount(self, size_kb: int) -> None:
        if os.path.ismount(self.mount_point):
            raise VolumeError(f"{self.mount_point} is already mounted (is one fault active twice?)")
        _mount_tmpfs(self.mount_point, size_kb)

    def fill(self, filename: str) -> None:
        try:
            fill_until_full(self.mount_point / filename)
        except OSError as exc:
            raise VolumeError(f"cannot fill {self.mount_point}: {exc}") from exc

    def remove(self, filename: str) -> None:
        (self.mount_point / filename).unlink(missing_ok=True)

    def hide(self) -> None:
        _mount_tmpfs(self.mount_point, 64, read_only=True)

    def reveal(self) -> None:
        while _mounts_at(self.mount_point) > 1:  # take away what hides it
            done = subprocess.run(["umount", self.path], capture_output=True, check=False)
            if done.returncode != 0:
                break

    def unmount(self) -> None:
        """Unmount (retrying while busy for a moment, then lazily) and remove the mount point."""
        deadline = time.monotonic() + 5.0
        while os.path.ismount(self.mount_point):
            done = subprocess.run(["umount", self.path], capture_output=True, check=False)
            if done.returncode == 0:
                continue  # a hidden volume has two mounts
            if time.monotonic() > deadline:
                subprocess.run(["umount", "-l", self.path], capture_output=True, check=False)
                break
            time.sleep(0.2)
        with contextlib.suppress(OSError):  # a trainee's file left in it: keep the directory
            self.mount_point.rmdir()


def _mounts_at(mount_point: Path) -> int:
    """How many filesystems are mounted (stacked) at `mount_point`."""
    target = str(mount_point)
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        return sum(1 for line in fh if line.split()[4] == target)


def _mount_tmpfs(mount_point: Path, size_kb: int, *, read_only: bool = False) -> None:
    """Mount a tmpfs of `size_kb` at `mount_point` (over what is there); VolumeError when this
    machine forbids it."""
    if os.geteuid() != 0:
        raise VolumeError(
            "this needs to mount a small filesystem, which needs root (CAP_SYS_ADMIN); this lab "
            "runs as an ordinary user (the docker runtime needs no root for it)"
        )
    mount_point.mkdir(parents=True, exist_ok=True)
    options = f"size={size_kb}k,mode=0755" + (",ro" if read_only else "")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "simlab-storage", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise VolumeError(
            f"cannot mount a tmpfs at {mount_point}: {done.stderr.strip() or done.returncode}"
            " (a container without CAP_SYS_ADMIN cannot mount)"
        )


def fill_until_full(path: Path) -> None:
    """Write until the filesystem is full (ENOSPC), down to the last byte, and fsync."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        chunk = 1 << 16
        while chunk:
            try:
                os.write(fd, b"\0" * chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                chunk //= 2
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------- docker
class DockerVolume(ScratchVolume):
    """The container's own size-limited tmpfs, used through `docker exec` as the node's user.

    The tmpfs is mounted when the container is made, so its size is `TMPFS_KB[name]`, whatever
    a fault asks for (a fault fills it to the last byte, so only `du` shows the difference).
    """

    def __init__(self, container: Any, name: str) -> None:
        if name not in TMPFS_KB:
            raise VolumeError(f"no scratch volume {name!r} in the node's container")
        self.container = container
        self.name = name
        self.base = f"{TMPFS_ROOT}/{name}"
        self.path = f"{self.base}/data"
        self.offline = f"{self.base}/.offline"

    def _exec(self, *argv: str) -> str:
        if self.container is None:
            raise VolumeError(f"scratch volume {self.name}: the node's container is not running")
        try:
            code, output = self.container.exec_run(list(argv))
        except Exception as exc:  # the engine's errors (a paused or stopped container)
            raise VolumeError(f"scratch volume {self.name}: {exc}") from None
        text = output.decode(errors="replace").strip() if output else ""
        if code != 0:
            raise VolumeError(f"scratch volume {self.name}: {' '.join(argv[:2])}: {text}")
        return text

    def mount(self, size_kb: int) -> None:
        self._exec("mkdir", self.path)  # fails when it exists: one fault active twice

    def fill(self, filename: str) -> None:
        self._exec("python", "-m", __name__, "fill", f"{self.path}/{filename}")

    def remove(self, filename: str) -> None:
        self._exec("rm", "-f", f"{self.path}/{filename}")

    def hide(self) -> None:
        self._exec(
            "sh",
            "-c",
            f"mv {self.path} {self.offline} && mkdir {self.path} && chmod 555 {self.path}",
        )

    def reveal(self) -> None:
        back = f"rmdir {self.path} && mv {self.offline} {self.path}"
        self._exec("sh", "-c", f"if [ -d {self.offline} ]; then {back}; fi")

    def unmount(self) -> None:
        self._exec("rm", "-rf", self.path, self.offline)


def main(argv: list[str]) -> int:
    """`python -m simlab.runtime.volumes fill PATH`, run inside a node's container."""
    if len(argv) != 2 or argv[0] != "fill":
        print("usage: python -m simlab.runtime.volumes fill PATH", file=sys.stderr)
        return 2
    try:
        fill_until_full(Path(argv[1]))
    except OSError as exc:
        print(f"cannot fill {argv[1]}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
