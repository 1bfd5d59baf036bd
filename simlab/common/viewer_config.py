"""Configuration of the viewer node: an IHE Image Display (a radiologist's reading workstation).

The viewer has its own Storage SCP (the PACS's C-MOVE destination), an AE table of the peers that
may send to it, and one Query/Retrieve provider (the PACS) it queries (C-FIND) and retrieves from
(C-MOVE to itself, or C-GET). It is built on the base models of `simlab.common.config`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from simlab.common.config import (
    AdminSettings,
    DicomSettings,
    NodeConfig,
    RemoteAe,
    StrictModel,
)
from simlab.common.transfer_syntaxes import ACCEPTED

VIEWER_AE_TITLE = "SIMLAB_VIEWER"
"""The viewer's AE title in a default lab."""
PACS_AE_TITLE = "SIMLAB_PACS"


class RetrieveSettings(StrictModel):
    """How the viewer queries and retrieves a study from its Q/R provider (IHE RAD-14/RAD-16)."""

    provider: RemoteAe = Field(
        default_factory=lambda: RemoteAe(ae_title=PACS_AE_TITLE, host="127.0.0.1", port=104)
    )
    """The Q/R SCP the viewer queries and retrieves from: the PACS's AE title, host and port."""
    query_model: Literal["study_root", "patient_root"] = "study_root"
    """Q/R information model of the C-FIND and C-MOVE/C-GET (PS3.4 C.6.2 / C.6.1)."""
    method: Literal["c-move", "c-get"] = "c-move"
    """C-MOVE with the viewer's own AE title as destination (the PACS must know it and its
    port), or C-GET (the objects come back on the same association)."""
    connect_timeout: float = Field(default=5.0, gt=0, le=300)
    """Seconds to wait for the TCP connection and the A-ASSOCIATE-AC."""
    dimse_timeout: float = Field(default=60.0, gt=0, le=3600)
    """Seconds to wait for each DIMSE response (a hung PACS shows as this timeout)."""
    history: int = Field(default=100, ge=1, le=10_000)
    """How many open attempts GET /opens keeps."""


class ViewerConfig(NodeConfig):
    """The viewer / reading workstation (IHE Image Display)."""

    role: Literal["viewer"] = "viewer"
    dicom: DicomSettings
    """The viewer's own DICOM listener (Storage SCP and Verification) and association policy."""
    ae_table: list[RemoteAe] = Field(default_factory=list)
    """Remote AEs allowed to open associations to the viewer (normally the PACS)."""
    retrieve: RetrieveSettings = Field(default_factory=RetrieveSettings)
    """The Q/R provider and how studies are retrieved from it."""
    accepted_transfer_syntaxes: list[str] = Field(
        default_factory=lambda: list(ACCEPTED),
        min_length=1,
    )
    """Transfer syntaxes the Storage SCP accepts."""

    def ae_entry(self, ae_title: str) -> RemoteAe | None:
        """The AE table entry for a title (trailing spaces are not significant), or None."""
        wanted = ae_title.strip()
        return next((ae for ae in self.ae_table if ae.ae_title == wanted), None)


def viewer_config(
    *,
    dicom_port: int,
    admin_port: int,
    pacs_port: int,
    pacs_host: str = "127.0.0.1",
    pacs_ae_title: str = PACS_AE_TITLE,
    node_id: str = "viewer",
    ae_title: str = VIEWER_AE_TITLE,
    host: str = "127.0.0.1",
) -> ViewerConfig:
    """The viewer of a lab: strict AE policy, the PACS as its only sender and Q/R provider."""
    pacs = RemoteAe(
        ae_title=pacs_ae_title, host=pacs_host, port=pacs_port, description="PACS (Q/R provider)"
    )
    return ViewerConfig(
        node_id=node_id,
        display_name="Reading workstation (Image Display)",
        admin=AdminSettings(host=host, port=admin_port),
        dicom=DicomSettings(ae_title=ae_title, host=host, port=dicom_port),
        ae_table=[pacs],
        retrieve=RetrieveSettings(provider=pacs),
    )
