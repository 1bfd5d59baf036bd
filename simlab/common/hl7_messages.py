"""HL7 v2 messages: read an inbound message, check its MSH, and build the ACK that answers it.

Shared by every node that receives HL7 (the PACS now, the RIS later). Parsing uses hl7apy in
tolerant mode without group detection, so a real-world message with an extra Z-segment or a
field longer than the standard allows is still read; the checks a receiver must make (who the
message is for, its type, processing ID and version) are made here, explicitly, and each failure
names the HL7 table 0357 code an interface analyst expects to see in the ACK's ERR segment.

References: HL7 v2.5 chapter 2 (2.9 acknowledgement rules, 2.15.5 ERR, 2.15.8 MSA, 2.15.9 MSH),
table 0357 (message error condition codes), table 0211 (character sets), table 0103 (processing
ID). MSH-5/MSH-6 are HD values from user tables 0361/0362, so an unknown receiver is a "table
value not found" (103).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message, Segment
from hl7apy.parser import parse_message

SUPPORTED_VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1")
"""MSH-12 versions this lab understands (what IHE Radiology SWF uses)."""
PROCESSING_IDS = ("P", "T", "D")
"""HL7 table 0103: production, training, debugging."""
DEFAULT_ENCODING_CHARACTERS = "^~\\&"
_ACK_LIBRARY_VERSION = "2.5"
"""hl7apy library used to build every ACK: it has the v2.5 ERR-2..ERR-8 fields; MSH-12 still
echoes the inbound version."""


class AckCode(StrEnum):
    """MSA-1 acknowledgement code, original mode (HL7 table 0008)."""

    ACCEPT = "AA"
    ERROR = "AE"
    REJECT = "AR"


class ErrorCode(IntEnum):
    """HL7 table 0357, message error condition codes (ERR-3 in v2.5)."""

    MESSAGE_ACCEPTED = 0
    SEGMENT_SEQUENCE_ERROR = 100
    REQUIRED_FIELD_MISSING = 101
    DATA_TYPE_ERROR = 102
    TABLE_VALUE_NOT_FOUND = 103
    UNSUPPORTED_MESSAGE_TYPE = 200
    UNSUPPORTED_EVENT_CODE = 201
    UNSUPPORTED_PROCESSING_ID = 202
    UNSUPPORTED_VERSION_ID = 203
    UNKNOWN_KEY_IDENTIFIER = 204
    DUPLICATE_KEY_IDENTIFIER = 205
    APPLICATION_RECORD_LOCKED = 206
    APPLICATION_INTERNAL_ERROR = 207

    @property
    def text(self) -> str:
        """The table's description, sent in ERR-3.2."""
        return _ERROR_TEXT[self]


_ERROR_TEXT = {
    ErrorCode.MESSAGE_ACCEPTED: "Message accepted",
    ErrorCode.SEGMENT_SEQUENCE_ERROR: "Segment sequence error",
    ErrorCode.REQUIRED_FIELD_MISSING: "Required field missing",
    ErrorCode.DATA_TYPE_ERROR: "Data type error",
    ErrorCode.TABLE_VALUE_NOT_FOUND: "Table value not found",
    ErrorCode.UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    ErrorCode.UNSUPPORTED_EVENT_CODE: "Unsupported event code",
    ErrorCode.UNSUPPORTED_PROCESSING_ID: "Unsupported processing id",
    ErrorCode.UNSUPPORTED_VERSION_ID: "Unsupported version id",
    ErrorCode.UNKNOWN_KEY_IDENTIFIER: "Unknown key identifier",
    ErrorCode.DUPLICATE_KEY_IDENTIFIER: "Duplicate key identifier",
    ErrorCode.APPLICATION_RECORD_LOCKED: "Application record locked",
    ErrorCode.APPLICATION_INTERNAL_ERROR: "Application internal error",
}

