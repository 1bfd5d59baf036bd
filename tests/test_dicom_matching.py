"""PS3.4 C.2.2.2 attribute matching, key by key, and the SQL prefilter that never loses a match."""

from __future__ import annotations

import sqlite3

import pytest
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

from simlab.common.dicom_matching import (
    Matcher,
    MatchKind,
    is_universal,
    match_dataset,
    match_value,
)


@pytest.mark.parametrize("key", ["", None, "*", "**"])
@pytest.mark.parametrize("stored", ["DOE^JOHN", "", None])
def test_universal_matching_matches_everything_even_empty(key, stored) -> None:
    assert match_value(key, "PN", stored)
    assert is_universal(key, "PN")


def test_lone_star_is_universal_only_for_wildcard_vrs() -> None:
    assert Matcher.parse("*", "LO").kind is MatchKind.UNIVERSAL
    assert Matcher.parse("*", "UI").kind is MatchKind.SINGLE


def test_non_universal_key_never_matches_an_empty_or_missing_value() -> None:
    for key, vr in [("CT", "CS"), ("DOE*", "PN"), ("20240101-", "DA"), ("1.2\\1.3", "UI")]:
        assert not match_value(key, vr, "")
        assert not match_value(key, vr, None)


def test_single_value_is_exact_and_case_sensitive_except_pn() -> None:
    assert match_value("CT", "CS", "CT")
    assert not match_value("ct", "CS", "CT")
    assert not match_value("CT", "CS", "CTX")
    assert match_value("ACC001", "SH", "ACC001 ")  # trailing padding is not significant
    assert match_value("doe^john", "PN", "DOE^JOHN")
    assert match_value("DOE^JOHN", "PN", PersonName("Doe^John^^^"))
    assert not match_value("DOE", "PN", "DOE^JOHN")  # a single value is not a prefix


def test_wildcards_star_and_question_mark() -> None:
    assert match_value("DOE*", "PN", "DOE^JOHN")
    assert match_value("doe*", "PN", "Doe^Jane")
    assert match_value("*JOHN", "PN", "DOE^JOHN")
    assert match_value("D?E^*", "PN", "DOE^JOHN")
    assert not match_value("D?E^*", "PN", "DOOE^JOHN")
    assert match_value("ACC*", "SH", "ACC001")
    assert not match_value("acc*", "SH", "ACC001")  # only PN is case-insensitive
    assert match_value("A.B*", "LO", "A.B.C")
    assert not match_value("A.B*", "LO", "AXB")  # '.' is a character, not a regex
    assert match_value("50%*", "LO", "50% OFF") and not match_value("50%*", "LO", "500")


def test_date_ranges_are_inclusive_and_open_ended() -> None:
    assert match_value("20240101-20240131", "DA", "20240101")
    assert match_value("20240101-20240131", "DA", "20240131")
    assert not match_value("20240101-20240131", "DA", "20240201")
    assert match_value("-20231231", "DA", "19991231")
    assert not match_value("-20231231", "DA", "20240101")
    assert match_value("20240301-", "DA", "20990101")
    assert not match_value("20240301-", "DA", "20240229")
    assert match_value("20240115", "DA", "20240115")
    assert not match_value("20240115", "DA", "20240116")


def test_time_ranges_honour_the_precision_of_each_bound() -> None:
    assert match_value("0800-0930", "TM", "093000")
    assert match_value("0800-0930", "TM", "093059.999")  # '0930' names the whole minute
    assert not match_value("0800-0930", "TM", "093100")
    assert not match_value("0800-0930", "TM", "075959")
    assert match_value("-1200", "TM", "120030")
    assert match_value("1030", "TM", "103015")  # a single time names a period too
    assert match_value("10:30-11:00", "TM", "10:45:00")  # ACR-NEMA form


def test_datetime_ranges_and_offsets() -> None:
    assert match_value("20240101-20240131", "DT", "20240131235959")
    assert not match_value("20240101-20240131", "DT", "20240201000000")
    assert match_value("20240101120000-", "DT", "20240101130000+0100")
    assert match_value("-20240101120000-0500", "DT", "20240101110000")


def test_list_of_uid_matching() -> None:
    assert match_value("1.2.3\\1.2.4", "UI", "1.2.4")
    assert not match_value("1.2.3\\1.2.4", "UI", "1.2.5")
    assert match_value(MultiValue(str, ["1.2.3", "1.2.4"]), "UI", "1.2.3")
    assert not match_value("1.2.3", "UI", "1.2.3.4")


def test_multi_valued_stored_attribute_matches_when_any_value_does() -> None:
    assert match_value("MR", "CS", "CT\\MR")
    assert match_value("MR", "CS", ["CT", "MR"])
    assert match_value("CT\\US", "CS", ["US"])
    assert not match_value("PT", "CS", "CT\\MR")
    assert match_value("DOE^J*", "PN", ["SMITH^A", "DOE^JANE"])


