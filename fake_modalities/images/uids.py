"""UIDs of the synthetic images: one project root, every UID derived from a seed.

The root is a UUID-derived OID (PS3.5 B.2, ITU-T X.667): ``2.25.<a UUID made once for simlab>``.
Whoever holds a UUID may allocate arcs beneath it, so the lab needs no registered root, and its
UIDs never collide with a real hospital's. Every UID below the root is a hash of the seed and
what the UID names (study, series, instance...), so the same seed always gives the same UIDs.
"""

from __future__ import annotations

import json

from pydicom.uid import UID, generate_uid

from simlab.common.uids import SIMLAB_UID_ROOT

UID_ROOT = f"{SIMLAB_UID_ROOT}."
"""The simlab UID root (with its trailing dot); 45 characters, so 19 digits remain per UID."""

IMPLEMENTATION_CLASS_UID = UID(UID_ROOT + "1")
"""Implementation Class UID (0002,0012) the fake modalities write in their file meta."""

IMPLEMENTATION_VERSION_NAME = "SIMLAB_FM_1"
"""Implementation Version Name (0002,0013), at most 16 characters."""


def derive_uid(*parts: object) -> UID:
    """A UID under UID_ROOT that depends only on `parts` (e.g. seed, "series", number).

    The parts are serialised as one JSON list, so ("1", "23") and ("12", "3") differ.
    """
    key = json.dumps([str(p) for p in parts], separators=(",", ":"))
    return generate_uid(prefix=UID_ROOT, entropy_srcs=[key])
