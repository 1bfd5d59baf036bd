"""The PACS archive: durable object files plus the SQLite index.

What a C-STORE does here, in order (nothing is answered Success before the object is durable):

1. parse the header of the received data set only (up to Pixel Data; pixel data is never decoded)
   and check it: SOP Class/Instance UID present and equal to the command's, Study/Series UIDs;
2. apply the duplicate policy and the quota (``storage.quota_bytes``) before writing anything;
3. write preamble + File Meta Information + the data set bytes exactly as received to ``data/tmp``,
   flush, fsync;
4. rename into ``data/objects/ab/cd/<sha256(SOP Instance UID)>.dcm`` (the name never comes from
   the untrusted UID, see `safe_paths`), fsync the directory;

   ``storage.path`` moves where new objects go (another filesystem: the temp file is written in
   ``<path>/.incoming`` so the rename never crosses filesystems); each index row remembers its
   storage directory, so objects written before stay readable where they are;
5. write the index row; only then Success.

A full disk (ENOSPC, EDQUOT, EFBIG, or SQLite's "database or disk is full") answers 0xA700 like a
quota does, and leaves neither a half file nor a row. `open` repairs what a crash can leave: temp
files are removed, object files without a row are indexed, rows whose file is gone are dropped.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import shutil
import sqlite3
import struct
import threading
import uuid
import zlib
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.charset import python_encoding
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
)

from simlab.common.config import PacsConfig
from simlab.common.dicom_status import Status, describe, hex_status
from simlab.common.safe_paths import ensure_inside, fanned_path
from simlab.nodes.pacs.index import Index, InstanceRecord

IMPLEMENTATION_CLASS_UID = PYDICOM_IMPLEMENTATION_UID
IMPLEMENTATION_VERSION_NAME = "SIMLAB_PACS"
_PIXEL_DATA_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
_OUT_OF_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_PREAMBLE = b"\x00" * 128 + b"DICM"


class UnreadableDataset(ValueError):
    """The received bytes are not a data set in the negotiated transfer syntax."""


def _stop_at_pixels(tag: Any, _vr: Any, _length: int) -> bool:
    return int(tag) in _PIXEL_DATA_TAGS


def parse_header(data: bytes, transfer_syntax: str) -> Dataset:
    """The data set's elements before Pixel Data, read from the bytes received on the wire.

    Raises UnreadableDataset when the bytes are not a data set in `transfer_syntax`: a decode
    error, an encoding other than the negotiated one, elements out of order, or a value cut short.
    """
    ts = UID(transfer_syntax)
    implicit = ts == ImplicitVRLittleEndian
    little = ts != ExplicitVRBigEndian
    if ts == DeflatedExplicitVRLittleEndian:
        try:
            data = zlib.decompress(data, -zlib.MAX_WBITS)
        except zlib.error as exc:
            raise UnreadableDataset(f"deflated data set does not inflate: {exc}") from exc
    fp = BytesIO(data)
    try:
        ds = read_dataset(fp, implicit, little, stop_when=_stop_at_pixels)
    except Exception as exc:  # pydicom raises many types for malformed input
        raise UnreadableDataset(f"{type(exc).__name__}: {exc}") from exc
    if fp.tell() < len(data):  # stopped at Pixel Data: check its length, never its content
        _check_pixel_element(data, fp.tell(), implicit=implicit, little=little)
    if len(ds) == 0:
        raise UnreadableDataset("no data elements")
    if ds.original_encoding[0] is not None and ds.original_encoding[0] != implicit:
        found = "implicit" if ds.original_encoding[0] else "explicit"
        raise UnreadableDataset(
            f"data set is encoded with {found} VR, not in the negotiated {ts.name}"
        )
    previous = -1
    for tag, raw in ds._dict.items():
        if int(tag) <= previous:
            raise UnreadableDataset(f"data element {tag} out of order")
        previous = int(tag)
        length = getattr(raw, "length", None)
        value = getattr(raw, "value", None)
        if (
            isinstance(value, bytes)
            and length is not None
            and length != 0xFFFFFFFF
            and len(value) != length
        ):
            raise UnreadableDataset(f"value of {tag} is cut short ({len(value)} of {length} bytes)")
    return ds


_SEQUENCE_DELIMITER = {
    True: b"\xfe\xff\xdd\xe0\x00\x00\x00\x00",
    False: b"\xff\xfe\xe0\xdd\x00\x00\x00\x00",
}


def _check_pixel_element(data: bytes, offset: int, *, implicit: bool, little: bool) -> None:
    """Raise UnreadableDataset when the Pixel Data element at `offset` is cut short: a defined
    length longer than the bytes left, or encapsulated fragments without their delimiter."""
    order = "<" if little else ">"
    if implicit:
        header, length = 8, struct.unpack_from(order + "I", data, offset + 4)[0]
    elif data[offset + 4 : offset + 6] in (b"OB", b"OW", b"OF", b"OD", b"OL", b"UN", b"OV"):
        header, length = 12, struct.unpack_from(order + "I", data, offset + 8)[0]
    else:
        header, length = 8, struct.unpack_from(order + "H", data, offset + 6)[0]
    available = len(data) - offset - header
    if length == 0xFFFFFFFF:
        if data.rfind(_SEQUENCE_DELIMITER[little], offset + header) < 0:
            raise UnreadableDataset("encapsulated Pixel Data has no sequence delimiter (cut short)")
    elif length > available:
        raise UnreadableDataset(f"Pixel Data is cut short ({available} of {length} bytes)")


def _text(ds: Dataset, keyword: str) -> str:
    """An attribute as stripped text, through pydicom's conversion ('' when absent/unreadable)."""
    try:
        elem = ds.data_element(keyword)
        value = None if elem is None else elem.value
    except Exception:
        return ""
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v).strip() for v in value)
    return str(value).strip().rstrip("\0")


