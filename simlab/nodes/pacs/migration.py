"""Study migration between storage directories: the PACS's hierarchical storage management.

A real archive moves older studies from its online storage to a long-term tier (a nearline
volume, an NFS export) and back; the index remembers where each object lives, so a retrieve
reads it wherever it is, and fails where the tier is unreachable. Each object is copied into
the target's temp directory, fsynced, renamed into place, the directory fsynced, its index row
moved, and only then the old copy removed: a crash leaves a duplicate, never a loss.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from typing import TYPE_CHECKING, Any

from simlab.common.safe_paths import fanned_path

if TYPE_CHECKING:
    from simlab.nodes.pacs.archive import Archive


class MigrationError(ValueError):
    """The migration is refused (unknown target directory); the text says why."""


def migrate_study(archive: Archive, study_uid: str, storage: str) -> dict[str, Any]:
    """Move a study's objects to the storage directory `storage` ('' for the default).

    Raises KeyError for an unknown study, MigrationError when the target is not a directory,
    OSError when a file cannot be copied (what was moved so far stays moved and indexed).
    """
    rows = archive.index.study_instances(study_uid)
    if not rows:
        raise KeyError(study_uid)
    root = archive.root_key(storage)
    base = archive.root_dir(root)
    if not base.is_dir():
        raise MigrationError(f"storage directory {base} does not exist (not mounted?)")
    tmp_dir = base / ".incoming" if root else archive.tmp_dir
    tmp_dir.mkdir(exist_ok=True)
    moved = 0
    for row in rows:
        if (row["root"] or "") == root:
            continue
        source = archive.path_of(row)
        target = fanned_path(base, row["sop_uid"], ".dcm")
        tmp = tmp_dir / f"{uuid.uuid4().hex}.part"
        try:
            shutil.copyfile(source, tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(target.parent)
        archive.index.set_location(row["sop_uid"], root, target.relative_to(base).as_posix())
        with contextlib.suppress(OSError):
            source.unlink()
        moved += 1
    return {"study_uid": study_uid, "storage": str(base), "moved": moved, "instances": len(rows)}


def _fsync_dir(directory: os.PathLike[str]) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