CHARSETS: Mapping[str, str] = {
    "": "latin-1",
    "ASCII": "latin-1",
    "8859/1": "latin-1",
    "8859/2": "iso8859_2",
    "8859/3": "iso8859_3",
    "8859/4": "iso8859_4",
    "8859/5": "iso8859_5",
    "8859/6": "iso8859_6",
    "8859/7": "iso8859_7",
    "8859/8": "iso8859_8",
    "8859/9": "iso8859_9",
    "8859/15": "iso8859_15",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
}
"""MSH-18 (HL7 table 0211) to Python codec. No MSH-18 means ASCII; it is read as Latin-1, its
superset, so a stray accented byte from a sloppy sender shows instead of failing. 'UTF-8' is not
a table value but is common in the wild and unambiguous."""


@dataclass(frozen=True)
class ErrorLocation:
    """Where an error is (ERR-2, ERL type): segment ID, its sequence, the field number."""

    segment: str
    sequence: int = 1
    field: int | None = None

    def er7(self) -> str:
        """ERR-2 components, e.g. ``PID^1^3``."""
        return "^".join(
            [self.segment, str(self.sequence)] + ([str(self.field)] if self.field else [])
        )

    def label(self) -> str:
        """How a person names it, e.g. ``PID-3``."""
        return f"{self.segment}-{self.field}" if self.field else self.segment


class Hl7Error(Exception):
    """A message that cannot be accepted, with everything its ACK must say.

    Args:
        ack_code: AR for a rejected header (who/what/version), AE for an error in the content.
        code: Table 0357 condition code.
        text: Human explanation, sent in MSA-3 and ERR-8 and written to the node log.
        location: The segment/field at fault, if any.
    """

    def __init__(
        self,
        ack_code: AckCode,
        code: ErrorCode,
        text: str,
        location: ErrorLocation | None = None,
    ) -> None:
        super().__init__(text)
        self.ack_code = ack_code
        self.code = code
        self.text = text
        self.location = location


def rejected(code: ErrorCode, text: str, location: ErrorLocation | None = None) -> Hl7Error:
    """An AR: the message is refused for what its header says (MSH-5/6/9/11/12)."""
    return Hl7Error(AckCode.REJECT, code, text, location)


def application_error(
    code: ErrorCode, text: str, location: ErrorLocation | None = None
) -> Hl7Error:
    """An AE: the header is fine but the content could not be processed."""
    return Hl7Error(AckCode.ERROR, code, text, location)


@dataclass(frozen=True)
class MshHeader:
    """The MSH fields a receiver needs, read by hand so even a message hl7apy cannot parse
    (unsupported version, unknown type) can be answered with a proper ACK."""

    field_separator: str = "|"
    encoding_characters: str = DEFAULT_ENCODING_CHARACTERS
    sending_application: str = ""
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    message_type: str = ""
    trigger_event: str = ""
    message_structure: str = ""
    control_id: str = ""
    processing_id: str = ""
    version: str = ""
    charset: str = ""

    @property
    def type_label(self) -> str:
        """``ADT^A08`` (or just ``ADT`` when the event is missing)."""
        if not self.message_type:
            return "?"
        return (
            f"{self.message_type}^{self.trigger_event}" if self.trigger_event else self.message_type
        )

    @property
    def sender(self) -> str:
        """``RIS/HOSPITAL`` from MSH-3/MSH-4."""
        return f"{self.sending_application or '?'}/{self.sending_facility or '?'}"


@dataclass
class InboundMessage:
    """A decoded inbound message: raw bytes, text, header and the hl7apy tree."""

    raw: bytes
    text: str
    codec: str
    header: MshHeader
    message: Message
    warnings: list[str] = field(default_factory=list)

    def segments(self, name: str) -> list[Segment]:
        """Every top-level segment with this ID, in message order."""
        return [child for child in self.message.children if child.name == name]

    def segment(self, name: str) -> Segment | None:
        """The first segment with this ID, or None."""
        found = self.segments(name)
        return found[0] if found else None

    def segment_names(self) -> list[str]:
        """Segment IDs in message order, e.g. ['MSH', 'EVN', 'PID', 'PV1']."""
        return [child.name for child in self.message.children]

    def value(
        self, segment: Segment | None, field_no: int, component: int = 1, repetition: int = 0
    ) -> str:
        """One component of one field repetition, unescaped; '' when absent."""
        if segment is None:
            return ""
        return component_value(segment, field_no, component, repetition, self.header)

    def components(self, segment: Segment | None, field_no: int, repetition: int = 0) -> list[str]:
        """Every component of one field repetition, unescaped."""
        if segment is None:
            return []
        return field_components(segment, field_no, repetition, self.header)

    def repetitions(self, segment: Segment | None, field_no: int) -> int:
        """How many repetitions a field has (0 when empty)."""
        if segment is None:
            return 0
        return len(segment.children.get(f"{segment.name}_{field_no}"))


