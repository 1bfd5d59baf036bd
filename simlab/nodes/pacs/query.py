"""Query/Retrieve over the index: C-FIND responses and the instances a C-MOVE/C-GET sends.

Patient Root and Study Root information models, PATIENT / STUDY / SERIES / IMAGE levels
(PS3.4 C.3, C.6). Keys are matched with `simlab.common.dicom_matching` (PS3.4 C.2.2.2). The
hierarchy is applied leniently, as most archives do: keys of the query level and of the levels
above it are matched; keys of lower levels are returned empty. A retrieve must carry the unique
key of its level (PS3.4 C.4.2.2.1), so a bare C-MOVE can never send the whole archive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag

from simlab.common.config import PacsConfig
from simlab.common.dicom_matching import NOT_MATCHING_KEYS, Matcher, MatchKind, query_string
from simlab.common.dicom_status import Status
from simlab.nodes.pacs.index import LEVELS, QUERY_ATTRIBUTES, Index

PATIENT_ROOT = "PATIENT"
STUDY_ROOT = "STUDY"
ROOT_NAMES = {PATIENT_ROOT: "Patient Root", STUDY_ROOT: "Study Root"}
ROOT_LEVELS = {PATIENT_ROOT: LEVELS, STUDY_ROOT: LEVELS[1:]}
"""Levels each information model allows (PS3.4 C.6.1, C.6.2)."""
UNIQUE_KEYS = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}
"""The unique key of each level (PS3.4 C.6.1.1 / C.6.2.1)."""
COMPUTED_KEYS = {
    "NumberOfPatientRelatedStudies": "PATIENT",
    "NumberOfPatientRelatedSeries": "PATIENT",
    "NumberOfPatientRelatedInstances": "PATIENT",
    "NumberOfStudyRelatedSeries": "STUDY",
    "NumberOfStudyRelatedInstances": "STUDY",
    "SOPClassesInStudy": "STUDY",
    "NumberOfSeriesRelatedInstances": "SERIES",
}
"""Return keys computed from the index at their level (PS3.4 C.3.4 / C.6.1.1)."""
_SKIP_IN_RESPONSE = {"SpecificCharacterSet", "QueryRetrieveLevel", "RetrieveAETitle"}


class QueryError(Exception):
    """A request the SCP must refuse, with its status (A900 / C000 range) and an error comment."""

    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status = status
        self.comment = comment


@dataclass
class ParsedQuery:
    """A request identifier, understood: its level, matching keys and a summary for the log."""

    root: str
    level: str
    matchers: dict[str, Matcher]

    @property
    def unsupported(self) -> list[str]:
        """Matching keys the index cannot match at this level (PS3.4 C.4.1.1.4: answered with
        Pending 0xFF01, optional keys not supported)."""
        depth = LEVELS.index(self.level)
        return [
            kw
            for kw, m in self.matchers.items()
            if not m.is_universal
            and (kw not in QUERY_ATTRIBUTES or LEVELS.index(QUERY_ATTRIBUTES[kw].level) > depth)
        ]

    def describe(self) -> str:
        keys = [f"{kw}={m.raw}" for kw, m in self.matchers.items() if not m.is_universal]
        text = f"{self.level} ({ROOT_NAMES[self.root]}) [{', '.join(keys) or 'all'}]"
        if self.unsupported:
            text += f" (not matched: {', '.join(self.unsupported)})"
        return text


def parse_identifier(identifier: Dataset, root: str) -> ParsedQuery:
    """Check a C-FIND/C-MOVE/C-GET identifier against its information model.

    Raises QueryError (0xA900 Identifier does not match SOP class) when the Query/Retrieve Level
    is missing or not one of the model's levels, or (0xC000) when the identifier cannot be read.
    """
    try:
        level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
    except Exception as exc:
        raise QueryError(Status.CANNOT_UNDERSTAND, f"identifier unreadable: {exc}") from exc
    if not level:
        raise QueryError(
            Status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, "Query/Retrieve Level (0008,0052) missing"
        )
    if level not in ROOT_LEVELS[root]:
        raise QueryError(
            Status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
            f"level {level} is not valid in the {ROOT_NAMES[root]} model",
        )
    matchers: dict[str, Matcher] = {}
    try:
        for elem in identifier:
            if int(elem.tag) in NOT_MATCHING_KEYS or elem.tag.element == 0 or elem.VR == "SQ":
                continue
            keyword = elem.keyword or keyword_for_tag(elem.tag)
            if not keyword:
                continue
            matchers[keyword] = Matcher.parse(elem.value, str(elem.VR))
    except Exception as exc:
        raise QueryError(Status.CANNOT_UNDERSTAND, f"identifier unreadable: {exc}") from exc
    return ParsedQuery(root, level, matchers)


class QueryService:
    """Answers queries and resolves retrieves from the index."""

    def __init__(self, index: Index, get_config: Callable[[], PacsConfig]) -> None:
        self._index = index
        self._get_config = get_config

    def find(self, identifier: Dataset, root: str) -> tuple[ParsedQuery, list[Dataset]]:
        """The C-FIND pending responses for an identifier (raises QueryError)."""
        query = parse_identifier(identifier, root)
        rows = self._index.search(query.level, query.matchers)
        wanted = {e.keyword for e in identifier if e.keyword}
        counts: dict[int, dict[str, Any]] = {}
        if wanted & set(COMPUTED_KEYS):
            counts = self._index.related_counts(query.level, [r["_pk"] for r in rows])
        plan = _response_plan(identifier, query)
        fixed = {
            _QR_LEVEL_TAG: query.level,
            _RETRIEVE_AE_TAG: self._get_config().dicom.ae_title,
            _AVAILABILITY_TAG: "ONLINE",
        }
        responses = [_response(plan, fixed, row, counts.get(row["_pk"], {})) for row in rows]
        return query, responses

    def retrieve(self, identifier: Dataset, root: str) -> tuple[ParsedQuery, list[dict[str, Any]]]:
        """The instances a C-MOVE/C-GET identifier names (raises QueryError)."""
        query = parse_identifier(identifier, root)
        unique = UNIQUE_KEYS[query.level]
        matcher = query.matchers.get(unique)
        if matcher is None or matcher.is_universal or matcher.kind is MatchKind.WILDCARD:
            raise QueryError(
                Status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
                f"a retrieve at {query.level} level needs {unique} (single value or list)",
            )
        rows = self._index.search(query.level, query.matchers)
        return query, self._index.instances_for(query.level, [r["_pk"] for r in rows])


@dataclass(frozen=True)
class _Slot:
    """Where one element of every response to a query comes from, worked out once a query:
    an index column, a count computed at the query level, an empty sequence or nothing."""

    tag: BaseTag
    vr: str
    keyword: str
    source: str
    """'column', 'computed', 'sequence' or 'empty'."""
    multi_valued: bool = False


_QR_LEVEL_TAG = Tag(0x0008, 0x0052)
_RETRIEVE_AE_TAG = Tag(0x0008, 0x0054)
_AVAILABILITY_TAG = Tag(0x0008, 0x0056)
_CHARSET_TAG = Tag(0x0008, 0x0005)
_FIXED_VR = {_QR_LEVEL_TAG: "CS", _RETRIEVE_AE_TAG: "AE", _AVAILABILITY_TAG: "CS"}


def _response_plan(identifier: Dataset, query: ParsedQuery) -> list[_Slot]:
    """The elements of each response: every key of the identifier (PS3.4 C.4.1.1.3.2: the
    return keys, valued or empty) and the unique keys of the levels down to the query's."""
    depth = LEVELS.index(query.level)
    plan: list[_Slot] = []
    for elem in identifier:
        keyword = elem.keyword
        if elem.tag.element == 0 or keyword in _SKIP_IN_RESPONSE:
            continue
        vr = _vr(elem)
        column = QUERY_ATTRIBUTES.get(keyword)
        if column is not None and LEVELS.index(column.level) <= depth:
            plan.append(_Slot(elem.tag, vr, keyword, "column", column.multi_valued))
        elif keyword in COMPUTED_KEYS and COMPUTED_KEYS[keyword] == query.level:
            plan.append(_Slot(elem.tag, vr, keyword, "computed"))
        elif vr == "SQ":
            plan.append(_Slot(elem.tag, vr, keyword, "sequence"))
        else:
            plan.append(_Slot(elem.tag, vr, keyword, "empty"))
    present = {slot.tag for slot in plan}
    for level in LEVELS[: depth + 1]:
        if query.root == STUDY_ROOT and level == "PATIENT":
            continue
        key = UNIQUE_KEYS[level]
        tag = Tag(key)
        if tag not in present:
            plan.append(_Slot(tag, str(dictionary_VR(tag)), key, "column"))
    return [slot for slot in plan if slot.tag not in _FIXED_VR]


