"""Attribute matching of DICOM C-FIND keys (PS3.4 C.2.2.2), shared by every SCP that answers one.

The PACS Query/Retrieve SCP and the RIS Modality Worklist SCP both decide, key by key, whether a
stored entity matches a request identifier. The rules, from PS3.4 C.2.2.2:

* **Universal matching** (C.2.2.2.3): an empty key (or a lone ``*``) matches every value, even an
  empty one; the key is only asking for the value to be returned.
* **Single value matching** (C.2.2.2.1): the value must equal the stored value. Person names (PN)
  are compared case-insensitively and without trailing empty components (``DOE^JOHN`` equals
  ``Doe^John^^^``), as the standard allows. A single date/time value names a period at its own
  precision, so ``1030`` matches ``103015``.
* **List of UID matching** (C.2.2.2.2): a UI key holding several UIDs separated by backslash matches
  any of them. Other keys with several values are treated the same way (C.2.2.2.8, multiple value
  matching).
* **Wildcard matching** (C.2.2.2.4): ``*`` any run of characters, ``?`` one character, for the text
  VRs (AE, CS, LO, LT, PN, SH, ST, UC, UR, UT). PN wildcards are case-insensitive.
* **Range matching** (C.2.2.2.5): DA, TM and DT keys ``a-b``, ``-b`` (up to b) and ``a-`` (from a),
  inclusive. A bound given at a lower precision covers the whole period it names (``-1200`` reaches
  12:00:59.999999). Time zone offsets of DT values are ignored.
* **Sequence matching** (C.2.2.2.6): a sequence key with one item matches when any item of the
  stored sequence matches every key of that item; an empty item is universal.
* **Empty value matching** (C.2.2.2.7): a key of two quotation marks (``""``) matches entities
  whose value is empty or absent.

Any other key never matches an empty or missing stored value.

`Matcher.sql` turns a key into an SQL condition that selects a *superset* of the matches, so a
caller can let the database narrow thousands of rows and then confirm each with
`Matcher.matches`: the SQL is for speed, the Python check is the rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
"""VRs for which ``*`` and ``?`` are wildcards (PS3.4 C.2.2.2.4)."""
RANGE_VRS = frozenset({"DA", "TM", "DT"})
"""VRs that support range matching (PS3.4 C.2.2.2.5)."""
SINGLE_VALUED_TEXT_VRS = frozenset({"LT", "ST", "UT", "UR"})
"""Text VRs whose backslash is a character, not a value separator (PS3.5 6.2)."""
_ONE_VALUE_COLUMN_VRS = frozenset({"UI", "DA", "TM", "DT", "LT", "ST", "UT", "UR"})
"""Stored columns of these VRs never hold a backslash-joined list (so SQL '=' keeps its index)."""
NOT_MATCHING_KEYS = frozenset({0x00080005, 0x00080052, 0x00080054, 0x00080056})
"""SpecificCharacterSet, QueryRetrieveLevel, RetrieveAETitle, InstanceAvailability: never keys."""

_MAX_PERIOD_FILL = "9"
_MIN_PERIOD_FILL = "0"


class MatchKind(Enum):
    """The kind of matching a key asks for (PS3.4 C.2.2.2)."""

    UNIVERSAL = "universal"
    EMPTY = "empty value"
    SINGLE = "single value"
    LIST = "list of values"
    WILDCARD = "wildcard"
    RANGE = "range"


def query_string(value: Any) -> str:
    """A key or stored value as the DICOM string it was sent as ('' for None or empty).

    Multi-valued values are joined with backslash; person names keep their ``^`` components.
    """
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(query_string(v) for v in value)
    if isinstance(value, PersonName):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("ascii", errors="replace")
    return str(value)


def _candidate_values(value: Any, vr: str) -> list[str]:
    """A stored value as the list of its values, each stripped of padding."""
    if value is None:
        return []
    if isinstance(value, MultiValue | list | tuple):
        out: list[str] = []
        for item in value:
            out.extend(_candidate_values(item, vr))
        return out
    text = query_string(value)
    if vr == "UI":
        text = text.rstrip("\0")
    parts = [text] if vr in SINGLE_VALUED_TEXT_VRS else text.split("\\")
    return [p.strip() for p in parts if p.strip()]


def normalise_pn(value: str) -> str:
    """A person name for comparison: case-folded, trailing empty components and groups removed."""
    groups = [g.rstrip("^ ").strip() for g in value.split("=")]
    while groups and not groups[-1]:
        groups.pop()
    return "=".join(groups).casefold()


def _digits(value: str) -> str:
    return value.replace(":", "").replace(".", "").replace("-", "").strip()


def _normalise_da(value: str, fill: str) -> str:
    """YYYYMMDD; the old ACR-NEMA form YYYY.MM.DD is accepted. A partial date fills the rest."""
    digits = _digits(value)[:8]
    return digits + fill * (8 - len(digits))


def _normalise_tm(value: str, fill: str) -> str:
    """HHMMSS.FFFFFF, fixed width, so that string order is time order (':' forms accepted)."""
    text = value.replace(":", "").strip()
    whole, _, frac = text.partition(".")
    whole = whole[:6]
    frac = frac[:6]
    if len(whole) < 6:
        return whole + fill * (6 - len(whole)) + "." + fill * 6
    return whole + "." + frac + fill * (6 - len(frac))


def _normalise_dt(value: str, fill: str) -> str:
    """YYYYMMDDHHMMSS.FFFFFF, fixed width; a time zone offset (&ZZXX) is dropped."""
    text = value.strip()
    match = re.match(r"^(\d*)(\.\d*)?", text)
    whole = match.group(1) if match else ""
    frac = (match.group(2) or ".")[1:] if match else ""
    whole = whole[:14]
    if len(whole) < 14:
        return whole + fill * (14 - len(whole)) + "." + fill * 6
    return whole + "." + frac[:6] + fill * (6 - len(frac[:6]))


def _period(value: str, vr: str) -> tuple[str, str]:
    """The first and last instant a date/time value names, as comparable strings."""
    norm = {"DA": _normalise_da, "TM": _normalise_tm, "DT": _normalise_dt}[vr]
    return norm(value, _MIN_PERIOD_FILL), norm(value, _MAX_PERIOD_FILL)


def _split_dt_range(value: str) -> tuple[str, str] | None:
    """Split a DT range at the hyphen that separates two DT values (offsets also use '-')."""
    for pos in [i for i, ch in enumerate(value) if ch == "-"]:
        lo, hi = value[:pos], value[pos + 1 :]
        if _looks_like_dt(lo) and _looks_like_dt(hi):
            return lo, hi
    return None


def _looks_like_dt(value: str) -> bool:
    return value == "" or re.fullmatch(r"\d{4,14}(\.\d{1,6})?([+-]\d{4})?", value) is not None


def _wildcard_regex(pattern: str, case_insensitive: bool) -> re.Pattern[str]:
    parts = []
    for ch in pattern:
        if ch == "*":
            parts.append(".*")
        elif ch == "?":
            parts.append(".")
        else:
            parts.append(re.escape(ch))
    flags = re.DOTALL | (re.IGNORECASE if case_insensitive else 0)
    return re.compile("".join(parts), flags)


def _like_pattern(pattern: str, *, wildcards: bool, any_non_ascii: bool = False) -> str:
    """An SQL LIKE pattern (ESCAPE '\\') for a DICOM value, with * and ? as wildcards if asked.

    SQLite's LIKE folds case for ASCII only; with `any_non_ascii` a non-ASCII character becomes
    '%' so that a case-insensitive match (MÜLLER for müller*, STRASSE for straße) is never lost.
    """
    out = []
    for ch in pattern:
        if any_non_ascii and not ch.isascii():
            out.append("%")
        elif ch in "%_\\":
            out.append("\\" + ch)
        elif wildcards and ch == "*":
            out.append("%")
        elif wildcards and ch == "?":
            out.append("_")
        else:
            out.append(ch)
    return "".join(out)


@dataclass(frozen=True)
class Matcher:
    """One matching key: what a stored value must be to match (PS3.4 C.2.2.2).

    Build it with `Matcher.parse`; ask `matches` for a stored value and `sql` for a database
    condition that selects a superset of the matches.
    """

    vr: str
    kind: MatchKind
    raw: str
    alternatives: tuple[Matcher, ...] = field(default=())
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)
    _bounds: tuple[str, str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, value: Any, vr: str) -> Matcher:
        """The matcher for a key value (str, list, PersonName, None) of a given VR."""
        vr = str(vr)
        text = query_string(value)
        text = text.rstrip("\0 ") if vr == "UI" else text.strip()
        if vr == "SQ":
            raise ValueError("sequence keys are matched with match_dataset")
        if text == "" or (vr in WILDCARD_VRS and text.strip("*") == "" and "*" in text):
            return cls(vr, MatchKind.UNIVERSAL, text)
        if text == '""':
            return cls(vr, MatchKind.EMPTY, text)
        if "\\" in text and vr not in SINGLE_VALUED_TEXT_VRS:
            alternatives = tuple(
                cls._single(part.strip(), vr) for part in text.split("\\") if part.strip()
            )
            if not alternatives:
                return cls(vr, MatchKind.UNIVERSAL, text)
            if len(alternatives) == 1:
                return alternatives[0]
            return cls(vr, MatchKind.LIST, text, alternatives)
        return cls._single(text, vr)

    @classmethod
    def _single(cls, text: str, vr: str) -> Matcher:
        if vr in RANGE_VRS:
            bounds = cls._range_bounds(text, vr)
            if bounds is not None:
                return cls(vr, MatchKind.RANGE, text, _bounds=bounds)
            return cls(vr, MatchKind.SINGLE, text, _bounds=_period(text, vr))
        if vr in WILDCARD_VRS and ("*" in text or "?" in text):
            return cls(
                vr,
                MatchKind.WILDCARD,
                text,
                _regex=_wildcard_regex(text, case_insensitive=vr == "PN"),
            )
        return cls(vr, MatchKind.SINGLE, text)

    @staticmethod
    def _range_bounds(text: str, vr: str) -> tuple[str, str] | None:
        if "-" not in text:
            return None
        if vr == "DT":
            split = _split_dt_range(text)
            if split is None:
                return None
            lo, hi = split
        else:
            lo, _, hi = text.partition("-")
        lo, hi = lo.strip(), hi.strip()
        if not lo and not hi:
            return None
        lower = _period(lo, vr)[0] if lo else ""
        upper = _period(hi, vr)[1] if hi else "\uffff"
        return lower, upper

    @property
    def is_universal(self) -> bool:
        return self.kind is MatchKind.UNIVERSAL

    def matches(self, stored: Any) -> bool:
        """True when a stored value (str, list of values, PersonName, number or None) matches."""
        if self.kind is MatchKind.UNIVERSAL:
            return True
        values = _candidate_values(stored, self.vr)
        if self.kind is MatchKind.EMPTY:
            return not values
        return any(self._matches_one(v) for v in values)

    def _matches_one(self, value: str) -> bool:
        kind = self.kind
        if kind is MatchKind.LIST:
            return any(alt._matches_one(value) for alt in self.alternatives)
        if kind is MatchKind.WILDCARD:
            assert self._regex is not None
            return self._regex.fullmatch(value) is not None
        if self._bounds is not None:  # RANGE, or a single date/time naming a period
            lo, hi = self._bounds
            first, last = _period(value, self.vr)
            if kind is MatchKind.RANGE:
                return lo <= first <= hi
            return first <= hi and lo <= last  # the two periods overlap
        if self.vr == "PN":
            return normalise_pn(value) == normalise_pn(self.raw)
        if self.vr == "IS":
            return _same_number(value, self.raw, int)
        if self.vr == "DS":
            return _same_number(value, self.raw, float)
        return value == self.raw

    def sql(self, column: str, *, multi_valued: bool = False) -> tuple[str, list[Any]] | None:
        """An SQL condition on `column` selecting a superset of the matches (None: no filter).

        The column holds the stored value as text (values of a multi-valued attribute joined by
        backslash when `multi_valued`). LIKE is case-insensitive in SQLite, which keeps the
        condition a superset for PN; the caller confirms each row with `matches`.
        """
        if self.kind is MatchKind.UNIVERSAL:
            return None
        if self.kind is MatchKind.EMPTY:
            return f"COALESCE(TRIM({column}), '') = ''", []
        if multi_valued:
            return self._sql_multi(column)
        clause = self._sql_single(column)
        if clause is None or self.vr in _ONE_VALUE_COLUMN_VRS:
            return clause
        # A stored value holding a backslash has several values (a corrupt VM): let Python judge.
        return f"({clause[0]} OR instr({column}, '\\') > 0)", clause[1]

    def _sql_single(self, column: str) -> tuple[str, list[Any]] | None:
        kind = self.kind
        if kind is MatchKind.LIST:
            parts = [alt._sql_single(column) for alt in self.alternatives]
            if any(p is None for p in parts):
                return None
            if all(
                alt.kind is MatchKind.SINGLE and alt.vr not in RANGE_VRS | {"PN", "IS", "DS"}
                for alt in self.alternatives
            ):
                values = [alt.raw for alt in self.alternatives]
                return f"{column} IN ({', '.join('?' * len(values))})", values
            clause = " OR ".join(f"({p[0]})" for p in parts if p)
            params = [param for p in parts if p for param in p[1]]
            return f"({clause})", params
        if kind is MatchKind.WILDCARD:
            pattern = _like_pattern(self.raw, wildcards=True, any_non_ascii=self.vr == "PN")
            return f"{column} LIKE ? ESCAPE '\\'", [pattern]
        if self.vr == "DA" and self._bounds is not None:
            lo, hi = self._bounds
            clause, params = f"{column} <> ''", []
            if lo:
                clause += f" AND {column} >= ?"
                params.append(lo)
            if hi != "\uffff":
                clause += f" AND {column} <= ?"
                params.append(hi)
            return clause, params
        if self.vr in {"TM", "DT", "IS", "DS"}:
            return f"{column} <> ''", []
        if self.vr == "PN":
            # Stored names may carry trailing empty components: prefix match, confirmed in Python.
            pattern = _like_pattern(self.raw.rstrip("^="), wildcards=False, any_non_ascii=True)
            pattern += "%"
            return f"{column} LIKE ? ESCAPE '\\'", [pattern]
        return f"{column} = ?", [self.raw]

    def _sql_multi(self, column: str) -> tuple[str, list[Any]] | None:
        alternatives = self.alternatives if self.kind is MatchKind.LIST else (self,)
        clauses: list[str] = []
        params: list[Any] = []
        for alt in alternatives:
            if alt.kind is MatchKind.WILDCARD:
                inner = _like_pattern(alt.raw, wildcards=True, any_non_ascii=alt.vr == "PN")
            elif alt.kind is MatchKind.SINGLE and alt.vr not in RANGE_VRS | {"PN", "IS", "DS"}:
                inner = _like_pattern(alt.raw, wildcards=False)
            else:
                return None
            clauses.append(f"('\\' || {column} || '\\') LIKE ? ESCAPE '\\'")
            params.append("%\\\\" + inner + "\\\\%")
        return "(" + " OR ".join(clauses) + ")", params


def _same_number(a: str, b: str, kind: type) -> bool:
    try:
        return kind(a) == kind(b)
    except ValueError:
        return a == b


def match_value(key: Any, vr: str, stored: Any) -> bool:
    """True when a stored value matches a key value of the given VR (PS3.4 C.2.2.2)."""
    return Matcher.parse(key, vr).matches(stored)


def is_universal(key: Any, vr: str) -> bool:
    """True when the key only asks for the value to be returned (empty, or a lone '*')."""
    if str(vr) == "SQ":
        return not key or all(len(item) == 0 for item in key)
    return Matcher.parse(key, vr).is_universal


def match_dataset(identifier: Dataset, candidate: Dataset, *, skip: Iterable[int] = ()) -> bool:
    """True when `candidate` matches every key of `identifier`, sequences included.

    Keys in NOT_MATCHING_KEYS, group lengths, and tags in `skip` are ignored. A sequence key with
    an empty item (or none) is universal; otherwise some item of the stored sequence must match
    every key of the key's first item (PS3.4 C.2.2.2.6).
    """
    skipped = set(skip) | NOT_MATCHING_KEYS
    for elem in identifier:
        tag = int(elem.tag)
        if tag in skipped or elem.tag.element == 0:
            continue
        vr = str(elem.VR)
        stored = candidate.get(elem.tag)
        if vr == "SQ":
            if is_universal(elem.value, "SQ"):
                continue
            if stored is None or not stored.value:
                return False
            key_item = elem.value[0]
            if not any(match_dataset(key_item, item) for item in stored.value):
                return False
            continue
        matcher = Matcher.parse(elem.value, vr)
        if matcher.is_universal:
            continue
        if not matcher.matches(None if stored is None else stored.value):
            return False
    return True