_TEXT_VRS = frozenset({"SH", "LO", "PN", "ST", "LT", "UT", "UC"})
"""VRs whose bytes are in the Specific Character Set; the others are ASCII (PS3.5 6.1.2)."""
_UNSPLIT_VRS = frozenset({"ST", "LT", "UT"})


@functools.lru_cache(maxsize=128)
def _tag_and_vr(keyword: str) -> tuple[int, str]:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return tag, str(dictionary_VR(tag))


def _codec(ds: Dataset) -> str | None:
    """The Python codec of the data set's text, or None when pydicom must decode it (ISO 2022
    code extensions, several character sets, an unknown term)."""
    try:
        elem = ds.get_item(0x00080005)
    except Exception:
        return None
    if elem is None or elem.value is None:
        return "latin_1"  # what pydicom assumes for the default repertoire
    value = elem.value
    text = value.decode("ascii", errors="replace") if isinstance(value, bytes) else str(value)
    terms = {t.strip() for t in text.replace("[", "").replace("]", "").split("\\")} - {""}
    if not terms:
        return "latin_1"
    if len(terms) > 1 or any(t.startswith("ISO 2022") for t in terms):
        return None
    return python_encoding.get(terms.pop())


class HeaderValues:
    """Text values of a parsed header, decoded straight from the raw element bytes.

    pydicom's general element conversion costs more than the whole disk write for the two dozen
    attributes the index needs; plain ASCII/Latin-1/UTF-8 text is decoded here, anything more
    elaborate (ISO 2022 escape sequences) goes through pydicom.
    """

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds
        self._codec = _codec(ds)

    def text(self, keyword: str) -> str:
        """Stripped text of an attribute ('' when absent); multi-values joined by backslash."""
        tag, vr = _tag_and_vr(keyword)
        try:
            elem = self.ds.get_item(tag)
        except Exception:
            return ""
        if elem is None or elem.value is None:
            return ""
        value = elem.value
        if not isinstance(value, bytes):
            return _text(self.ds, keyword)
        if vr in _TEXT_VRS:
            if self._codec is None:
                return _text(self.ds, keyword)
            text = value.decode(self._codec, errors="replace")
        else:
            text = value.decode("ascii", errors="replace")
        if vr in _UNSPLIT_VRS:
            return text.rstrip(" \0")
        return "\\".join(part.strip(" \0") for part in text.split("\\"))

    def number(self, keyword: str) -> str:
        text = self.text(keyword)
        try:
            return str(int(text))
        except ValueError:
            return text

    def date(self, keyword: str) -> str:
        return self.text(keyword).replace(".", "")


