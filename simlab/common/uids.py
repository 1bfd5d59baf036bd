"""simlab's UID root.

A UUID-derived OID (PS3.5 B.2, ITU-T X.667): ``2.25.<a UUID made once for simlab>``. Whoever holds
a UUID may allocate arcs beneath it, so the lab needs no registered root and its UIDs never
collide with a real hospital's. Arcs: ``.1`` implementation class, hashed UIDs of the synthetic
images directly below the root, ``.2`` UIDs the RIS issues (Study Instance UIDs at order time,
MPPS instances it assigns).
"""

SIMLAB_UID_ROOT = "2.25.236181667842161985638185658455794724346"
"""The project root, without a trailing dot (44 characters)."""

RIS_UID_ROOT = f"{SIMLAB_UID_ROOT}.2"
"""Default root of the UIDs the RIS issues."""
