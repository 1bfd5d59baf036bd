"""Service settings that change what a modality writes into its images: the source of data faults.

Two settings of a real modality's service menu break reconciliation at the PACS without breaking
the images: tag overrides (a field engineer's template writes a fixed or empty Patient ID,
Accession Number or Study Instance UID into every image) and the character set (the console
declares one Specific Character Set and writes the bytes of another, so Müller arrives as
MÃ¼ller). Both apply to the generated datasets before they are written to the outbox; every
image stays a valid object of its IOD (the overridden attributes keep their type: an empty
Patient ID is a Type 2 attribute present with no value).
"""

from __future__ import annotations

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from simlab.common.modality_config import AcquisitionSettings

_TEXT_VRS = frozenset({"SH", "LO", "PN", "ST", "LT", "UT", "UC"})
"""VRs whose bytes are in the Specific Character Set (PS3.5 6.1.2); the others are ASCII."""

_DECLARED = {
    "utf8_as_latin1": ("ISO_IR 100", "utf-8"),
    "latin1_as_utf8": ("ISO_IR 192", "latin-1"),
    "latin1_undeclared": (None, "latin-1"),
}
"""Character set mode -> (what the image declares, the codec its bytes are really in)."""


def apply(ds: Dataset, settings: AcquisitionSettings) -> Dataset:
    """Apply the tag overrides, then the character set mode, to one generated image."""
    for keyword, value in settings.tag_overrides.items():
        setattr(ds, keyword, value)
    if settings.character_set_mode != "auto":
        declared, codec = _DECLARED[settings.character_set_mode]
        if _encode_text(ds, codec) or declared is None:
            if declared is None:
                ds.pop(0x00080005, None)
            else:
                ds.SpecificCharacterSet = declared
    return ds


def _encode_text(ds: Dataset, codec: str) -> bool:
    """Replace every non-ASCII text value (in sequences too) by its bytes in `codec`; returns
    whether any was found. pydicom writes a bytes value as it is, whatever is declared."""
    found = False
    for elem in list(ds):
        if elem.VR == "SQ":
            for item in elem.value:
                found = _encode_text(item, codec) or found
            continue
        if elem.VR not in _TEXT_VRS or elem.value is None or isinstance(elem.value, bytes):
            continue
        value = elem.value
        values = list(value) if isinstance(value, MultiValue | list) else [value]
        text = "\\".join(str(v) for v in values)
        if text.isascii():
            continue
        raw = text.encode(codec, errors="replace")
        if len(raw) % 2:
            raw += b" "
        ds[elem.tag] = DataElement(elem.tag, elem.VR, raw)
        found = True
    return found
