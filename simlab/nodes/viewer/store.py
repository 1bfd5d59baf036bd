"""The viewer's local store: received objects on disk and a small SQLite index.

A received data set is written as a Part 10 file (preamble, File Meta Information, the data set
bytes exactly as received) durably — temp file, fsync, rename to
``data/objects/ab/cd/<sha256(SOP Instance UID)>.dcm``, fsync of the directory — and only then
indexed and answered Success. The index holds study / series / instance rows (patient name and
ID, accession, received time, source AE), the read/unread state of the reading list and the
history of open attempts.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import zlib
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
)

from simlab.common.dicom_status import Status
from simlab.common.durable_files import (
    OUT_OF_SPACE_ERRNOS,
    remove_stale_temp_files,
    write_durably,
)
from simlab.common.safe_paths import ensure_inside, fanned_path

_PREAMBLE = b"\x00" * 128 + b"DICM"
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL DEFAULT '',
    patient_name TEXT NOT NULL DEFAULT '',
    accession TEXT NOT NULL DEFAULT '',
    study_date TEXT NOT NULL DEFAULT '',
    study_description TEXT NOT NULL DEFAULT '',
    source_ae TEXT NOT NULL DEFAULT '',
    first_received REAL NOT NULL,
    last_received REAL NOT NULL,
    read_at REAL
);
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    modality TEXT NOT NULL DEFAULT '',
    series_number TEXT NOT NULL DEFAULT '',
    series_description TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY,
    series_uid TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    sop_class TEXT NOT NULL,
    transfer_syntax TEXT NOT NULL,
    instance_number TEXT NOT NULL DEFAULT '',
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    source_ae TEXT NOT NULL DEFAULT '',
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_study ON instances(study_uid);
CREATE INDEX IF NOT EXISTS series_study ON series(study_uid);
CREATE INDEX IF NOT EXISTS studies_accession ON studies(accession);
CREATE TABLE IF NOT EXISTS opens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at REAL NOT NULL,
    record TEXT NOT NULL
);
"""


@dataclass
class StoreResult:
    """What a C-STORE did: the DIMSE status, a comment, and the study it went to."""

    status: int
    comment: str = ""
    study_uid: str = ""


def _header(data: bytes, transfer_syntax: str) -> Dataset:
    """The data set's elements before Pixel Data; ValueError when unreadable."""
    ts = UID(transfer_syntax)
    if ts == DeflatedExplicitVRLittleEndian:
        data = zlib.decompress(data, -zlib.MAX_WBITS)
    ds = read_dataset(
        BytesIO(data),
        ts == ImplicitVRLittleEndian,
        ts != ExplicitVRBigEndian,
        stop_when=lambda tag, _vr, _len: int(tag) in _PIXEL_TAGS,
    )
    if len(ds) == 0:
        raise ValueError("no data elements")
    return ds


def _text(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword)
    except Exception:
        return ""
    if value is None:
        return ""
    return str(value).strip().rstrip("\0")


def file_meta_bytes(sop_class: str, sop_instance: str, transfer_syntax: str, source: str) -> bytes:
    """Encoded File Meta Information group (PS3.10 7.1) for a received object."""
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "SIMLAB_VIEWER"
    if source:
        meta.SourceApplicationEntityTitle = source[:16]
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_file_meta_info(fp, meta, enforce_standard=True)
    return fp.getvalue()


