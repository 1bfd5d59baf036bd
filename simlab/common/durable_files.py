"""Durable file writes: temp file, fsync, rename, fsync of the directory.

A node answers Success to a C-STORE only after the object is on disk in its final place; a crash
at any point leaves either the old state or the new one, plus at most a temp file that the next
start removes. The final name always comes from `safe_paths` (a hash), never from a UID.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

OUT_OF_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
"""errno values that mean "the disk (or quota) is full": a Storage SCP answers 0xA700."""


def fsync_dir(directory: Path) -> None:
    """fsync a directory so that an entry created or renamed in it survives a crash."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(directory: Path, stop_at: Path) -> None:
    """Create `directory` (and missing parents up to `stop_at`), fsyncing each new entry."""
    if directory == stop_at or directory.is_dir():
        return
    ensure_dir(directory.parent, stop_at)
    try:
        os.mkdir(directory)
    except FileExistsError:
        return
    fsync_dir(directory.parent)


def write_durably(tmp_dir: Path, final: Path, chunks: Iterable[bytes], root: Path) -> int:
    """Write `chunks` to `final` durably; returns the bytes written.

    The data goes to a uniquely named file in `tmp_dir` (same file system as `final`), is flushed
    and fsynced, renamed over `final` and the directory fsynced. On error nothing is left behind
    and the OSError propagates (check `OUT_OF_SPACE_ERRNOS`).
    """
    tmp = tmp_dir / f"{uuid.uuid4().hex}.part"
    size = 0
    try:
        with open(tmp, "xb") as fh:
            for chunk in chunks:
                fh.write(chunk)
                size += len(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        ensure_dir(final.parent, root)
        os.replace(tmp, final)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    fsync_dir(final.parent)
    return size


def remove_stale_temp_files(tmp_dir: Path) -> int:
    """Delete unfinished temp files a crash left; returns how many."""
    if not tmp_dir.is_dir():
        return 0
    count = 0
    for path in tmp_dir.iterdir():
        if path.is_file() and path.suffix == ".part":
            path.unlink(missing_ok=True)
            count += 1
    return count
