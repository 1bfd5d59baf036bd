"""Storage faults: the PACS cannot keep what it is sent.

A Storage SCP that cannot store an object answers the C-STORE with 0xA7xx, Refused: Out of
Resources (PS3.4 B.2.3): every modality's send queue fills with failed images while C-ECHO and
queries still work, which is what makes it a trap. Two real causes:

* the archive's quota is reached (``storage.quota_bytes``, a licence or a policy limit);
* the storage filesystem is full: a real ENOSPC. Where the lab runs as root the fault mounts a
  small tmpfs under the lab directory, points the PACS's ``storage.path`` at it (a new volume the
  PACS was moved to) and fills it with a backlog file, so the next object's write fails with
  "No space left on device". Without the right to mount, the fault refuses to inject and says
  why (faking ENOSPC would teach nothing).

And one of retrieval: the long-term tier. A PACS keeps older studies on a second storage volume
(hierarchical storage management; the index remembers where each object lives). The fault mounts
that volume, migrates the chosen studies to it through the PACS's own migrate action (the
department's history), then takes it away by mounting an empty read-only filesystem over it, as
a failed NFS export or nearline array looks: the index lists the studies, their files are gone,
and a retrieve ends in 0xA702. Reverting uncovers the volume and migrates the studies back.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import time
from pathlib import Path

from pydantic import Field

from simlab.client.admin import AdminApiError, path_part
from simlab.faults.base import Fault, FaultContext, FaultError, NodeParams, RevertState, register

FILLER_NAME = "backlog.dump"
"""The file that fills the small volume (a trainee finds it with `du`, as on a real server)."""


class QuotaReachedParams(NodeParams):
    node: str = "pacs"
    headroom_bytes: int = Field(default=0, ge=0)
    """Bytes left below the quota when injected (0: the next object is refused)."""


@register
class QuotaReached(Fault):
    kind = "quota_reached"
    family = "storage"
    title = "The PACS storage quota is reached"
    symptom = (
        "Every C-STORE to the PACS is refused with 0xA700 (Refused: Out of Resources, 'quota "
        "... reached'): the modalities' send queues fill with failed images; C-ECHO, C-FIND and "
        "retrieves of stored studies still work; the PACS stats show bytes_stored at quota_bytes."
    )
    root_cause = (
        "The archive's storage quota (storage.quota_bytes) is set at what is already stored: a "
        "licence or capacity limit nobody raised."
    )
    Params = QuotaReachedParams

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, QuotaReachedParams)
        stored = int(ctx.client(p.node).get("/stats")["bytes_stored"])
        inverse = ctx.patch_config(p.node, {"storage": {"quota_bytes": stored + p.headroom_bytes}})
        return {"inverse": inverse}

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        ctx.restore_config(self.params.node, state["inverse"])  # type: ignore[attr-defined]


class DiskFullParams(NodeParams):
    node: str = "pacs"
    size_kb: int = Field(default=4096, ge=256, le=1_048_576)
    """Size of the small storage volume (tmpfs) the PACS is moved to."""


@register
class DiskFull(Fault):
    kind = "disk_full"
    family = "storage"
    title = "The PACS storage filesystem is full"
    symptom = (
        "Every C-STORE is refused with 0xA700 (Refused: Out of Resources); the PACS log says "
        "'disk full: No space left on device writing the object to <volume>'; the PACS stats "
        "show disk_free_bytes 0. Retrieves of older studies still work."
    )
    root_cause = (
        "The PACS writes new objects to a small volume (storage.path) that a backlog file has "
        "filled: free space (remove the backlog) or move storage.path to a volume with room."
    )
    Params = DiskFullParams

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, DiskFullParams)
        mount_point = ctx.lab.paths.root / "volumes" / f"{p.node}-storage"
        _mount_tmpfs(mount_point, p.size_kb)
        try:
            inverse = ctx.patch_config(p.node, {"storage": {"path": str(mount_point)}})
        except Exception:
            _unmount(mount_point)
            raise
        state = {"inverse": inverse, "mount_point": str(mount_point)}
        try:
            _fill(mount_point / FILLER_NAME)
        except OSError as exc:
            self.revert(ctx, state)
            raise FaultError(f"cannot fill {mount_point}: {exc}") from exc
        return state

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        ctx.restore_config(self.params.node, state["inverse"])  # type: ignore[attr-defined]
        mount_point = Path(state["mount_point"])
        (mount_point / FILLER_NAME).unlink(missing_ok=True)
        _unmount(mount_point)


class ArchiveTierOfflineParams(NodeParams):
    node: str = "pacs"
    study_uids: list[str] = Field(default_factory=list)
    """Studies that live on the long-term tier; empty: the `oldest` studies in the PACS."""
    oldest: int = Field(default=1, ge=1, le=1000)
    """How many of the oldest studies the tier holds when `study_uids` is empty."""
    size_kb: int = Field(default=262_144, ge=1024, le=4_194_304)
    """Size of the tier's volume (tmpfs)."""