def normalise_segments(text: str) -> str:
    """Segments end with CR (HL7 2.5 2.7.1); senders that use LF or CRLF are tolerated."""
    return text.replace("\r\n", "\r").replace("\n", "\r")


def _split_header(text: str) -> tuple[str, str, list[str]]:
    """(field separator, encoding characters, MSH fields with fields[n] = MSH-n)."""
    first = normalise_segments(text).split("\r", 1)[0]
    if not first.startswith("MSH") or len(first) < 8:
        raise rejected(
            ErrorCode.SEGMENT_SEQUENCE_ERROR,
            "the message does not start with a readable MSH segment",
            ErrorLocation("MSH"),
        )
    separator = first[3]
    parts = first.split(separator)
    encoding = parts[1] if len(parts) > 1 else ""
    if len(encoding) == 3:  # some old senders omit the subcomponent separator
        encoding += "&"
    if len(encoding) != 4 or len(set(encoding + separator)) != 5 or separator.isalnum():
        raise rejected(
            ErrorCode.DATA_TYPE_ERROR,
            f"MSH-1/MSH-2 delimiters {separator + encoding!r} are not valid",
            ErrorLocation("MSH", 1, 2),
        )
    # parts[0] is "MSH"; MSH-1 is the separator itself, so MSH-n is parts[n - 1].
    return separator, encoding[:4], ["MSH", separator, *parts[1:]]


def read_header(text: str) -> MshHeader:
    """Read the MSH fields from a message's text.

    Raises:
        Hl7Error: AR when there is no readable MSH segment.
    """
    separator, encoding, fields = _split_header(text)

    def part(n: int, component: int = 1) -> str:
        raw = fields[n] if n < len(fields) else ""
        raw = raw.split(encoding[1], 1)[0]  # first repetition
        pieces = raw.split(encoding[0])
        value = pieces[component - 1] if component <= len(pieces) else ""
        return unescape(value.strip(), encoding)

    return MshHeader(
        field_separator=separator,
        encoding_characters=encoding,
        sending_application=part(3),
        sending_facility=part(4),
        receiving_application=part(5),
        receiving_facility=part(6),
        message_type=part(9, 1).upper(),
        trigger_event=part(9, 2).upper(),
        message_structure=part(9, 3).upper(),
        control_id=part(10),
        processing_id=part(11).upper(),
        version=part(12),
        charset=part(18).upper(),
    )


def read_raw_header(raw: bytes) -> MshHeader:
    """Read the MSH of raw bytes before the charset is known (MSH is ASCII in practice)."""
    return read_header(raw.decode("latin-1"))


def validate_header(
    header: MshHeader,
    *,
    application: str,
    facility: str,
    supported: Mapping[str, Collection[str]],
) -> None:
    """Check that the message is for us and of a kind we take; raise an AR otherwise.

    The order follows what an interface analyst checks first: who it is for (MSH-5/6), what it
    is (MSH-9), how it is meant (MSH-11), which version (MSH-12), how it is encoded (MSH-18).

    Args:
        header: The inbound MSH.
        application: Our application name (MSH-5 must equal it).
        facility: Our facility name (MSH-6 must equal it).
        supported: Message types to their supported trigger events, e.g. {"ADT": {"A01"}}.

    Raises:
        Hl7Error: AR with the table 0357 code of the first failed check.
    """
    _check_identity(header, application, facility)
    _check_type(header, supported)
    if header.processing_id not in PROCESSING_IDS:
        raise rejected(
            ErrorCode.UNSUPPORTED_PROCESSING_ID,
            f"MSH-11 processing ID '{header.processing_id}' is not P, T or D",
            ErrorLocation("MSH", 1, 11),
        )
    if header.version not in SUPPORTED_VERSIONS:
        raise rejected(
            ErrorCode.UNSUPPORTED_VERSION_ID,
            f"MSH-12 version '{header.version}' is not supported ({', '.join(SUPPORTED_VERSIONS)})",
            ErrorLocation("MSH", 1, 12),
        )
    if header.charset not in CHARSETS:
        raise rejected(
            ErrorCode.TABLE_VALUE_NOT_FOUND,
            f"MSH-18 character set '{header.charset}' is not supported"
            " (UNICODE UTF-8, 8859/n or empty for ASCII)",
            ErrorLocation("MSH", 1, 18),
        )