class ViewerStore:
    """Objects on disk plus their index; thread-safe (one connection behind a lock)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.objects_dir = data_dir / "objects"
        self.tmp_dir = data_dir / "tmp"
        self._db_path = data_dir / "viewer.sqlite"
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def open(self) -> int:
        """Create directories, open the index; returns the number of stale temp files removed."""
        for directory in (self.data_dir, self.objects_dir, self.tmp_dir):
            directory.mkdir(parents=True, exist_ok=True)
        removed = remove_stale_temp_files(self.tmp_dir)
        self._db = sqlite3.connect(self._db_path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        return removed

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    # -- C-STORE -------------------------------------------------------------------------------

    def store(
        self,
        dataset_bytes: bytes,
        transfer_syntax: str,
        sop_class_uid: str,
        sop_instance_uid: str,
        source_ae: str,
    ) -> StoreResult:
        """Store one received data set durably and index it."""
        try:
            ds = _header(dataset_bytes, transfer_syntax)
        except Exception as exc:  # pydicom raises many types for malformed input
            return StoreResult(Status.CANNOT_UNDERSTAND, f"cannot parse the data set: {exc}")
        sop_uid = _text(ds, "SOPInstanceUID")
        sop_class = _text(ds, "SOPClassUID")
        study_uid = _text(ds, "StudyInstanceUID")
        series_uid = _text(ds, "SeriesInstanceUID")
        if not sop_uid or sop_uid != sop_instance_uid.strip().rstrip("\0"):
            return StoreResult(
                Status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                "SOP Instance UID missing or different from the command's",
            )
        if sop_class != sop_class_uid.strip().rstrip("\0"):
            return StoreResult(
                Status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                "SOP Class UID missing or different from the command's",
            )
        if not study_uid or not series_uid:
            return StoreResult(
                Status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                "Study or Series Instance UID missing from the data set",
            )
        final = fanned_path(self.objects_dir, sop_uid, ".dcm")
        meta = file_meta_bytes(sop_class, sop_uid, transfer_syntax, source_ae)
        try:
            size = write_durably(
                self.tmp_dir, final, (_PREAMBLE, meta, dataset_bytes), self.objects_dir
            )
        except OSError as exc:
            if exc.errno in OUT_OF_SPACE_ERRNOS:
                return StoreResult(Status.OUT_OF_RESOURCES, f"disk full: {exc.strerror}")
            return StoreResult(Status.PROCESSING_FAILURE, f"cannot write the object: {exc}")
        now = time.time()
        values = {
            "study_uid": study_uid,
            "series_uid": series_uid,
            "sop_uid": sop_uid,
            "sop_class": sop_class,
            "ts": str(transfer_syntax),
            "path": final.relative_to(self.objects_dir).as_posix(),
            "size": size,
            "source": source_ae,
            "now": now,
            "patient_id": _text(ds, "PatientID"),
            "patient_name": _text(ds, "PatientName"),
            "accession": _text(ds, "AccessionNumber"),
            "study_date": _text(ds, "StudyDate"),
            "study_description": _text(ds, "StudyDescription"),
            "modality": _text(ds, "Modality"),
            "series_number": _text(ds, "SeriesNumber"),
            "series_description": _text(ds, "SeriesDescription"),
            "instance_number": _text(ds, "InstanceNumber"),
        }
        try:
            with self._lock:
                self._index(values)
        except sqlite3.Error as exc:
            final.unlink(missing_ok=True)
            if "full" in str(exc).lower():
                return StoreResult(Status.OUT_OF_RESOURCES, f"index cannot grow: {exc}")
            return StoreResult(Status.PROCESSING_FAILURE, f"index error: {exc}")
        return StoreResult(Status.SUCCESS, "", study_uid)

    def _index(self, v: dict[str, Any]) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT INTO studies (study_uid, patient_id, patient_name, accession, study_date,"
                " study_description, source_ae, first_received, last_received)"
                " VALUES (:study_uid, :patient_id, :patient_name, :accession, :study_date,"
                " :study_description, :source, :now, :now)"
                " ON CONFLICT(study_uid) DO UPDATE SET patient_id=excluded.patient_id,"
                " patient_name=excluded.patient_name, accession=excluded.accession,"
                " study_date=excluded.study_date, study_description=excluded.study_description,"
                " source_ae=excluded.source_ae, last_received=excluded.last_received",
                v,
            )
            db.execute(
                "INSERT INTO series (series_uid, study_uid, modality, series_number,"
                " series_description) VALUES (:series_uid, :study_uid, :modality,"
                " :series_number, :series_description)"
                " ON CONFLICT(series_uid) DO UPDATE SET modality=excluded.modality,"
                " series_number=excluded.series_number,"
                " series_description=excluded.series_description",
                v,
            )
            db.execute(
                "INSERT OR REPLACE INTO instances (sop_uid, series_uid, study_uid, sop_class,"
                " transfer_syntax, instance_number, path, size, source_ae, received_at)"
                " VALUES (:sop_uid, :series_uid, :study_uid, :sop_class, :ts,"
                " :instance_number, :path, :size, :source, :now)",
                v,
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # -- queries -------------------------------------------------------------------------------

    _STUDY_COLUMNS = (
        "s.study_uid, s.patient_id, s.patient_name, s.accession, s.study_date,"
        " s.study_description, s.source_ae, s.first_received, s.last_received, s.read_at,"
        " (SELECT COUNT(*) FROM instances i WHERE i.study_uid = s.study_uid) AS instances,"
        " (SELECT COUNT(*) FROM series r WHERE r.study_uid = s.study_uid) AS series_count"
    )

    def list_studies(
        self, accession: str | None = None, patient_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        where, args = [], []
        if accession:
            where.append("s.accession = ?")
            args.append(accession)
        if patient_id:
            where.append("s.patient_id = ?")
            args.append(patient_id)
        sql = f"SELECT {self._STUDY_COLUMNS} FROM studies s"  # noqa: S608 (fixed columns)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY s.last_received DESC LIMIT ?"
        with self._lock:
            rows = self.db.execute(sql, [*args, limit]).fetchall()
        return [_study_row(r) for r in rows]

    def study_detail(self, study_uid: str) -> dict[str, Any] | None:
        with self._lock:
            row = self.db.execute(
                f"SELECT {self._STUDY_COLUMNS} FROM studies s WHERE s.study_uid = ?",  # noqa: S608
                (study_uid,),
            ).fetchone()
            if row is None:
                return None
            series = self.db.execute(
                "SELECT r.series_uid, r.modality, r.series_number, r.series_description,"
                " (SELECT COUNT(*) FROM instances i WHERE i.series_uid = r.series_uid)"
                " AS instances FROM series r WHERE r.study_uid = ? ORDER BY r.series_number",
                (study_uid,),
            ).fetchall()
            instances = self.db.execute(
                "SELECT sop_uid, series_uid, sop_class, transfer_syntax, instance_number, size,"
                " source_ae, received_at FROM instances WHERE study_uid = ?"
                " ORDER BY series_uid, CAST(instance_number AS INTEGER)",
                (study_uid,),
            ).fetchall()
        out = _study_row(row)
        out["series"] = [dict(s) for s in series]
        out["instance_list"] = [dict(i) for i in instances]
        return out

    def study_summary(self, study_uid: str, since: float | None = None) -> dict[str, Any]:
        """Instance count and series of a study as held now (zero when absent); with `since`,
        also how many of its instances arrived at or after that time."""
        with self._lock:
            arrived = None
            if since is not None:
                arrived = self.db.execute(
                    "SELECT COUNT(*) FROM instances WHERE study_uid = ? AND received_at >= ?",
                    (study_uid, since),
                ).fetchone()[0]
            series = self.db.execute(
                "SELECT r.series_uid, r.modality, r.series_number, r.series_description,"
                " (SELECT COUNT(*) FROM instances i WHERE i.series_uid = r.series_uid)"
                " AS instances FROM series r WHERE r.study_uid = ? ORDER BY r.series_number",
                (study_uid,),
            ).fetchall()
        series_list = [dict(s) for s in series]
        out: dict[str, Any] = {
            "instances": sum(s["instances"] for s in series_list),
            "series": series_list,
        }
        if arrived is not None:
            out["arrived"] = arrived
        return out

    def mark_read(self, study_uid: str, read: bool = True) -> bool:
        with self._lock:
            cur = self.db.execute(
                "UPDATE studies SET read_at = ? WHERE study_uid = ?",
                (time.time() if read else None, study_uid),
            )
        return cur.rowcount > 0

    def file_of(self, sop_uid: str) -> Path | None:
        """The cached file of an instance, found by its index row (never built from the UID);
        None when the viewer does not hold it, its file is gone, or the row points outside."""
        with self._lock:
            row = self.db.execute(
                "SELECT path FROM instances WHERE sop_uid = ?", (sop_uid,)
            ).fetchone()
        if row is None:
            return None
        try:
            path = ensure_inside(self.objects_dir, self.objects_dir / row["path"])
        except ValueError:
            return None
        return path if path.is_file() else None

    def delete_study(self, study_uid: str) -> int:
        """Remove a study's files and rows; returns the number of instances removed."""
        with self._lock:
            rows = self.db.execute(
                "SELECT path FROM instances WHERE study_uid = ?", (study_uid,)
            ).fetchall()
            exists = self.db.execute(
                "SELECT 1 FROM studies WHERE study_uid = ?", (study_uid,)
            ).fetchone()
            for row in rows:
                path = ensure_inside(self.objects_dir, self.objects_dir / row["path"])
                path.unlink(missing_ok=True)
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("DELETE FROM instances WHERE study_uid = ?", (study_uid,))
            self.db.execute("DELETE FROM series WHERE study_uid = ?", (study_uid,))
            self.db.execute("DELETE FROM studies WHERE study_uid = ?", (study_uid,))
            self.db.execute("COMMIT")
        return len(rows) if exists else -1

    def stats(self) -> dict[str, Any]:
        with self._lock:
            studies = self.db.execute("SELECT COUNT(*) FROM studies").fetchone()[0]
            unread = self.db.execute(
                "SELECT COUNT(*) FROM studies WHERE read_at IS NULL"
            ).fetchone()[0]
            series = self.db.execute("SELECT COUNT(*) FROM series").fetchone()[0]
            inst, size = self.db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM instances"
            ).fetchone()
        return {
            "studies": studies,
            "unread_studies": unread,
            "series": series,
            "instances": inst,
            "bytes_stored": size,
        }

    # -- open history --------------------------------------------------------------------------

    def record_open(self, record: dict[str, Any], keep: int) -> None:
        with self._lock:
            self.db.execute(
                "INSERT INTO opens (started_at, record) VALUES (?, ?)",
                (record.get("started_at", time.time()), json.dumps(record, default=str)),
            )
            self.db.execute(
                "DELETE FROM opens WHERE id NOT IN (SELECT id FROM opens ORDER BY id DESC LIMIT ?)",
                (keep,),
            )

    def opens(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            rows = self.db.execute(
                "SELECT id, record FROM opens ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [{"id": r["id"], **json.loads(r["record"])} for r in rows]


def _study_row(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    out["read"] = out["read_at"] is not None
    return out