def test_empty_value_matching() -> None:
    assert match_value('""', "SH", "") and match_value('""', "SH", None)
    assert not match_value('""', "SH", "ACC1")
    query = Dataset()
    query.AccessionNumber = '""'
    with_acc, without = Dataset(), Dataset()
    with_acc.AccessionNumber = "ACC1"
    assert match_dataset(query, without) and not match_dataset(query, with_acc)


def test_numbers_compare_as_numbers() -> None:
    assert match_value("5", "IS", "05")
    assert match_value("2.50", "DS", "2.5")
    assert not match_value("5", "IS", "50")


def _worklist_item(station: str, modality: str, date: str) -> Dataset:
    step = Dataset()
    step.ScheduledStationAETitle = station
    step.Modality = modality
    step.ScheduledProcedureStepStartDate = date
    item = Dataset()
    item.PatientName = "DOE^JOHN"
    item.PatientID = "PID1"
    item.AccessionNumber = "ACC1"
    item.ScheduledProcedureStepSequence = [step]
    return item


def test_dataset_matching_with_sequence_keys_as_a_worklist_does() -> None:
    item = _worklist_item("CT_1", "CT", "20240115")
    key_step = Dataset()
    key_step.ScheduledStationAETitle = "CT_1"
    key_step.ScheduledProcedureStepStartDate = "20240101-20240131"
    key_step.Modality = ""
    query = Dataset()
    query.PatientName = "doe*"
    query.PatientID = ""
    query.ScheduledProcedureStepSequence = [key_step]
    assert match_dataset(query, item)
    key_step.ScheduledStationAETitle = "CT_2"  # the classic empty worklist: wrong station AE
    assert not match_dataset(query, item)
    key_step.ScheduledStationAETitle = ""
    key_step.ScheduledProcedureStepStartDate = "20240201-"
    assert not match_dataset(query, item)


def test_empty_sequence_key_is_universal_and_missing_sequence_fails() -> None:
    query = Dataset()
    query.ScheduledProcedureStepSequence = [Dataset()]
    bare = Dataset()
    bare.PatientID = "PID1"
    assert match_dataset(query, _worklist_item("CT_1", "CT", "20240115"))
    assert match_dataset(query, bare)
    key = Dataset()
    key.Modality = "CT"
    query.ScheduledProcedureStepSequence = [key]
    assert not match_dataset(query, bare)


def test_query_retrieve_level_and_character_set_are_not_keys() -> None:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.SpecificCharacterSet = "ISO_IR 192"
    query.PatientID = "PID1"
    candidate = Dataset()
    candidate.PatientID = "PID1"
    assert match_dataset(query, candidate)


# --- the SQL prefilter is a superset of the Python rule ------------------------------------------

STORED = {
    "PN": [
        "DOE^JOHN",
        "Doe^Jane^^^",
        "DOEHLER^ANNA",
        "O'HARA^SEAN",
        "50%_OFF^X",
        "",
        "MÜLLER^HANS",
    ],
    "LO": ["CT CHEST", "ct chest", "A.B.C", "50% OFF", "under_score", "", "back\\slash"],
    "DA": ["20231231", "20240101", "20240115", "20240131", "20240201", ""],
    "UI": ["1.2.3", "1.2.4", "1.2.3.4", ""],
    "CS": ["CT", "MR", "CT\\MR", "US", ""],
    "TM": ["080000", "093000", "093059.5", "120030", ""],
    "IS": ["1", "05", "12", ""],
}
KEYS = {
    "PN": ["", "*", "DOE*", "doe*", "DOE^JOHN", "doe^jane", "D?E*", "*^J*", "50%*", "O'HARA*",
           "müller*", "DOE^JOHN\\DOEHLER^ANNA"],
    "LO": ["CT CHEST", "ct*", "A.B*", "50%*", "under_*", "back\\slash", "*", '""'],
    "DA": ["20240101-20240131", "-20231231", "20240115-", "20240115", "2024-"],
    "UI": ["1.2.3", "1.2.3\\1.2.4", "1.2.9"],
    "CS": ["CT", "MR", "CT\\US", "C?", "*"],
    "TM": ["0800-0930", "-1200", "1200-", "093000"],
    "IS": ["5", "1", "12\\1"],
}  # fmt: skip


@pytest.mark.parametrize(
    ("vr", "multi_valued"),
    [(vr, False) for vr in sorted(KEYS)] + [(vr, True) for vr in ("CS", "LO", "PN")],
)
def test_sql_condition_selects_a_superset_of_the_matches(vr: str, multi_valued: bool) -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (v TEXT)")
    conn.executemany("INSERT INTO t VALUES (?)", [(v,) for v in STORED[vr]])
    for key in KEYS[vr]:
        matcher = Matcher.parse(key, vr)
        clause = matcher.sql("v", multi_valued=multi_valued)
        sql = "SELECT v FROM t" + (f" WHERE {clause[0]}" if clause else "")
        selected = {row[0] for row in conn.execute(sql, clause[1] if clause else [])}
        stored = [v.split("\\") if multi_valued else v for v in STORED[vr]]
        expected = {raw for raw, v in zip(STORED[vr], stored, strict=True) if matcher.matches(v)}
        assert expected <= selected, f"{vr} key {key!r}: SQL lost {expected - selected}"