def _response(
    plan: list[_Slot], fixed: dict[BaseTag, str], row: dict[str, Any], counts: dict[str, Any]
) -> Dataset:
    """One pending response: the plan's elements valued from an index row and its counts."""
    ds = Dataset()
    latin1 = True
    for slot in plan:
        if slot.source == "column":
            value = _value(row[slot.keyword], slot.vr, slot.multi_valued)
            if latin1 and value is not None:
                latin1 = _fits_latin1(value)
        elif slot.source == "computed":
            value = counts.get(slot.keyword, [] if slot.vr == "UI" else 0)
        elif slot.source == "sequence":
            value = Sequence()
        else:
            value = None
        ds.add(DataElement(slot.tag, slot.vr, value))
    for tag, text in fixed.items():
        ds.add(DataElement(tag, _FIXED_VR[tag], text))
        if latin1:
            latin1 = _fits_latin1(text)
    ds.add(DataElement(_CHARSET_TAG, "CS", "ISO_IR 100" if latin1 else "ISO_IR 192"))
    return ds


def _fits_latin1(value: Any) -> bool:
    """True when a stored value (text, or a list of texts) encodes in Latin-1."""
    for v in value if isinstance(value, list | tuple) else (value,):
        if isinstance(v, str) and not v.isascii():
            try:
                v.encode("latin-1")
            except UnicodeEncodeError:
                return False
    return True


def _vr(elem: DataElement) -> str:
    vr = str(elem.VR)
    if " or " in vr or vr == "UN":
        try:
            vr = str(dictionary_VR(elem.tag))
        except KeyError:
            return "UN"
        if " or " in vr:
            vr = vr.split(" or ")[0]
    return vr


def _value(stored: Any, vr: str, multi_valued: bool) -> Any:
    if stored is None or stored == "":
        return None
    if vr in {"IS", "DS"}:
        return query_string(stored)
    if multi_valued:
        return [v for v in str(stored).split("\\") if v]
    return stored