def _check_identity(header: MshHeader, application: str, facility: str) -> None:
    if not header.control_id:
        raise rejected(
            ErrorCode.REQUIRED_FIELD_MISSING,
            "MSH-10 message control ID is empty",
            ErrorLocation("MSH", 1, 10),
        )
    if header.receiving_application != application:
        raise rejected(
            ErrorCode.TABLE_VALUE_NOT_FOUND,
            f"MSH-5 '{header.receiving_application}' is not this system ({application})",
            ErrorLocation("MSH", 1, 5),
        )
    if header.receiving_facility != facility:
        raise rejected(
            ErrorCode.TABLE_VALUE_NOT_FOUND,
            f"MSH-6 '{header.receiving_facility}' is not this facility ({facility})",
            ErrorLocation("MSH", 1, 6),
        )


def _check_type(header: MshHeader, supported: Mapping[str, Collection[str]]) -> None:
    if not header.message_type:
        raise rejected(
            ErrorCode.REQUIRED_FIELD_MISSING,
            "MSH-9 message type is empty",
            ErrorLocation("MSH", 1, 9),
        )
    events = supported.get(header.message_type)
    if events is None:
        raise rejected(
            ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
            f"message type '{header.message_type}' is not supported"
            f" (accepted: {', '.join(sorted(supported))})",
            ErrorLocation("MSH", 1, 9),
        )
    if header.trigger_event not in events:
        raise rejected(
            ErrorCode.UNSUPPORTED_EVENT_CODE,
            f"event '{header.message_type}^{header.trigger_event}' is not supported"
            f" (accepted: {', '.join(f'{header.message_type}^{e}' for e in sorted(events))})",
            ErrorLocation("MSH", 1, 9),
        )


def decode(raw: bytes, charset: str) -> tuple[str, str, list[str]]:
    """Decode message bytes per MSH-18; return (text, codec, warnings).

    Bytes that do not fit the declared set are replaced, not refused: a declared/actual mismatch
    is a data fault that must show the way it does in a hospital (garbled names), with a warning
    in the log that names the cause.
    """
    codec = CHARSETS.get(charset, "latin-1")
    warnings: list[str] = []
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError as exc:
        text = raw.decode(codec, errors="replace")
        declared = charset or "ASCII (no MSH-18)"
        warnings.append(
            f"bytes at offset {exc.start} are not valid {declared}; replaced with U+FFFD"
        )
    return normalise_segments(text), codec, warnings


def parse_inbound(raw: bytes, header: MshHeader | None = None) -> InboundMessage:
    """Decode and parse one message (its header already validated).

    Raises:
        Hl7Error: AR when there is no readable MSH; AE 102 when hl7apy cannot parse the rest.
    """
    first = header if header is not None else read_raw_header(raw)
    text, codec, warnings = decode(raw, first.charset)
    decoded_header = read_header(text)
    version = decoded_header.version if decoded_header.version in SUPPORTED_VERSIONS else "2.5"
    try:
        message = parse_message(
            _with_version(text, decoded_header, version),
            validation_level=VALIDATION_LEVEL.TOLERANT,
            find_groups=False,
        )
    except Exception as exc:  # hl7apy raises many types; all mean "could not parse"
        raise application_error(
            ErrorCode.DATA_TYPE_ERROR, f"message could not be parsed: {exc}"
        ) from exc
    return InboundMessage(raw, text, codec, decoded_header, message, warnings)