def record_from_header(
    header: HeaderValues, *, transfer_syntax: str, path: str, size: int, calling_ae: str
) -> InstanceRecord:
    """The index record of an object from its header."""
    h = header
    return InstanceRecord(
        sop_instance_uid=h.text("SOPInstanceUID"),
        sop_class_uid=h.text("SOPClassUID"),
        transfer_syntax=transfer_syntax,
        path=path,
        size=size,
        calling_ae=calling_ae,
        instance_number=h.number("InstanceNumber"),
        patient_id=h.text("PatientID"),
        issuer_of_patient_id=h.text("IssuerOfPatientID"),
        patient_name=h.text("PatientName"),
        patient_birth_date=h.date("PatientBirthDate"),
        patient_sex=h.text("PatientSex"),
        study_instance_uid=h.text("StudyInstanceUID"),
        study_date=h.date("StudyDate"),
        study_time=h.text("StudyTime"),
        accession_number=h.text("AccessionNumber"),
        study_id=h.text("StudyID"),
        study_description=h.text("StudyDescription"),
        referring_physician=h.text("ReferringPhysicianName"),
        series_instance_uid=h.text("SeriesInstanceUID"),
        modality=h.text("Modality"),
        series_number=h.number("SeriesNumber"),
        series_description=h.text("SeriesDescription"),
        body_part=h.text("BodyPartExamined"),
        station_name=h.text("StationName"),
    )


def _meta_element(element: int, vr: bytes, value: bytes) -> bytes:
    """One File Meta element, Explicit VR Little Endian (PS3.10 7.1, PS3.5 7.1.2)."""
    if len(value) % 2:
        value += b"\0" if vr in (b"UI", b"OB") else b" "
    tag = struct.pack("<HH", 0x0002, element)
    if vr == b"OB":
        return tag + vr + b"\0\0" + struct.pack("<I", len(value)) + value
    return tag + vr + struct.pack("<H", len(value)) + value


def file_meta_bytes(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, ae: str
) -> bytes:
    """Encoded File Meta Information group (PS3.10 7.1) for an object received from `ae`."""

    def ascii_bytes(text: str) -> bytes:
        return text.encode("ascii", errors="replace")

    body = b"".join(
        [
            _meta_element(0x0001, b"OB", b"\x00\x01"),
            _meta_element(0x0002, b"UI", ascii_bytes(sop_class_uid)),
            _meta_element(0x0003, b"UI", ascii_bytes(sop_instance_uid)),
            _meta_element(0x0010, b"UI", ascii_bytes(transfer_syntax)),
            _meta_element(0x0012, b"UI", ascii_bytes(IMPLEMENTATION_CLASS_UID)),
            _meta_element(0x0013, b"SH", ascii_bytes(IMPLEMENTATION_VERSION_NAME)),
        ]
        + ([_meta_element(0x0016, b"AE", ascii_bytes(ae))] if ae else [])
    )
    return _meta_element(0x0000, b"UL", struct.pack("<I", len(body))) + body


