"""Storage faults: the PACS cannot keep what it is sent.

A Storage SCP that cannot store an object answers the C-STORE with 0xA7xx, Refused: Out of
Resources (PS3.4 B.2.3): every modality's send queue fills with failed images while C-ECHO and
queries still work, which is what makes it a trap. Two real causes:

* the archive's quota is reached (``storage.quota_bytes``, a licence or a policy limit);
* the storage filesystem is full: a real ENOSPC. The fault takes a small scratch volume of the
  PACS's own (a tmpfs: under the lab directory when the local lab runs as root, in the PACS's
  container on docker; simlab.runtime.volumes), points the PACS's ``storage.path`` at it (a
  new volume the PACS was moved to) and fills it with a backlog file, so the next object's write
  fails with "No space left on device". Where no volume can be had (a local lab as an ordinary
  user), the fault refuses to inject and says why (faking ENOSPC would teach nothing).

And one of retrieval: the long-term tier. A PACS keeps older studies on a second storage volume
(hierarchical storage management; the index remembers where each object lives). The fault
takes that volume (a scratch volume, as above), migrates the chosen studies to it through the
PACS's own migrate action (the department's history), then takes it away, leaving an empty
read-only filesystem or directory where it was, as a failed NFS export or nearline array looks:
the index lists the studies, their files are gone, and a retrieve ends in 0xA702. Reverting
uncovers the volume and migrates the studies back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import Field

from simlab.client.admin import AdminApiError, path_part
from simlab.faults.base import Fault, FaultContext, FaultError, NodeParams, RevertState, register
from simlab.runtime.volumes import ScratchVolume, VolumeError

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
        volume = _volume(ctx, p.node, "storage")
        with _volume_errors(p.node):
            volume.mount(p.size_kb)
        try:
            inverse = ctx.patch_config(p.node, {"storage": {"path": volume.path}})
        except Exception:
            volume.unmount()
            raise
        state = {"inverse": inverse, "volume": volume.name}
        try:
            with _volume_errors(p.node):
                volume.fill(FILLER_NAME)
        except FaultError:
            self.revert(ctx, state)
            raise
        return state

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        node = self.params.node  # type: ignore[attr-defined]
        ctx.restore_config(node, state["inverse"])
        volume = _volume(ctx, node, "storage")
        with _volume_errors(node):
            volume.remove(FILLER_NAME)
            volume.unmount()


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
        tier = _volume(ctx, p.node, "archive-tier")
        with _volume_errors(p.node):
            tier.mount(p.size_kb)
        state: RevertState = {"tier": tier.path, "studies": []}
        try:
            # The department's history: these studies were migrated to the tier long ago.
            for uid in uids:
                client.post(f"/studies/{path_part(uid)}/migrate", {"storage": tier.path})
                state["studies"].append(uid)
            # The failure: the volume disappears (an empty filesystem now sits where it was).
            with _volume_errors(p.node):
                tier.hide()
        except Exception:
            self.revert(ctx, state)
            raise
        return state

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        node = self.params.node  # type: ignore[attr-defined]
        tier = _volume(ctx, node, "archive-tier")
        with _volume_errors(node):
            tier.reveal()
        client = ctx.client(node, timeout=120)
        for uid in state["studies"]:  # back to online storage, so the tier can go
            try:
                client.post(f"/studies/{path_part(uid)}/migrate", {"storage": ""})
            except AdminApiError as exc:
                if exc.status != 404:  # a study the trainee deleted is no reason to stop
                    raise
        with _volume_errors(node):
            tier.unmount()


def _volume(ctx: FaultContext, node: str, name: str) -> ScratchVolume:
    with _volume_errors(node):
        return ctx.lab.scratch_volume(node, name)


@contextmanager
def _volume_errors(node: str) -> Iterator[None]:
    """A scratch volume's failure is the fault's, named after the node."""
    try:
        yield
    except VolumeError as exc:
        raise FaultError(f"{node}: {exc}") from None