def _with_version(text: str, header: MshHeader, version: str) -> str:
    """The text with MSH-12 replaced when hl7apy has no library for the declared version."""
    if header.version == version:
        return text
    sep = header.field_separator
    first, _, rest = text.partition("\r")
    fields = first.split(sep)
    while len(fields) < 12:
        fields.append("")
    fields[11] = version
    return sep.join(fields) + "\r" + rest


def unescape(value: str, encoding: str = DEFAULT_ENCODING_CHARACTERS) -> str:
    """Resolve HL7 escape sequences (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\; formatting ones dropped).

    HL7 2.5 2.7.4. Hex (\\X..\\) and charset switches are dropped rather than guessed at.
    """
    escape = encoding[2] if len(encoding) > 2 else "\\"
    if escape not in value:
        return value
    table = {"F": "|", "S": encoding[0], "T": encoding[3], "R": encoding[1], "E": escape}
    out: list[str] = []
    pos = 0
    while pos < len(value):  # advances at least one character per turn
        start = value.find(escape, pos)
        end = value.find(escape, start + 1) if start >= 0 else -1
        if start < 0 or end < 0:
            out.append(value[pos:])
            break
        out.append(value[pos:start])
        out.append(table.get(value[start + 1 : end], ""))
        pos = end + 1
    return "".join(out)


def escape(text: str) -> str:
    """Escape free text for an ER7 field with the default delimiters (HL7 2.5 2.7.4).

    Line breaks become spaces: a CR inside a field would end the segment.
    """
    text = text.replace("\\", "\\E\\")
    for char, code in (("|", "F"), ("^", "S"), ("&", "T"), ("~", "R")):
        text = text.replace(char, f"\\{code}\\")
    return text.replace("\r", " ").replace("\n", " ")


def _raw_components(
    segment: Segment, field_no: int, repetition: int, header: MshHeader
) -> list[str]:
    """The still-escaped components of one field repetition (empty list when absent)."""
    reps = segment.children.get(f"{segment.name}_{field_no}")
    if repetition >= len(reps):
        return []
    er7 = reps[repetition].to_er7(encoding_chars=_hl7apy_encoding(header))
    return er7.split(header.encoding_characters[0])


def field_components(
    segment: Segment, field_no: int, repetition: int, header: MshHeader
) -> list[str]:
    """The unescaped components of one field repetition (empty list when absent)."""
    enc = header.encoding_characters
    return [unescape(part, enc) for part in _raw_components(segment, field_no, repetition, header)]


def component_value(
    segment: Segment, field_no: int, component: int, repetition: int, header: MshHeader
) -> str:
    """One unescaped component; its first subcomponent when it has several ('' if absent)."""
    parts = _raw_components(segment, field_no, repetition, header)
    if component > len(parts):
        return ""
    enc = header.encoding_characters
    return unescape(parts[component - 1].split(enc[3], 1)[0], enc).strip()


def _hl7apy_encoding(header: MshHeader) -> dict[str, str]:
    enc = header.encoding_characters
    return {
        "FIELD": header.field_separator,
        "COMPONENT": enc[0],
        "REPETITION": enc[1],
        "ESCAPE": enc[2],
        "SUBCOMPONENT": enc[3],
        "GROUP": "\r",
        "SEGMENT": "\r",
    }


_control_ids = itertools.count(1)


def new_control_id(prefix: str = "ACK") -> str:
    """A fresh MSH-10 (at most 20 characters): prefix, time to the second, a counter."""
    return f"{prefix[:3]}{time.strftime('%Y%m%d%H%M%S')}{next(_control_ids) % 1000:03d}"


def hl7_timestamp(when: float | None = None) -> str:
    """An HL7 TS (YYYYMMDDHHMMSS, local time) for MSH-7."""
    return time.strftime("%Y%m%d%H%M%S", time.localtime(when))


@dataclass(frozen=True)
class AckIdentity:
    """Who sends the ACK: our application and facility (MSH-3/MSH-4 of the ACK)."""

    application: str
    facility: str


