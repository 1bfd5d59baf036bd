"""What an interface engine does to a message between the RIS and one destination.

Two rules per destination (`Hl7Destination` in simlab.common.ris_config): a route filter (which
message types go there at all) and field transforms (e.g. a prefix on OBR-18). Both are applied
when a message is queued, so the queue shows exactly what was (or was not) sent; both are the
kind of configuration that, set wrong, makes a receiver silently drift from the RIS.
"""

from __future__ import annotations

from simlab.common.hl7_messages import escape
from simlab.common.ris_config import FieldTransform


def type_label(kind: str) -> str:
    """The MSH-9 label of a queue kind: `ORM^O01 NW` → `ORM^O01`."""
    return kind.split()[0] if kind else ""


def apply_transforms(text: str, transforms: list[FieldTransform]) -> str:
    """The message text with every transform applied to its non-empty target fields.

    Segments are separated by CR (HL7 v2.5.1 2.5.3); the field separator is MSH-1. Prefix and
    suffix are escaped, so a rule can never break the message structure.
    """
    if not transforms or not text.startswith("MSH"):
        return text
    separator = text[3]
    segments = text.split("\r")
    for rule in transforms:
        name, number = rule.field.split("-")
        index = int(number)
        for i, segment in enumerate(segments):
            fields = segment.split(separator)
            if fields[0] != name or index >= len(fields) or not fields[index]:
                continue
            fields[index] = escape(rule.prefix) + fields[index] + escape(rule.suffix)
            segments[i] = separator.join(fields)
    return "\r".join(segments)
