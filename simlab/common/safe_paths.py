"""File names for objects whose identity comes from untrusted input.

A UID, a patient name or an HL7 field is never used as a path component: it is hashed. This is
why a dataset whose SOP Instance UID is '../../etc/passwd' still lands inside the data directory.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def hashed_name(untrusted: str, suffix: str = "") -> str:
    """A file name derived from an untrusted string: hex SHA-256, nothing of the input."""
    return hashlib.sha256(untrusted.encode("utf-8", "surrogatepass")).hexdigest() + suffix


def fanned_path(root: Path, untrusted: str, suffix: str = "") -> Path:
    """root/ab/cd/<sha256>.suffix: two levels of fan-out keep directories small."""
    name = hashed_name(untrusted, suffix)
    return root / name[:2] / name[2:4] / name


def ensure_inside(root: Path, candidate: Path) -> Path:
    """Return candidate resolved, or raise ValueError when it escapes root."""
    root_resolved = root.resolve()
    resolved = candidate.resolve()
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise ValueError(f"path {candidate} escapes {root}")
    return resolved