class Archive:
    """Object files under ``data/objects`` (or ``storage.path``) and their index
    ``data/index.sqlite``.

    Args:
        data_dir: the node's data directory.
        get_config: the config in force.
        logger: the node log.
        config_dir: what a relative ``storage.path`` is relative to (the config file's
            directory); the data directory's parent when not given.
    """

    def __init__(
        self,
        data_dir: Path,
        get_config: Callable[[], PacsConfig],
        logger: logging.Logger,
        config_dir: Path | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.config_dir = config_dir if config_dir is not None else data_dir.parent
        self.objects_dir = data_dir / "objects"
        self.tmp_dir = data_dir / "tmp"
        self.quarantine_dir = data_dir / "quarantine"
        self.index = Index(data_dir / "index.sqlite")
        self._get_config = get_config
        self._logger = logger
        self._space_lock = threading.Lock()
        self._bytes_stored = 0
        self._bytes_reserved = 0
        self._known_dirs: set[Path] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Create the directories, open the index and repair what a crash may have left."""
        for directory in (self.data_dir, self.objects_dir, self.tmp_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.index.open()
        self._recover()
        self._prepare_fanout()
        self._bytes_stored = self.index.total_bytes()

    def close(self) -> None:
        self.index.close()

    # -- storage directories ---------------------------------------------------------------------

    def write_root(self) -> str:
        """The index's name of the storage directory new objects go to ('' for the default)."""
        return self.root_key(self._get_config().storage.path)

    def root_key(self, configured: str) -> str:
        """The index's name of a storage directory given as in the config ('' for the default;
        otherwise its absolute path, relative ones resolved against the config directory)."""
        if not configured.strip():
            return ""
        path = Path(configured.strip())
        resolved = (path if path.is_absolute() else self.config_dir / path).resolve()
        return "" if resolved == self.objects_dir.resolve() else str(resolved)

    def storage_dirs(self) -> list[dict[str, Any]]:
        """Every storage directory that holds objects or takes new ones, with its state: a
        directory that is missing or empty while the index says it holds objects is offline
        (an unmounted or failed volume)."""
        usage = self.index.usage_by_root()
        write_root = self.write_root()
        out = []
        for root in sorted(set(usage) | {"", write_root}):
            base = self.root_dir(root)
            try:
                online = base.is_dir() and (usage.get(root, (0, 0))[0] == 0 or any(base.iterdir()))
            except OSError:
                online = False
            count, size = usage.get(root, (0, 0))
            out.append(
                {
                    "path": str(base),
                    "writes_here": root == write_root,
                    "instances": count,
                    "bytes": size,
                    "online": online,
                }
            )
        return out

    def root_dir(self, root: str) -> Path:
        """The directory of a storage directory name from the index."""
        return Path(root) if root else self.objects_dir

    def _tmp_dir_of(self, root: str) -> Path:
        return self.root_dir(root) / ".incoming" if root else self.tmp_dir

    def path_of(self, row: dict[str, Any]) -> Path:
        """The file of an index row (never outside its storage directory)."""
        base = self.root_dir(row.get("root") or "")
        return ensure_inside(base, base / row["path"])

    def _recover(self) -> None:
        roots = [""] + ([self.write_root()] if self.write_root() else [])
        walked: set[str] = set()
        on_disk: set[tuple[str, str]] = set()
        for root in roots:
            tmp_dir, base = self._tmp_dir_of(root), self.root_dir(root)
            if not base.is_dir():
                continue  # an unmounted storage filesystem: its rows stay, its files are away
            walked.add(root)
            stale = [p for p in tmp_dir.iterdir() if p.is_file()] if tmp_dir.is_dir() else []
            for path in stale:
                path.unlink(missing_ok=True)
            if stale:
                self._logger.warning("recovery: removed %d unfinished temp file(s)", len(stale))
            for dirpath, _dirs, files in os.walk(base):
                for name in files:
                    if name.endswith(".dcm"):
                        rel = (Path(dirpath) / name).relative_to(base).as_posix()
                        on_disk.add((root, rel))
        indexed = self.index.instance_paths()
        gone = [uid for key, uid in indexed.items() if key[0] in walked and key not in on_disk]
        if gone:
            self.index.remove_instances(gone)
            for uid in gone:
                self._logger.warning(
                    "recovery: index row of %s dropped, its object file is missing", uid
                )
        orphans = sorted(on_disk - set(indexed))
        reindexed = 0
        for root, rel in orphans:
            if self._reindex(self.root_dir(root) / rel, root):
                reindexed += 1
        if orphans:
            self._logger.warning(
                "recovery: %d object file(s) without index row, %d reindexed",
                len(orphans),
                reindexed,
            )

    def _reindex(self, path: Path, root: str = "") -> bool:
        try:
            ds = dcmread(path, stop_before_pixels=True)
            meta = ds.file_meta
            ts = str(meta.TransferSyntaxUID)
            ae = str(meta.get("SourceApplicationEntityTitle", "") or "").strip()
            header = HeaderValues(ds)
            sop_uid = header.text("SOPInstanceUID")
            if not sop_uid or not header.text("StudyInstanceUID"):
                raise ValueError("no SOP Instance UID or Study Instance UID")
        except Exception as exc:
            self.quarantine_dir.mkdir(parents=True, exist_ok=True)
            target = self.quarantine_dir / path.name
            os.replace(path, target)
            self._logger.error("recovery: unreadable object %s moved to %s: %s", path, target, exc)
            return False
        base = self.root_dir(root)
        canonical = fanned_path(base, sop_uid, ".dcm")
        if path != canonical:
            if canonical.exists():
                self._logger.warning(
                    "recovery: %s duplicates %s (already archived); left unindexed", path, sop_uid
                )
                return False
            canonical.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, canonical)
        rel = canonical.relative_to(base).as_posix()
        record = record_from_header(
            header, transfer_syntax=ts, path=rel, size=canonical.stat().st_size, calling_ae=ae
        )
        record.root = root
        record.received_at = canonical.stat().st_mtime
        self.index.add_instance(record)
        return True

    # -- C-STORE -----------------------------------------------------------------------------

    def store(
        self,
        dataset_bytes: bytes,
        transfer_syntax: str,
        sop_class_uid: str,
        sop_instance_uid: str,
        calling_ae: str,
    ) -> tuple[int, str]:
        """Archive one received data set; returns (DIMSE status, comment for the response/log)."""
        try:
            header = HeaderValues(parse_header(dataset_bytes, transfer_syntax))
        except UnreadableDataset as exc:
            return Status.CANNOT_UNDERSTAND, f"cannot parse the data set: {exc}"
        ds_class = header.text("SOPClassUID")
        ds_instance = header.text("SOPInstanceUID")
        command_class = sop_class_uid.strip().rstrip("\0")
        command_instance = sop_instance_uid.strip().rstrip("\0")
        if not any(header.text(k) for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID")):
            return Status.CANNOT_UNDERSTAND, "no SOP Class, SOP Instance or Study UID in data set"
        if not ds_instance:
            return (
                Status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                "SOP Instance UID (0008,0018) missing from the data set",
            )
        if ds_instance != command_instance:
            return (
                Status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                f"SOP Instance UID differs from the command's: data set {ds_instance}, "
                f"command {command_instance}",
            )
        if ds_class != command_class:
            return (
                Status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                f"SOP Class UID differs from the command's: data set {ds_class or 'none'}, "
                f"command {command_class}",
            )
        for keyword, tag in (("StudyInstanceUID", "0020,000D"), ("SeriesInstanceUID", "0020,000E")):
            if not header.text(keyword):
                return (
                    Status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                    f"{keyword} ({tag}) missing from the data set",
                )

        cfg = self._get_config()
        existing = self.index.stored_size(ds_instance)
        freed = 0
        if existing is not None:
            policy = cfg.storage.duplicate_policy
            if policy == "reject":
                return (
                    Status.DUPLICATE_SOP_INSTANCE,
                    "duplicate SOP Instance UID refused (duplicate_policy=reject, as dcm4chee "
                    "answers a second copy)",
                )
            if policy == "keep":
                return Status.SUCCESS, "duplicate SOP Instance UID: first copy kept"
            freed = existing

        meta = file_meta_bytes(ds_class, ds_instance, transfer_syntax, calling_ae)
        size = len(_PREAMBLE) + len(meta) + len(dataset_bytes)
        quota = cfg.storage.quota_bytes
        with self._space_lock:
            if quota is not None and (
                self._bytes_stored + self._bytes_reserved + size - freed > quota
            ):
                used = self._bytes_stored + self._bytes_reserved
                return (
                    Status.OUT_OF_RESOURCES,
                    f"quota {_mb(quota)} reached ({used} of {quota} bytes used, object needs "
                    f"{size})",
                )
            self._bytes_reserved += size
        try:
            return self._write_and_index(
                header, meta, dataset_bytes, transfer_syntax, size, calling_ae
            )
        finally:
            with self._space_lock:
                self._bytes_reserved -= size

    def _write_and_index(
        self,
        header: HeaderValues,
        meta: bytes,
        dataset_bytes: bytes,
        transfer_syntax: str,
        size: int,
        calling_ae: str,
    ) -> tuple[int, str]:
        sop_uid = header.text("SOPInstanceUID")
        root = self.write_root()
        base = self.root_dir(root)
        final = fanned_path(base, sop_uid, ".dcm")  # never a name from the UID
        tmp_dir = self._tmp_dir_of(root)
        tmp = tmp_dir / f"{uuid.uuid4().hex}.part"
        renamed = False
        try:
            if root:  # another filesystem: its own temp directory, checked on every store
                if not base.is_dir():  # an unmounted or removed storage filesystem
                    raise FileNotFoundError(errno.ENOENT, "storage directory not found", str(base))
                tmp_dir.mkdir(exist_ok=True)
            with open(tmp, "xb") as fh:
                fh.write(_PREAMBLE)
                fh.write(meta)
                fh.write(dataset_bytes)
                fh.flush()
                os.fsync(fh.fileno())
            unsynced: list[Path] = []
            self._ensure_dir(final.parent, base, unsynced)
            try:
                os.replace(tmp, final)
            except FileNotFoundError:  # a directory removed under us (by hand or a fault)
                self._known_dirs.clear()
                self._ensure_dir(final.parent, base, unsynced)
                os.replace(tmp, final)
            renamed = True
            self._make_durable(final, unsynced)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if renamed:
                final.unlink(missing_ok=True)
            if exc.errno in _OUT_OF_SPACE_ERRNOS:
                return (
                    Status.OUT_OF_RESOURCES,
                    f"disk full: {os.strerror(exc.errno or 0)} writing the object to {base}",
                )
            return Status.PROCESSING_FAILURE, f"cannot write the object: {exc}"

        record = record_from_header(
            header,
            transfer_syntax=transfer_syntax,
            path=final.relative_to(base).as_posix(),
            size=size,
            calling_ae=calling_ae,
        )
        record.root = root
        try:
            result = self.index.add_instance(record)
        except sqlite3.Error as exc:
            final.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                _fsync_dir(final.parent)
            if "full" in str(exc).lower():
                return Status.OUT_OF_RESOURCES, f"disk full: index cannot grow ({exc})"
            return Status.PROCESSING_FAILURE, f"index error: {exc}"
        freed = int(result.replaced["size"]) if result.replaced else 0
        with self._space_lock:
            self._bytes_stored += size - freed
        if result.study_patient_conflict is not None:
            self._logger.warning(
                "DATA CONFLICT: study %s belongs to patient %s, but %s from %s names patient "
                "%s (%s); kept under %s",
                record.study_instance_uid,
                result.study_patient_conflict,
                sop_uid,
                calling_ae or "?",
                record.patient_id or "(no Patient ID)",
                record.patient_name,
                result.study_patient_conflict,
            )
        if result.series_study_conflict is not None:
            self._logger.warning(
                "DATA CONFLICT: series %s belongs to study %s, but %s names study %s; kept in %s",
                record.series_instance_uid,
                result.series_study_conflict,
                sop_uid,
                record.study_instance_uid,
                result.series_study_conflict,
            )
        if result.replaced is not None:
            return Status.SUCCESS, "duplicate SOP Instance UID: previous copy overwritten"
        return Status.SUCCESS, ""

    def _prepare_fanout(self) -> None:
        """Create the 256 first-level fan-out directories now, made durable by one fsync.

        Each fsync costs a journal commit and a disk flush: a C-STORE into a new first-level
        directory would otherwise pay one more before its Success (most of the first few hundred
        objects of a new archive do).
        """
        created = False
        for value in range(256):
            directory = self.objects_dir / f"{value:02x}"
            try:
                os.mkdir(directory)
            except FileExistsError:
                pass
            else:
                created = True
            self._known_dirs.add(directory)
        if created:
            _fsync_dir(self.objects_dir)

    def _ensure_dir(self, directory: Path, base: Path, unsynced: list[Path]) -> None:
        """Create a fan-out directory (and its parent, up to the storage directory `base`).

        Its entry in the parent is not fsynced here: each directory created, or found but not
        yet known to be durable (a concurrent store may have created it and not synced it
        yet), is appended to `unsynced`, and `_make_durable` fsyncs its parent after the
        object is renamed in, before the Success. The new directory and the object then cost
        one journal commit instead of two; a renamed object still never sits in a directory
        a crash forgets when the Success has gone out.
        """
        if directory in self._known_dirs:
            return
        if directory == base:
            self._known_dirs.add(directory)
            return
        try:
            os.mkdir(directory)
        except FileExistsError:
            pass
        except FileNotFoundError:  # the parent is gone (removed by hand or a fault)
            self._known_dirs.discard(directory.parent)
            self._ensure_dir(directory.parent, base, unsynced)
            with contextlib.suppress(FileExistsError):
                os.mkdir(directory)
        unsynced.append(directory)

    def _make_durable(self, final: Path, unsynced: list[Path]) -> None:
        """Fsync the object's directory (its rename), then the parents of the directories
        created for it, deepest first; only then are those directories known to be durable."""
        _fsync_dir(final.parent)
        for directory in sorted(unsynced, key=lambda d: len(d.parts), reverse=True):
            _fsync_dir(directory.parent)
        self._known_dirs.update(unsynced)

    # -- retrieve and administration -------------------------------------------------------------

    def file_of(self, sop_instance_uid: str) -> Path | None:
        """The archived file of an instance, or None when not archived (or its file is gone)."""
        row = self.index.instance(sop_instance_uid)
        if row is None:
            return None
        path = self.path_of(row)
        return path if path.is_file() else None

    def read_for_retrieve(self, row: dict[str, Any]) -> Dataset:
        """The archived object as a Dataset for a C-MOVE/C-GET sub-operation.

        Pixel data stays the raw bytes of the file. Patient attributes are coerced to the index
        (after an ADT update or merge the retrieved object carries the current demographics).
        """
        ds = dcmread(self.path_of(row))
        coerced = {
            "PatientID": row["patient_id"],
            "PatientName": row["patient_name"],
            "PatientBirthDate": row["birth_date"],
            "PatientSex": row["sex"],
        }
        for keyword, value in coerced.items():
            if _text(ds, keyword) != (value or ""):
                setattr(ds, keyword, value or "")
        if row.get("issuer") and _text(ds, "IssuerOfPatientID") != row["issuer"]:
            ds.IssuerOfPatientID = row["issuer"]
        return ds

    def delete_study(self, study_uid: str) -> int:
        """Remove a study's files and rows; returns the number of instances removed."""
        # Files first: on a full disk SQLite cannot commit until some space is freed, and a row
        # whose file is gone is harmless (retrieve skips it, open() drops it).
        rows = self.index.study_instances(study_uid)
        freed = 0
        for row in rows:
            try:
                self.path_of(row).unlink(missing_ok=True)
            except (OSError, ValueError) as exc:
                self._logger.error("cannot remove %s: %s", row["path"], exc)
            freed += int(row["size"])
        with self._space_lock:
            self._bytes_stored -= freed
        self.index.delete_study(study_uid)
        return len(rows)

    def adjust_stored(self, delta: int) -> None:
        """Account for objects that grew or shrank in place (an administrator's study edit)."""
        with self._space_lock:
            self._bytes_stored += delta

    def stats(self) -> dict[str, Any]:
        """Counts, bytes stored, quota and free disk space."""
        out: dict[str, Any] = dict(self.index.counts())
        out["bytes_stored"] = self._bytes_stored
        out["quota_bytes"] = self._get_config().storage.quota_bytes
        write_dir = self.root_dir(self.write_root())
        try:
            out["disk_free_bytes"] = shutil.disk_usage(write_dir).free
        except OSError:
            out["disk_free_bytes"] = None
        out["objects_dir"] = str(write_dir)
        out["storage_dirs"] = self.storage_dirs()
        return out

    @staticmethod
    def describe_result(status: int, comment: str) -> str:
        """'0xA700 Refused: Out of resources (quota 10 MB reached)' for logs."""
        text = f"{hex_status(status)} {describe(status)}"
        return f"{text} ({comment})" if comment else text


def _mb(value: int) -> str:
    mb = value / 1_000_000
    return f"{mb:.0f} MB" if mb >= 1 else f"{value} bytes"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
