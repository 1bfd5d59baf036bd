"""A dcmdump-like view of one DICOM file's header, for the nodes' `GET /instances/{uid}/dump`.

Shared by every node that stores instances (the PACS archive, the viewer's cache), so a trainee
reads the same lines whichever console they open: `(0010,0010) PN [MÜLLER^ANNA]  # PatientName`,
the file meta information first, sequences with their items indented, never the pixel data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

DUMP_VALUE_CHARS = 120
"""A value longer than this is cut in a dump line (with its length shown)."""


def dump_lines(path: Path) -> list[str]:
    """The file's meta header and dataset as dcmdump-like lines, without the pixel data:
    `(0010,0010) PN [MÜLLER^ANNA]  # PatientName`; sequences nest their items indented.

    Raises pydicom's InvalidDicomError, OSError or ValueError for a file it cannot read.
    """
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    lines = ["# File Meta Information"]
    lines += _dump(ds.file_meta, 0) if ds.file_meta is not None else []
    lines += ["# Dataset (pixel data not shown)"]
    return lines + _dump(ds, 0)


def _dump(ds: Dataset, depth: int) -> list[str]:
    pad = "  " * depth
    out = []
    for elem in ds:
        tag = f"({elem.tag.group:04X},{elem.tag.element:04X})"
        name = elem.keyword or elem.name
        if elem.VR == "SQ":
            items = elem.value or []
            out.append(f"{pad}{tag} SQ (Sequence with {len(items)} item(s))  # {name}")
            for n, item in enumerate(items, 1):
                out.append(f"{pad}  (FFFE,E000) na (Item #{n})")
                out += _dump(item, depth + 2)
            continue
        out.append(f"{pad}{tag} {elem.VR} {_dump_value(elem.value)}  # {name}")
    return out


def _dump_value(value: Any) -> str:
    if value is None or value == "":
        return "(no value)"
    if isinstance(value, bytes):
        return f"({len(value)} bytes)"
    if isinstance(value, list | tuple | MultiValue):
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    if len(text) > DUMP_VALUE_CHARS:
        text = text[:DUMP_VALUE_CHARS] + f"… ({len(text)} chars)"
    return f"[{text}]"
