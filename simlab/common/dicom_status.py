"""Named DICOM status codes and association rejection reasons.

Handlers return these names, never bare hex, so a reader sees which failure a hospital system
would report. References: PS3.7 Annex C (DIMSE statuses), PS3.4 (service-specific statuses),
PS3.8 9.3.4 (A-ASSOCIATE-RJ) and 9.3.8 (A-ABORT).
"""

from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    """DIMSE status values used by simlab's SCPs and reported by its SCUs."""

    SUCCESS = 0x0000
    # PS3.7 C.4 general statuses (N-services, also used by some C-services)
    PROCESSING_FAILURE = 0x0110
    DUPLICATE_SOP_INSTANCE = 0x0111
    NO_SUCH_SOP_INSTANCE = 0x0112
    NO_SUCH_ATTRIBUTE = 0x0105
    INVALID_ATTRIBUTE_VALUE = 0x0106
    MISSING_ATTRIBUTE = 0x0120
    MISSING_ATTRIBUTE_VALUE = 0x0121
    CLASS_INSTANCE_CONFLICT = 0x0119
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    NO_SUCH_ACTION_TYPE = 0x0123
    RESOURCE_LIMITATION = 0x0213
    DUPLICATE_TRANSACTION_UID = 0x0131
    NOT_AUTHORISED = 0x0124
    UNRECOGNISED_OPERATION = 0x0211
    # PS3.4 B.2.3 Storage
    OUT_OF_RESOURCES = 0xA700
    DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    CANNOT_UNDERSTAND = 0xC000
    COERCION_OF_DATA_ELEMENTS = 0xB000
    # PS3.4 C.4 Query/Retrieve
    FIND_OUT_OF_RESOURCES = 0xA700
    UNABLE_TO_CALCULATE_MATCHES = 0xA701
    UNABLE_TO_PERFORM_SUBOPERATIONS = 0xA702
    MOVE_DESTINATION_UNKNOWN = 0xA801
    IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    UNABLE_TO_PROCESS = 0xC001
    SUBOPERATIONS_COMPLETE_WITH_FAILURES = 0xB000
    CANCEL = 0xFE00
    PENDING = 0xFF00
    PENDING_OPTIONAL_KEYS_NOT_SUPPORTED = 0xFF01


class RejectResult(IntEnum):
    """A-ASSOCIATE-RJ Result field (PS3.8 9.3.4)."""

    PERMANENT = 1
    TRANSIENT = 2


class RejectSource(IntEnum):
    """A-ASSOCIATE-RJ Source field (PS3.8 9.3.4)."""

    SERVICE_USER = 1
    SERVICE_PROVIDER_ACSE = 2
    SERVICE_PROVIDER_PRESENTATION = 3


class UserRejectReason(IntEnum):
    """A-ASSOCIATE-RJ reasons when the source is the service user (PS3.8 9.3.4)."""

    NO_REASON = 1
    APPLICATION_CONTEXT_NOT_SUPPORTED = 2
    CALLING_AE_NOT_RECOGNISED = 3
    CALLED_AE_NOT_RECOGNISED = 7


class ContextResult(IntEnum):
    """Presentation context result in A-ASSOCIATE-AC (PS3.8 9.3.3.2)."""

    ACCEPTANCE = 0
    USER_REJECTION = 1
    NO_REASON = 2
    ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
    TRANSFER_SYNTAXES_NOT_SUPPORTED = 4


REJECT_RESULT_TEXT: dict[int, str] = {1: "rejected-permanent", 2: "rejected-transient"}
REJECT_SOURCE_TEXT: dict[int, str] = {
    RejectSource.SERVICE_USER: "service-user",
    RejectSource.SERVICE_PROVIDER_ACSE: "service-provider (ACSE)",
    RejectSource.SERVICE_PROVIDER_PRESENTATION: "service-provider (presentation)",
}
REJECT_REASON_TEXT: dict[tuple[int, int], str] = {
    (RejectSource.SERVICE_USER, UserRejectReason.NO_REASON): "no reason given",
    (RejectSource.SERVICE_USER, UserRejectReason.APPLICATION_CONTEXT_NOT_SUPPORTED): (
        "application context name not supported"
    ),
    (RejectSource.SERVICE_USER, UserRejectReason.CALLING_AE_NOT_RECOGNISED): (
        "calling AE title not recognised"
    ),
    (RejectSource.SERVICE_USER, UserRejectReason.CALLED_AE_NOT_RECOGNISED): (
        "called AE title not recognised"
    ),
    (RejectSource.SERVICE_PROVIDER_ACSE, 1): "no reason given",
    (RejectSource.SERVICE_PROVIDER_ACSE, 2): "protocol version not supported",
    (RejectSource.SERVICE_PROVIDER_PRESENTATION, 1): "temporary congestion",
    (RejectSource.SERVICE_PROVIDER_PRESENTATION, 2): "local limit exceeded",
}
"""A-ASSOCIATE-RJ (source, reason) in the words of PS3.8 9.3.4, for every log and console."""

CONTEXT_RESULT_TEXT: dict[int, str] = {
    ContextResult.USER_REJECTION: "user rejection",
    ContextResult.NO_REASON: "no reason (provider rejection)",
    ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED: "abstract syntax not supported",
    ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED: "transfer syntaxes not supported",
}
"""Presentation context results of an A-ASSOCIATE-AC (PS3.8 9.3.3.2)."""


def reject_reason_text(source: int, reason: int) -> str:
    return REJECT_REASON_TEXT.get((int(source), int(reason)), f"reason {reason}")


def describe(status: int) -> str:
    """A short human text for a status value, as shown in consoles and logs."""
    texts = {
        0x0000: "Success",
        0x0110: "Processing failure",
        0x0111: "Duplicate SOP Instance",
        0x0112: "No such SOP Instance",
        0x0119: "Class-instance conflict",
        0x0120: "Missing attribute",
        0x0121: "Missing attribute value",
        0x0123: "No such action type",
        0x0131: "Duplicate transaction UID",
        0x0213: "Resource limitation",
        0x0122: "SOP Class not supported",
        0xA700: "Refused: Out of resources",
        0xA701: "Refused: Out of resources - unable to calculate number of matches",
        0xA702: "Refused: Out of resources - unable to perform sub-operations",
        0xA801: "Refused: Move destination unknown",
        0xA900: "Error: Data set does not match SOP class",
        0xB000: "Warning",
        0xC000: "Error: Cannot understand",
        0xC001: "Error: Unable to process",
        0xFE00: "Cancelled",
        0xFF00: "Pending",
        0xFF01: "Pending (optional keys not supported)",
    }
    if status in texts:
        return texts[status]
    if 0xA700 <= status <= 0xA7FF:
        return "Refused: Out of resources"
    if 0xC000 <= status <= 0xCFFF:
        return "Error: Cannot understand"
    return "Unknown status"


def hex_status(status: int) -> str:
    """Format a status the way DCMTK and vendor logs print it: 0xA700."""
    return f"0x{status:04X}"