def build_ack(
    inbound: MshHeader | None,
    ack_code: AckCode,
    identity: AckIdentity,
    *,
    text: str = "",
    error: Hl7Error | None = None,
    control_id: str | None = None,
) -> str:
    """The ER7 text of an original-mode ACK (HL7 2.5 2.9.2), built with hl7apy.

    MSH: our identity as sender, the inbound sender as receiver, ``ACK^<event>^ACK``, a new
    control ID, processing ID and version echoed. MSA: code, the inbound MSH-10, text. ERR (only
    with an error): v2.5 ERR-2 location, ERR-3 code^text^HL70357, ERR-4 severity E, ERR-8 the
    text; ERR-1 too for senders on v2.3/2.4, whose ERR has only that field.

    Args:
        inbound: The inbound header (None when it could not be read).
        ack_code: AA, AE or AR.
        identity: Our application and facility.
        text: MSA-3 text when there is no error.
        error: The error that decides the ERR segment and the MSA-3 text.
        control_id: MSH-10 of the ACK (a new one when None).
    """
    header = inbound or MshHeader()
    ack = Message("ACK", version=_ACK_LIBRARY_VERSION, validation_level=VALIDATION_LEVEL.TOLERANT)
    msh = ack.msh
    msh.msh_3 = escape(identity.application)
    msh.msh_4 = escape(identity.facility)
    msh.msh_5 = escape(header.sending_application)
    msh.msh_6 = escape(header.sending_facility)
    msh.msh_7 = hl7_timestamp()
    event = escape(header.trigger_event)
    msh.msh_9 = f"ACK^{event}^ACK" if event else "ACK"
    msh.msh_10 = escape(control_id or new_control_id())
    msh.msh_11 = header.processing_id if header.processing_id in PROCESSING_IDS else "P"
    msh.msh_12 = escape(header.version or _ACK_LIBRARY_VERSION)
    if header.charset:
        msh.msh_18 = escape(header.charset)
    msa = ack.add_segment("MSA")
    msa.msa_1 = str(ack_code)
    if header.control_id:
        msa.msa_2 = escape(header.control_id)
    message_text = error.text if error is not None else text
    if message_text:
        msa.msa_3 = escape(message_text)
    if error is not None:
        _add_err(ack, error, header.version)
    return ack.to_er7() + "\r"


def _add_err(ack: Message, error: Hl7Error, version: str) -> None:
    err = ack.add_segment("ERR")
    code = f"{int(error.code)}^{error.code.text}^HL70357"
    location = error.location.er7() if error.location else ""
    if version in ("2.3", "2.3.1", "2.4"):
        err.err_1 = f"{location}^{int(error.code)}&{error.code.text}&HL70357"
    if location:
        err.err_2 = location
    err.err_3 = code
    err.err_4 = "E"
    err.err_8 = escape(error.text)


def encode(text: str, charset: str) -> bytes:
    """Encode message text per an MSH-18 value; characters the set lacks become '?'."""
    return text.encode(CHARSETS.get(charset.upper(), "latin-1"), errors="replace")


@dataclass(frozen=True)
class AckSummary:
    """What an ACK says, read back (by tests, the HL7 toolbox, the RIS's outbound queue)."""

    ack_code: str
    control_id: str
    text: str
    error_code: int | None
    error_location: str
    message_type: str


def read_ack(raw: bytes | str) -> AckSummary:
    """Read MSA and ERR of an ACK (bytes decoded per its MSH-18)."""
    if isinstance(raw, bytes):
        raw = decode(raw, read_raw_header(raw).charset)[0]
    text = normalise_segments(raw)
    header = read_header(text)
    enc = header.encoding_characters
    segments = {line[:3]: line.split(header.field_separator) for line in text.split("\r") if line}
    msa = segments.get("MSA", [])
    err = segments.get("ERR", [])

    def at(fields: list[str], n: int) -> str:
        return unescape(fields[n], enc) if n < len(fields) else ""

    code_text = at(err, 3).split(enc[0])[0] if err else ""
    if not code_text and err:  # v2.3/2.4 senders put the code in ERR-1.4
        eld = err[1].split(enc[0]) if len(err) > 1 else []
        code_text = eld[3].split(enc[3])[0] if len(eld) > 3 else ""
    return AckSummary(
        ack_code=at(msa, 1),
        control_id=at(msa, 2),
        text=at(msa, 3),
        error_code=int(code_text) if code_text.isdigit() else None,
        error_location=at(err, 2) if err else "",
        message_type=header.type_label,
    )