@register
class ArchiveTierOffline(Fault):
    kind = "archive_tier_offline"
    family = "storage"
    title = "The PACS's long-term archive tier is offline"
    symptom = (
        "New studies store and open normally, but older studies do not open: the C-MOVE ends "
        "with 0xA702 (unable to perform sub-operations), every instance in the Failed SOP "
        "Instance UID List; the PACS log says 'retrieve: cannot read ...: No such file'; the "
        "PACS stats list the tier's storage directory with online false."
    )
    root_cause = (
        "The PACS keeps older studies on a long-term storage volume (hierarchical storage "
        "management); that volume went away (an NFS export or a nearline array failed, a mount "
        "hidden by another), so the index still lists the studies but their files are gone."
    )
    Params = ArchiveTierOfflineParams

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, ArchiveTierOfflineParams)
        client = ctx.client(p.node, timeout=120)
        uids = list(p.study_uids)
        if not uids:
            studies = client.get("/studies", limit=10_000)  # newest first
            uids = [s["study_uid"] for s in studies[::-1][: p.oldest]]
        if not uids:
            raise FaultError(f"{p.node} holds no study to put on a long-term tier")
        tier = ctx.lab.paths.root / "volumes" / f"{p.node}-archive-tier"
        _mount_tmpfs(tier, p.size_kb)
        state: RevertState = {"tier": str(tier), "studies": []}
        try:
            # The department's history: these studies were migrated to the tier long ago.
            for uid in uids:
                client.post(f"/studies/{path_part(uid)}/migrate", {"storage": str(tier)})
                state["studies"].append(uid)
            # The failure: the volume disappears (an empty filesystem now sits where it was).
            _mount_tmpfs(tier, 64, stacked=True, read_only=True)
        except Exception:
            self.revert(ctx, state)
            raise
        return state

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        tier = Path(state["tier"])
        while _mounts_at(tier) > 1:  # the tier comes back: take away what hides it
            if not _umount_once(tier):
                break
        client = ctx.client(self.params.node, timeout=120)  # type: ignore[attr-defined]
        for uid in state["studies"]:  # back to online storage, so the tier can go
            try:
                client.post(f"/studies/{path_part(uid)}/migrate", {"storage": ""})
            except AdminApiError as exc:
                if exc.status != 404:  # a study the trainee deleted is no reason to stop
                    raise
        _unmount(tier)


def _mounts_at(mount_point: Path) -> int:
    """How many filesystems are mounted (stacked) at `mount_point`."""
    target = str(mount_point)
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        return sum(1 for line in fh if line.split()[4] == target)


def _umount_once(mount_point: Path) -> bool:
    result = subprocess.run(["umount", str(mount_point)], capture_output=True, check=False)
    return result.returncode == 0


def _mount_tmpfs(
    mount_point: Path, size_kb: int, *, stacked: bool = False, read_only: bool = False
) -> None:
    """Mount a tmpfs of `size_kb` at `mount_point` (on top of what is there when `stacked`);
    FaultError when this machine forbids it."""
    if os.geteuid() != 0:
        raise FaultError(
            "this fault needs to mount a small filesystem, which needs root (CAP_SYS_ADMIN); "
            "this lab runs as an ordinary user"
        )
    mount_point.mkdir(parents=True, exist_ok=True)
    if os.path.ismount(mount_point) and not stacked:
        raise FaultError(f"{mount_point} is already mounted (is the same fault active twice?)")
    options = f"size={size_kb}k,mode=0755" + (",ro" if read_only else "")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "simlab-storage", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise FaultError(
            f"cannot mount a tmpfs at {mount_point}: {result.stderr.strip() or result.returncode}"
            " (a container without CAP_SYS_ADMIN cannot mount)"
        )


def _fill(path: Path) -> None:
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


def _unmount(mount_point: Path) -> None:
    """Unmount (retrying while busy for a moment, then lazily) and remove the mount point."""
    deadline = time.monotonic() + 5.0
    while os.path.ismount(mount_point):
        result = subprocess.run(
            ["umount", str(mount_point)], capture_output=True, text=True, check=False
        )
        if result.returncode == 0:
            break
        if time.monotonic() > deadline:
            subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, check=False)
            break
        time.sleep(0.2)
    with contextlib.suppress(OSError):  # a trainee's file left in it: keep the directory
        mount_point.rmdir()
