"""The PACS index: patients, studies, series and instances in SQLite.

One long-lived connection guarded by a lock (SQLite serialises writers anyway), WAL journal with
synchronous=NORMAL: a crash may lose the last index rows but never corrupts the database, and the
archive reindexes object files that have no row when it opens (the objects themselves are fsynced
before their row is written). The tables hold what Query/Retrieve matches on and what an
administrator needs to see a data fault:

* ``patients``: Patient ID + Issuer of Patient ID (the key), name, birth date, sex;
* ``studies``: Study Instance UID, date, time, accession, study ID, description, referring
  physician, modalities in study; a study belongs to the patient it first arrived with;
* ``series``: Series Instance UID, modality, number, description, body part, station;
* ``instances``: SOP Instance/Class UID, number, transfer syntax, file (its storage directory,
  '' for the default ``data/objects``, and the path relative to it), size, when and from which
  AE it arrived, and the Patient ID / Patient's Name found in the file itself, so a study that
  mixes two patients shows up.

Query/Retrieve asks `search` with one `Matcher` per key: the matchers narrow the rows in SQL
(a superset) and each row is then confirmed in Python (PS3.4 C.2.2.2 is the rule).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simlab.common.dicom_matching import Matcher
from simlab.common.sqlite_db import SqliteDatabase

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
"""Query/Retrieve levels, top to bottom (PS3.4 C.3)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS patients (
    pk          INTEGER PRIMARY KEY,
    patient_id  TEXT NOT NULL,
    issuer      TEXT NOT NULL DEFAULT '',
    name        TEXT NOT NULL DEFAULT '',
    birth_date  TEXT NOT NULL DEFAULT '',
    sex         TEXT NOT NULL DEFAULT '',
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    UNIQUE (patient_id, issuer)
);
CREATE INDEX IF NOT EXISTS patients_name ON patients (name);
CREATE TABLE IF NOT EXISTS studies (
    pk                  INTEGER PRIMARY KEY,
    patient_fk          INTEGER NOT NULL REFERENCES patients (pk),
    study_uid           TEXT NOT NULL UNIQUE,
    study_date          TEXT NOT NULL DEFAULT '',
    study_time          TEXT NOT NULL DEFAULT '',
    accession           TEXT NOT NULL DEFAULT '',
    study_id            TEXT NOT NULL DEFAULT '',
    description         TEXT NOT NULL DEFAULT '',
    referring_physician TEXT NOT NULL DEFAULT '',
    modalities          TEXT NOT NULL DEFAULT '',
    created_at          REAL NOT NULL,
    updated_at          REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS studies_patient ON studies (patient_fk);
CREATE INDEX IF NOT EXISTS studies_date ON studies (study_date);
CREATE INDEX IF NOT EXISTS studies_accession ON studies (accession);
CREATE TABLE IF NOT EXISTS series (
    pk          INTEGER PRIMARY KEY,
    study_fk    INTEGER NOT NULL REFERENCES studies (pk),
    series_uid  TEXT NOT NULL UNIQUE,
    modality    TEXT NOT NULL DEFAULT '',
    number      TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    body_part   TEXT NOT NULL DEFAULT '',
    station     TEXT NOT NULL DEFAULT '',
    created_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS series_study ON series (study_fk);
CREATE TABLE IF NOT EXISTS instances (
    pk                INTEGER PRIMARY KEY,
    series_fk         INTEGER NOT NULL REFERENCES series (pk),
    sop_uid           TEXT NOT NULL UNIQUE,
    sop_class         TEXT NOT NULL,
    number            TEXT NOT NULL DEFAULT '',
    transfer_syntax   TEXT NOT NULL,
    root              TEXT NOT NULL DEFAULT '',
    path              TEXT NOT NULL UNIQUE,
    size              INTEGER NOT NULL,
    received_at       REAL NOT NULL,
    calling_ae        TEXT NOT NULL DEFAULT '',
    file_patient_id   TEXT NOT NULL DEFAULT '',
    file_patient_name TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS instances_series ON instances (series_fk);
"""


@dataclass(frozen=True)
class Column:
    """Where a Query/Retrieve attribute lives: its level, SQL expression and VR."""

    level: str
    sql: str
    vr: str
    multi_valued: bool = False


QUERY_ATTRIBUTES: dict[str, Column] = {
    "PatientID": Column("PATIENT", "p.patient_id", "LO"),
    "IssuerOfPatientID": Column("PATIENT", "p.issuer", "LO"),
    "PatientName": Column("PATIENT", "p.name", "PN"),
    "PatientBirthDate": Column("PATIENT", "p.birth_date", "DA"),
    "PatientSex": Column("PATIENT", "p.sex", "CS"),
    "StudyInstanceUID": Column("STUDY", "st.study_uid", "UI"),
    "StudyDate": Column("STUDY", "st.study_date", "DA"),
    "StudyTime": Column("STUDY", "st.study_time", "TM"),
    "AccessionNumber": Column("STUDY", "st.accession", "SH"),
    "StudyID": Column("STUDY", "st.study_id", "SH"),
    "StudyDescription": Column("STUDY", "st.description", "LO"),
    "ReferringPhysicianName": Column("STUDY", "st.referring_physician", "PN"),
    "ModalitiesInStudy": Column("STUDY", "st.modalities", "CS", multi_valued=True),
    "SeriesInstanceUID": Column("SERIES", "se.series_uid", "UI"),
    "Modality": Column("SERIES", "se.modality", "CS"),
    "SeriesNumber": Column("SERIES", "se.number", "IS"),
    "SeriesDescription": Column("SERIES", "se.description", "LO"),
    "BodyPartExamined": Column("SERIES", "se.body_part", "CS"),
    "StationName": Column("SERIES", "se.station", "SH"),
    "SOPInstanceUID": Column("IMAGE", "i.sop_uid", "UI"),
    "SOPClassUID": Column("IMAGE", "i.sop_class", "UI"),
    "InstanceNumber": Column("IMAGE", "i.number", "IS"),
}
"""The attributes the index can match on and return, by DICOM keyword."""

PATIENT_EDIT_FIELDS: dict[str, str] = {
    "PatientID": "patient_id",
    "IssuerOfPatientID": "issuer",
    "PatientName": "name",
    "PatientBirthDate": "birth_date",
    "PatientSex": "sex",
}
"""Patient attributes a study edit may set (keyword -> patients column)."""
STUDY_EDIT_FIELDS: dict[str, str] = {
    "AccessionNumber": "accession",
    "StudyID": "study_id",
    "StudyDescription": "description",
    "ReferringPhysicianName": "referring_physician",
    "StudyDate": "study_date",
    "StudyTime": "study_time",
}
"""Study attributes a study edit may set (keyword -> studies column)."""
_STUDY_COLUMNS = (
    "study_uid",
    "study_date",
    "study_time",
    "accession",
    "study_id",
    "description",
    "referring_physician",
    "modalities",
)

_UNIT_SEPARATOR = "\x1f"
"""Joins Patient IDs in one SQL value (char(31)): a Patient ID may contain commas."""
_LEVEL_PK = {"PATIENT": "p.pk", "STUDY": "st.pk", "SERIES": "se.pk", "IMAGE": "i.pk"}
_LEVEL_FROM = {
    "PATIENT": "patients p",
    "STUDY": "studies st JOIN patients p ON st.patient_fk = p.pk",
    "SERIES": "series se JOIN studies st ON se.study_fk = st.pk "
    "JOIN patients p ON st.patient_fk = p.pk",
    "IMAGE": "instances i JOIN series se ON i.series_fk = se.pk "
    "JOIN studies st ON se.study_fk = st.pk JOIN patients p ON st.patient_fk = p.pk",
}
_LEVEL_ORDER = {
    "PATIENT": "p.name, p.patient_id",
    "STUDY": "st.study_date, st.study_time, st.pk",
    "SERIES": "CAST(se.number AS INTEGER), se.pk",
    "IMAGE": "CAST(se.number AS INTEGER), se.pk, CAST(i.number AS INTEGER), i.pk",
}


@dataclass
class InstanceRecord:
    """What the archive indexes for one stored object (values as found in its header)."""

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax: str
    path: str
    """File path relative to its storage directory."""
    size: int
    root: str = ""
    """The storage directory the file was written to ('' is the default ``data/objects``)."""
    calling_ae: str = ""
    received_at: float = field(default_factory=time.time)
    instance_number: str = ""
    patient_id: str = ""
    issuer_of_patient_id: str = ""
    patient_name: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_instance_uid: str = ""
    study_date: str = ""
    study_time: str = ""
    accession_number: str = ""
    study_id: str = ""
    study_description: str = ""
    referring_physician: str = ""
    series_instance_uid: str = ""
    modality: str = ""
    series_number: str = ""
    series_description: str = ""
    body_part: str = ""
    station_name: str = ""


@dataclass
class AddResult:
    """What indexing one instance found: data faults a trainee must be able to see in the log."""

    study_patient_conflict: str | None = None
    """Patient ID (issuer) the study already belongs to, when the file names another patient."""
    series_study_conflict: str | None = None
    """Study Instance UID the series already belongs to, when the file names another study."""
    replaced: dict[str, Any] | None = None
    """The previous row of this SOP Instance UID when it was overwritten."""


def _patient_label(patient_id: str, issuer: str) -> str:
    return f"{patient_id}^^^{issuer}" if issuer else patient_id


class Index(SqliteDatabase):
    """SQLite index of the archive (one connection, one lock, WAL).

    synchronous=NORMAL: every object file is fsynced before its row, and the archive reindexes
    files without rows on open, so the index can be rebuilt after a power loss.
    """

    def __init__(self, db_path: Path) -> None:
        super().__init__(
            db_path,
            schema=_SCHEMA,
            synchronous="NORMAL",
            busy_timeout=30.0,
            foreign_keys=True,
            what="the index",
        )

    def open(self) -> None:
        """Open the database; an index made before storage directories existed gains the column."""
        super().open()
        with self._lock:
            columns = {r[1] for r in self.conn.execute("PRAGMA table_info(instances)")}
            if "root" not in columns:
                self.conn.execute("ALTER TABLE instances ADD COLUMN root TEXT NOT NULL DEFAULT ''")

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self.conn.execute(sql, tuple(params)).fetchall()

    # -- writing -----------------------------------------------------------------------------

    def add_instance(self, rec: InstanceRecord) -> AddResult:
        """Index one stored object (insert, or replace the row of the same SOP Instance UID).

        A study keeps the patient it first arrived with and a series keeps its first study; a
        file that says otherwise is indexed under the existing owner and the conflict returned.
        """
        now = time.time()
        result = AddResult()
        with self.transaction() as conn:
            study = conn.execute(
                "SELECT st.pk, st.patient_fk, st.study_date, st.study_time, st.accession, "
                "st.study_id, st.description, st.referring_physician, p.patient_id, p.issuer "
                "FROM studies st JOIN patients p ON st.patient_fk = p.pk WHERE st.study_uid = ?",
                (rec.study_instance_uid,),
            ).fetchone()
            if study is None:
                patient_pk = self._patient_pk(conn, rec, now)
                study_pk = conn.execute(
                    "INSERT INTO studies (patient_fk, study_uid, study_date, study_time, "
                    "accession, study_id, description, referring_physician, created_at, "
                    "updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        patient_pk,
                        rec.study_instance_uid,
                        rec.study_date,
                        rec.study_time,
                        rec.accession_number,
                        rec.study_id,
                        rec.study_description,
                        rec.referring_physician,
                        now,
                        now,
                    ),
                ).lastrowid
            else:
                study_pk = study["pk"]
                if (study["patient_id"], study["issuer"]) != (
                    rec.patient_id,
                    rec.issuer_of_patient_id,
                ):
                    result.study_patient_conflict = _patient_label(
                        study["patient_id"], study["issuer"]
                    )
                self._fill_study(conn, study, rec, now)

            series = conn.execute(
                "SELECT se.pk, se.study_fk, st.study_uid FROM series se "
                "JOIN studies st ON se.study_fk = st.pk WHERE se.series_uid = ?",
                (rec.series_instance_uid,),
            ).fetchone()
            if series is None:
                series_pk = conn.execute(
                    "INSERT INTO series (study_fk, series_uid, modality, number, description, "
                    "body_part, station, created_at) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        study_pk,
                        rec.series_instance_uid,
                        rec.modality,
                        rec.series_number,
                        rec.series_description,
                        rec.body_part,
                        rec.station_name,
                        now,
                    ),
                ).lastrowid
                self._refresh_modalities(conn, study_pk)
            else:
                series_pk = series["pk"]
                if series["study_fk"] != study_pk:
                    result.series_study_conflict = series["study_uid"]

            old = conn.execute(
                "SELECT i.*, se.study_fk FROM instances i JOIN series se ON i.series_fk = se.pk "
                "WHERE i.sop_uid = ?",
                (rec.sop_instance_uid,),
            ).fetchone()
            values = (
                series_pk,
                rec.sop_class_uid,
                rec.instance_number,
                rec.transfer_syntax,
                rec.path,
                rec.size,
                rec.received_at,
                rec.calling_ae,
                rec.patient_id,
                rec.patient_name,
                rec.root,
            )
            if old is None:
                conn.execute(
                    "INSERT INTO instances (series_fk, sop_class, number, transfer_syntax, path, "
                    "size, received_at, calling_ae, file_patient_id, file_patient_name, root, "
                    "sop_uid) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (*values, rec.sop_instance_uid),
                )
            else:
                result.replaced = dict(old)
                conn.execute(
                    "UPDATE instances SET series_fk=?, sop_class=?, number=?, transfer_syntax=?, "
                    "path=?, size=?, received_at=?, calling_ae=?, file_patient_id=?, "
                    "file_patient_name=?, root=? WHERE sop_uid=?",
                    (*values, rec.sop_instance_uid),
                )
                if old["series_fk"] != series_pk:
                    self._prune(conn, [old["series_fk"]], [old["study_fk"]])
        return result

    @staticmethod
    def _patient_pk(conn: sqlite3.Connection, rec: InstanceRecord, now: float) -> int:
        row = conn.execute(
            "SELECT pk FROM patients WHERE patient_id = ? AND issuer = ?",
            (rec.patient_id, rec.issuer_of_patient_id),
        ).fetchone()
        if row is not None:
            return int(row["pk"])
        return int(
            conn.execute(
                "INSERT INTO patients (patient_id, issuer, name, birth_date, sex, created_at, "
                "updated_at) VALUES (?,?,?,?,?,?,?)",
                (
                    rec.patient_id,
                    rec.issuer_of_patient_id,
                    rec.patient_name,
                    rec.patient_birth_date,
                    rec.patient_sex,
                    now,
                    now,
                ),
            ).lastrowid
        )

    @staticmethod
    def _fill_study(
        conn: sqlite3.Connection, study: sqlite3.Row, rec: InstanceRecord, now: float
    ) -> None:
        """Fill study attributes the first instances left empty (never overwrite a value)."""
        wanted = {
            "study_date": rec.study_date,
            "study_time": rec.study_time,
            "accession": rec.accession_number,
            "study_id": rec.study_id,
            "description": rec.study_description,
            "referring_physician": rec.referring_physician,
        }
        fill = {k: v for k, v in wanted.items() if v and not study[k]}
        if fill:
            sets = ", ".join(f"{k} = ?" for k in fill)
            conn.execute(
                f"UPDATE studies SET {sets}, updated_at = ? WHERE pk = ?",  # noqa: S608
                (*fill.values(), now, study["pk"]),
            )

    @staticmethod
    def _refresh_modalities(conn: sqlite3.Connection, study_pk: int) -> None:
        rows = conn.execute(
            "SELECT DISTINCT modality FROM series WHERE study_fk = ? AND modality <> '' "
            "ORDER BY modality",
            (study_pk,),
        ).fetchall()
        conn.execute(
            "UPDATE studies SET modalities = ? WHERE pk = ?",
            ("\\".join(r[0] for r in rows), study_pk),
        )

    def _prune(
        self, conn: sqlite3.Connection, series_pks: Iterable[int], study_pks: Iterable[int]
    ) -> None:
        """Remove series without instances and studies without series (patients are kept)."""
        for pk in set(series_pks):
            conn.execute(
                "DELETE FROM series WHERE pk = ? AND NOT EXISTS "
                "(SELECT 1 FROM instances WHERE series_fk = ?)",
                (pk, pk),
            )
        for pk in set(study_pks):
            gone = conn.execute(
                "DELETE FROM studies WHERE pk = ? AND NOT EXISTS "
                "(SELECT 1 FROM series WHERE study_fk = ?)",
                (pk, pk),
            ).rowcount
            if not gone:
                self._refresh_modalities(conn, pk)

    def remove_instances(self, sop_uids: Iterable[str]) -> int:
        """Delete instance rows (and series/studies left empty); returns rows removed."""
        removed = 0
        with self.transaction() as conn:
            series_pks: set[int] = set()
            study_pks: set[int] = set()
            for uid in sop_uids:
                row = conn.execute(
                    "SELECT i.series_fk, se.study_fk FROM instances i "
                    "JOIN series se ON i.series_fk = se.pk WHERE i.sop_uid = ?",
                    (uid,),
                ).fetchone()
                if row is None:
                    continue
                conn.execute("DELETE FROM instances WHERE sop_uid = ?", (uid,))
                series_pks.add(row[0])
                study_pks.add(row[1])
                removed += 1
            self._prune(conn, series_pks, study_pks)
        return removed

    def study_instances(self, study_uid: str) -> list[dict[str, Any]]:
        """The instances of a study (sop_uid, series_uid, root, path, size)."""
        rows = self._query(
            "SELECT i.sop_uid, se.series_uid, i.root, i.path, i.size FROM instances i "
            "JOIN series se ON i.series_fk = se.pk JOIN studies st ON se.study_fk = st.pk "
            "WHERE st.study_uid = ?",
            (study_uid,),
        )
        return [dict(r) for r in rows]

    def delete_study(self, study_uid: str) -> list[dict[str, Any]]:
        """Delete a study's rows; returns its instances (sop_uid, root, path, size)."""
        with self.transaction() as conn:
            study = conn.execute(
                "SELECT pk FROM studies WHERE study_uid = ?", (study_uid,)
            ).fetchone()
            if study is None:
                return []
            rows = conn.execute(
                "SELECT i.sop_uid, i.root, i.path, i.size FROM instances i "
                "JOIN series se ON i.series_fk = se.pk WHERE se.study_fk = ?",
                (study["pk"],),
            ).fetchall()
            conn.execute(
                "DELETE FROM instances WHERE series_fk IN "
                "(SELECT pk FROM series WHERE study_fk = ?)",
                (study["pk"],),
            )
            conn.execute("DELETE FROM series WHERE study_fk = ?", (study["pk"],))
            conn.execute("DELETE FROM studies WHERE pk = ?", (study["pk"],))
        return [dict(r) for r in rows]

    # -- reading for the archive ---------------------------------------------------------------

    def instance(self, sop_uid: str) -> dict[str, Any] | None:
        """The row of one instance with its series, study and patient, or None."""
        rows = self._query(
            "SELECT i.sop_uid, i.sop_class, i.number, i.transfer_syntax, i.root, i.path, i.size, "
            "i.received_at, i.calling_ae, i.file_patient_id, i.file_patient_name, "
            "se.series_uid, st.study_uid, p.patient_id, p.issuer, p.name AS patient_name, "
            "p.birth_date, p.sex FROM instances i JOIN series se ON i.series_fk = se.pk "
            "JOIN studies st ON se.study_fk = st.pk JOIN patients p ON st.patient_fk = p.pk "
            "WHERE i.sop_uid = ?",
            (sop_uid,),
        )
        return dict(rows[0]) if rows else None

    def held_instances(self, sop_uids: list[str]) -> set[str]:
        """Which of these SOP Instance UIDs the archive holds (in chunks: SQLite's variable
        limit), wherever they are filed now (after an edit, a split or a merge)."""
        held: set[str] = set()
        for start in range(0, len(sop_uids), 500):
            chunk = sop_uids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._query(
                f"SELECT sop_uid FROM instances WHERE sop_uid IN ({marks})",  # noqa: S608
                chunk,
            )
            held.update(r[0] for r in rows)
        return held

    def stored_size(self, sop_uid: str) -> int | None:
        """The stored size of an instance, or None when it is not archived (the duplicate check
        of every C-STORE: one indexed lookup)."""
        rows = self._query("SELECT size FROM instances WHERE sop_uid = ?", (sop_uid,))
        return int(rows[0][0]) if rows else None

    def instance_paths(self) -> dict[tuple[str, str], str]:
        """Every indexed file, as (storage directory, relative path), and its SOP Instance UID."""
        rows = self._query("SELECT root, path, sop_uid FROM instances")
        return {(r["root"], r["path"]): r["sop_uid"] for r in rows}

    def usage_by_root(self) -> dict[str, tuple[int, int]]:
        """Instances and bytes per storage directory ('' is the default)."""
        rows = self._query(
            "SELECT root, COUNT(*), COALESCE(SUM(size), 0) FROM instances GROUP BY root"
        )
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}

    def set_location(self, sop_uid: str, root: str, path: str) -> None:
        """Record that an instance's file now lives in storage directory `root` at `path`."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE instances SET root = ?, path = ? WHERE sop_uid = ?", (root, path, sop_uid)
            )

    def total_bytes(self) -> int:
        return int(self._query("SELECT COALESCE(SUM(size), 0) FROM instances")[0][0])

    def counts(self) -> dict[str, int]:
        row = self._query(
            "SELECT (SELECT COUNT(*) FROM patients), (SELECT COUNT(*) FROM studies), "
            "(SELECT COUNT(*) FROM series), (SELECT COUNT(*) FROM instances)"
        )[0]
        return {"patients": row[0], "studies": row[1], "series": row[2], "instances": row[3]}

    # -- Query/Retrieve ------------------------------------------------------------------------

    def search(self, level: str, matchers: dict[str, Matcher]) -> list[dict[str, Any]]:
        """Entities at `level` matching every key (keys of lower levels are ignored).

        Each row maps DICOM keywords of the level and the levels above to stored values, plus
        ``_pk`` (the entity's key) and, at IMAGE level, ``_path``/``_transfer_syntax``.
        """
        depth = LEVELS.index(level)
        keys = {
            kw: m
            for kw, m in matchers.items()
            if kw in QUERY_ATTRIBUTES
            and LEVELS.index(QUERY_ATTRIBUTES[kw].level) <= depth
            and not m.is_universal
        }
        columns = [
            (kw, col) for kw, col in QUERY_ATTRIBUTES.items() if LEVELS.index(col.level) <= depth
        ]
        select = [f"{col.sql} AS {kw}" for kw, col in columns]
        select.append(f"{_LEVEL_PK[level]} AS _pk")
        if level == "IMAGE":
            select += [
                "i.root AS _root",
                "i.path AS _path",
                "i.transfer_syntax AS _transfer_syntax",
            ]
        where: list[str] = []
        params: list[Any] = []
        for kw, matcher in keys.items():
            col = QUERY_ATTRIBUTES[kw]
            clause = matcher.sql(col.sql, multi_valued=col.multi_valued)
            if clause is not None:
                where.append(f"({clause[0]})")
                params.extend(clause[1])
        sql = f"SELECT {', '.join(select)} FROM {_LEVEL_FROM[level]}"  # noqa: S608
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {_LEVEL_ORDER[level]}"
        out = []
        for row in self._query(sql, params):
            values = dict(row)
            if all(m.matches(values[kw]) for kw, m in keys.items()):
                out.append(values)
        return out

    def related_counts(self, level: str, pks: list[int]) -> dict[int, dict[str, Any]]:
        """Number of ...Related... attributes (and SOP classes in study) for entities at `level`."""
        if not pks or level == "IMAGE":
            return {}
        out: dict[int, dict[str, Any]] = {pk: {} for pk in pks}
        for chunk in _chunks(pks, 500):
            marks = ",".join("?" * len(chunk))
            if level == "PATIENT":
                sql = (
                    "SELECT st.patient_fk, COUNT(DISTINCT st.pk), COUNT(DISTINCT se.pk), "  # noqa: S608
                    "COUNT(i.pk) FROM studies st LEFT JOIN series se ON se.study_fk = st.pk "
                    "LEFT JOIN instances i ON i.series_fk = se.pk "
                    f"WHERE st.patient_fk IN ({marks}) GROUP BY st.patient_fk"
                )
                for r in self._query(sql, chunk):
                    out[r[0]].update(
                        NumberOfPatientRelatedStudies=r[1],
                        NumberOfPatientRelatedSeries=r[2],
                        NumberOfPatientRelatedInstances=r[3],
                    )
            elif level == "STUDY":
                sql = (
                    "SELECT se.study_fk, COUNT(DISTINCT se.pk), COUNT(i.pk), "  # noqa: S608
                    "GROUP_CONCAT(DISTINCT i.sop_class) FROM series se "
                    "LEFT JOIN instances i ON i.series_fk = se.pk "
                    f"WHERE se.study_fk IN ({marks}) GROUP BY se.study_fk"
                )
                for r in self._query(sql, chunk):
                    out[r[0]].update(
                        NumberOfStudyRelatedSeries=r[1],
                        NumberOfStudyRelatedInstances=r[2],
                        SOPClassesInStudy=sorted((r[3] or "").split(",")) if r[3] else [],
                    )
            elif level == "SERIES":
                sql = (
                    "SELECT series_fk, COUNT(*) FROM instances "  # noqa: S608
                    f"WHERE series_fk IN ({marks}) GROUP BY series_fk"
                )
                for r in self._query(sql, chunk):
                    out[r[0]].update(NumberOfSeriesRelatedInstances=r[1])
        return out

    def instances_for(self, level: str, pks: list[int]) -> list[dict[str, Any]]:
        """Every instance under the given entities: what a C-MOVE/C-GET sends, with the index's
        patient attributes (coerced into the objects on retrieve)."""
        if not pks:
            return []
        column = {"PATIENT": "p.pk", "STUDY": "st.pk", "SERIES": "se.pk", "IMAGE": "i.pk"}[level]
        out: list[dict[str, Any]] = []
        for chunk in _chunks(pks, 500):
            marks = ",".join("?" * len(chunk))
            sql = (
                "SELECT i.sop_uid, i.sop_class, i.transfer_syntax, i.root, i.path, i.size, "  # noqa: S608
                "p.patient_id, p.issuer, p.name AS patient_name, p.birth_date, p.sex "
                f"FROM {_LEVEL_FROM['IMAGE']} WHERE {column} IN ({marks}) "
                f"ORDER BY st.pk, {_LEVEL_ORDER['IMAGE']}"
            )
            out.extend(dict(r) for r in self._query(sql, chunk))
        return out

    # -- patient administration (HL7 ADT) ------------------------------------------------------

    def update_patient_demographics(
        self,
        patient_id: str,
        issuer: str | None = None,
        *,
        name: str | None = None,
        birth_date: str | None = None,
        sex: str | None = None,
    ) -> int:
        """ADT A08: update a patient's name, birth date and sex (None leaves a field as is).

        `issuer` None matches the patient ID under any issuer. Returns the number of studies of
        the updated patient(s); 0 means the patient is unknown (or has no studies).
        """
        fields = {"name": name, "birth_date": birth_date, "sex": sex}
        fields = {k: v for k, v in fields.items() if v is not None}
        with self.transaction() as conn:
            pks = self._patient_pks(conn, patient_id, issuer)
            if not pks:
                return 0
            if fields:
                sets = ", ".join(f"{k} = ?" for k in fields)
                for pk in pks:
                    conn.execute(
                        f"UPDATE patients SET {sets}, updated_at = ? WHERE pk = ?",  # noqa: S608
                        (*fields.values(), time.time(), pk),
                    )
            marks = ",".join("?" * len(pks))
            return int(
                conn.execute(
                    f"SELECT COUNT(*) FROM studies WHERE patient_fk IN ({marks})",  # noqa: S608
                    pks,
                ).fetchone()[0]
            )

    def merge_patient(
        self,
        prior_patient_id: str,
        target_patient_id: str,
        issuer: str | None = None,
        *,
        target_name: str | None = None,
        target_birth_date: str | None = None,
        target_sex: str | None = None,
    ) -> int:
        """ADT A40: move every study of the prior patient to the target and remove the prior.

        The target is created when missing (demographics from the arguments, else the prior's).
        `issuer` None matches the prior ID under any issuer. Returns the number of studies moved;
        0 when the prior patient is unknown (nothing is created then).
        """
        now = time.time()
        with self.transaction() as conn:
            prior_pks = self._patient_pks(conn, prior_patient_id, issuer)
            if not prior_pks:
                return 0
            prior = conn.execute("SELECT * FROM patients WHERE pk = ?", (prior_pks[0],)).fetchone()
            target_issuer = issuer if issuer is not None else prior["issuer"]
            target = conn.execute(
                "SELECT pk FROM patients WHERE patient_id = ? AND issuer = ?",
                (target_patient_id, target_issuer),
            ).fetchone()
            if target is None:
                target_pk = conn.execute(
                    "INSERT INTO patients (patient_id, issuer, name, birth_date, sex, "
                    "created_at, updated_at) VALUES (?,?,?,?,?,?,?)",
                    (
                        target_patient_id,
                        target_issuer,
                        target_name if target_name is not None else prior["name"],
                        target_birth_date if target_birth_date is not None else prior["birth_date"],
                        target_sex if target_sex is not None else prior["sex"],
                        now,
                        now,
                    ),
                ).lastrowid
            else:
                target_pk = target["pk"]
                fields = {"name": target_name, "birth_date": target_birth_date, "sex": target_sex}
                fields = {k: v for k, v in fields.items() if v is not None}
                if fields:
                    sets = ", ".join(f"{k} = ?" for k in fields)
                    conn.execute(
                        f"UPDATE patients SET {sets}, updated_at = ? WHERE pk = ?",  # noqa: S608
                        (*fields.values(), now, target_pk),
                    )
            moved = 0
            for pk in prior_pks:
                if pk == target_pk:
                    continue
                moved += conn.execute(
                    "UPDATE studies SET patient_fk = ?, updated_at = ? WHERE patient_fk = ?",
                    (target_pk, now, pk),
                ).rowcount
                conn.execute("DELETE FROM patients WHERE pk = ?", (pk,))
            return moved

    # -- study edit (the administrator's reconcile tool) ----------------------------------------

    def edit_study(
        self,
        study_uid: str,
        changes: dict[str, str],
        sizes: dict[str, int],
        *,
        series_uids: list[str] | None = None,
        new_study_uid: str | None = None,
    ) -> bool:
        """Apply an administrator's study edit to the index, after its files were rewritten.

        Patient keys (`PATIENT_EDIT_FIELDS`) move the study to the patient they name (created
        when unknown, its demographics taken from the change, else from the study's patient) and
        update that patient's demographics given in the change; study keys overwrite the study's
        values. With `series_uids` and `new_study_uid` (a split) only those series move, into a
        new study that copies the old one's attributes. `sizes` are the rewritten files' sizes.
        Returns False when the study is unknown.
        """
        now = time.time()
        with self.transaction() as conn:
            study = conn.execute(
                "SELECT st.*, p.patient_id, p.issuer, p.name, p.birth_date, p.sex "
                "FROM studies st JOIN patients p ON st.patient_fk = p.pk WHERE st.study_uid = ?",
                (study_uid,),
            ).fetchone()
            if study is None:
                return False
            target_pk = self._edit_patient(conn, study, changes, now)
            study_pk = study["pk"]
            if series_uids is not None and new_study_uid is not None:
                copied = [c for c in _STUDY_COLUMNS if c != "study_uid"]
                study_pk = conn.execute(
                    f"INSERT INTO studies (study_uid, {', '.join(copied)}, patient_fk, "  # noqa: S608
                    f"created_at, updated_at) VALUES ({', '.join('?' * (len(copied) + 4))})",
                    (new_study_uid, *(study[c] for c in copied), target_pk, now, now),
                ).lastrowid
                marks = ",".join("?" * len(series_uids))
                conn.execute(
                    f"UPDATE series SET study_fk = ? WHERE series_uid IN ({marks})",  # noqa: S608
                    (study_pk, *series_uids),
                )
                self._refresh_modalities(conn, study_pk)
                self._prune(conn, [], [study["pk"]])
            else:
                conn.execute(
                    "UPDATE studies SET patient_fk = ?, updated_at = ? WHERE pk = ?",
                    (target_pk, now, study_pk),
                )
            fields = {
                column: changes[keyword]
                for keyword, column in STUDY_EDIT_FIELDS.items()
                if keyword in changes
            }
            if fields:
                sets = ", ".join(f"{k} = ?" for k in fields)
                conn.execute(
                    f"UPDATE studies SET {sets}, updated_at = ? WHERE pk = ?",  # noqa: S608
                    (*fields.values(), now, study_pk),
                )
            patient = conn.execute(
                "SELECT patient_id, name FROM patients WHERE pk = ?", (target_pk,)
            ).fetchone()
            for sop_uid, size in sizes.items():
                conn.execute(
                    "UPDATE instances SET size = ?, file_patient_id = ?, file_patient_name = ? "
                    "WHERE sop_uid = ?",
                    (size, patient["patient_id"], patient["name"], sop_uid),
                )
        return True

    @staticmethod
    def _edit_patient(
        conn: sqlite3.Connection, study: sqlite3.Row, changes: dict[str, str], now: float
    ) -> int:
        """The patient a study edit puts the study under (created or updated as the edit says)."""
        given = {
            column: changes[keyword]
            for keyword, column in PATIENT_EDIT_FIELDS.items()
            if keyword in changes
        }
        key = (
            given.get("patient_id", study["patient_id"]),
            given.get("issuer", study["issuer"]),
        )
        demographics = {k: v for k, v in given.items() if k not in ("patient_id", "issuer")}
        row = conn.execute(
            "SELECT pk FROM patients WHERE patient_id = ? AND issuer = ?", key
        ).fetchone()
        if row is None:
            values = {
                "name": study["name"],
                "birth_date": study["birth_date"],
                "sex": study["sex"],
                **demographics,
            }
            return int(
                conn.execute(
                    "INSERT INTO patients (patient_id, issuer, name, birth_date, sex, created_at, "
                    "updated_at) VALUES (?,?,?,?,?,?,?)",
                    (*key, values["name"], values["birth_date"], values["sex"], now, now),
                ).lastrowid
            )
        if demographics:
            sets = ", ".join(f"{k} = ?" for k in demographics)
            conn.execute(
                f"UPDATE patients SET {sets}, updated_at = ? WHERE pk = ?",  # noqa: S608
                (*demographics.values(), now, row["pk"]),
            )
        return int(row["pk"])

    @staticmethod
    def _patient_pks(conn: sqlite3.Connection, patient_id: str, issuer: str | None) -> list[int]:
        if issuer is None:
            rows = conn.execute(
                "SELECT pk FROM patients WHERE patient_id = ? ORDER BY pk", (patient_id,)
            ).fetchall()
        else:
            rows = conn.execute(
                "SELECT pk FROM patients WHERE patient_id = ? AND issuer = ?",
                (patient_id, issuer),
            ).fetchall()
        return [int(r[0]) for r in rows]

    # -- the admin console ---------------------------------------------------------------------

    _STUDY_SUMMARY = (
        "SELECT st.study_uid, st.study_date, st.study_time, st.accession, st.study_id, "
        "st.description, st.referring_physician, st.modalities, st.created_at, st.updated_at, "
        "p.patient_id, p.issuer, p.name AS patient_name, p.birth_date, p.sex, "
        "(SELECT COUNT(*) FROM series se WHERE se.study_fk = st.pk) AS series_count, "
        "(SELECT COUNT(*) FROM instances i JOIN series se ON i.series_fk = se.pk "
        " WHERE se.study_fk = st.pk) AS instance_count, "
        "(SELECT COALESCE(SUM(i.size), 0) FROM instances i JOIN series se "
        " ON i.series_fk = se.pk WHERE se.study_fk = st.pk) AS bytes, "
        "(SELECT GROUP_CONCAT(fid, char(31)) FROM (SELECT DISTINCT i.file_patient_id AS fid "
        " FROM instances i JOIN series se ON i.series_fk = se.pk WHERE se.study_fk = st.pk)) "
        "AS file_patient_ids "
        "FROM studies st JOIN patients p ON st.patient_fk = p.pk"
    )

    @staticmethod
    def _study_dict(row: sqlite3.Row) -> dict[str, Any]:
        d = dict(row)
        d["modalities"] = [m for m in d["modalities"].split("\\") if m]
        joined = d.pop("file_patient_ids")
        ids = sorted(joined.split(_UNIT_SEPARATOR)) if joined is not None else []
        d["file_patient_ids"] = ids
        d["mixed_patients"] = any(i != d["patient_id"] for i in ids)
        d["received_at"] = d.pop("created_at")
        return d

    def list_studies(
        self,
        *,
        patient_id: str | None = None,
        accession: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Studies, newest first, optionally of one patient ID or accession number.

        ``file_patient_ids`` lists the Patient IDs found in the study's files and
        ``mixed_patients`` is true when one differs from the study's patient (a data fault).
        """
        sql = self._STUDY_SUMMARY
        where, params = [], []
        if patient_id is not None:
            where.append("p.patient_id = ?")
            params.append(patient_id)
        if accession is not None:
            where.append("st.accession = ?")
            params.append(accession)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY st.created_at DESC, st.pk DESC LIMIT ? OFFSET ?"
        return [self._study_dict(r) for r in self._query(sql, [*params, limit, offset])]

    def study_detail(self, study_uid: str) -> dict[str, Any] | None:
        """One study with its series and their instances, or None."""
        rows = self._query(self._STUDY_SUMMARY + " WHERE st.study_uid = ?", (study_uid,))
        if not rows:
            return None
        study = self._study_dict(rows[0])
        series_rows = self._query(
            "SELECT se.pk, se.series_uid, se.modality, se.number, se.description, se.body_part, "
            "se.station FROM series se JOIN studies st ON se.study_fk = st.pk "
            "WHERE st.study_uid = ? ORDER BY CAST(se.number AS INTEGER), se.pk",
            (study_uid,),
        )
        series = []
        for s in series_rows:
            item = dict(s)
            pk = item.pop("pk")
            item["instances"] = [
                dict(r)
                for r in self._query(
                    "SELECT sop_uid, sop_class, number, transfer_syntax, size, received_at, "
                    "calling_ae, file_patient_id, file_patient_name FROM instances "
                    "WHERE series_fk = ? ORDER BY CAST(number AS INTEGER), pk",
                    (pk,),
                )
            ]
            series.append(item)
        study["series"] = series
        return study

    def list_patients(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """Patients with their number of studies, by name."""
        rows = self._query(
            "SELECT p.patient_id, p.issuer, p.name, p.birth_date, p.sex, p.updated_at, "
            "(SELECT COUNT(*) FROM studies st WHERE st.patient_fk = p.pk) AS study_count "
            "FROM patients p ORDER BY p.name, p.patient_id LIMIT ? OFFSET ?",
            (limit, offset),
        )
        return [dict(r) for r in rows]


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
