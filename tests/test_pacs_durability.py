"""kill -9 of the PACS in the middle of a DCMTK storescu transfer loses nothing it acknowledged.

A C-STORE Success response is the archive's promise that the image is safe: the modality may
delete its copy. So after a crash (power cut, OOM kill) every instance that got Success must be
in the index and on disk after restart, the index must not list an instance whose file is gone
(a study a radiologist opens and finds empty), no file may sit on disk unknown to the index, and
crash recovery must sweep away half-written temp files. DCMTK's storescu is the independent
sender; the kill point is chosen from its own `-v` output, so it is deterministic in what has
been acknowledged when the signal lands.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from simlab.client.admin import path_part
from tests.conftest import RunningNode, requires_dcmtk, start_pacs

N_STUDIES = 5
N_SERIES = 2
N_PER_SERIES = 15
N_FILES = N_STUDIES * N_SERIES * N_PER_SERIES  # 150
UID_ROOT = "2.25.9177310301834"
"""Our own UID root (2.25 = UUID-derived arc), so every generated UID is unique and readable."""

TEMP_NAME = re.compile(r"(\.tmp|\.part|\.partial|\.temp|~)$|^\.|^tmp", re.IGNORECASE)
INDEX_FILE = re.compile(r"\.(db|sqlite3?)(-wal|-shm|-journal)?$", re.IGNORECASE)


@dataclass(frozen=True)
class Corpus:
    """The files storescu sends, with what the test needs to recognise them afterwards."""

    files: list[Path]
    sop_of: dict[str, str]
    """File name -> SOP Instance UID."""
    study_uids: set[str]
    pixels_of: dict[str, bytes]
    """SOP Instance UID -> pixel data, to prove a stored file is whole."""


def _instance(study: int, series: int, number: int) -> Dataset:
    """One small image: CT for the first series of a study, Secondary Capture for the second,
    so the transfer uses two presentation contexts as a real modality with screenshots does."""
    ct = series == 0
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage if ct else SecondaryCaptureImageStorage
    ds.SOPInstanceUID = f"{UID_ROOT}.{study}.{series}.{number}"
    ds.StudyDate = "20240102"
    ds.StudyTime = "101500"
    ds.Modality = "CT" if ct else "OT"
    ds.AccessionNumber = f"ACC-DUR-{study}"
    ds.PatientName = f"Durable^Patient{study}"
    ds.PatientID = f"DUR-{study}"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = f"{UID_ROOT}.{study}"
    ds.SeriesInstanceUID = f"{UID_ROOT}.{study}.{series}"
    ds.StudyID = str(study)
    ds.SeriesNumber = series + 1
    ds.InstanceNumber = number + 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 16
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    seed = (study * 31 + series * 7 + number) % 256
    ds.PixelData = bytes((seed + i) % 256 for i in range(16 * 16 * 2))
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """150 small valid Part-10 files: 5 patients/studies x 2 series x 15 instances."""
    root = tmp_path_factory.mktemp("durability-corpus")
    files: list[Path] = []
    sop_of: dict[str, str] = {}
    pixels_of: dict[str, bytes] = {}
    studies: set[str] = set()
    for study in range(1, N_STUDIES + 1):
        for series in range(N_SERIES):
            for number in range(N_PER_SERIES):
                ds = _instance(study, series, number)
                path = root / f"s{study}-{series}-{number:02d}.dcm"
                ds.save_as(path, enforce_file_format=True)
                files.append(path)
                sop_of[path.name] = str(ds.SOPInstanceUID)
                pixels_of[str(ds.SOPInstanceUID)] = bytes(ds.PixelData)
                studies.add(str(ds.StudyInstanceUID))
    assert len(files) == N_FILES
    return Corpus(files=files, sop_of=sop_of, study_uids=studies, pixels_of=pixels_of)


@dataclass
class StorescuTranscript:
    """What storescu said, file by file, parsed from its `-v` log lines."""

    current: str | None = None
    acknowledged: list[str] = field(default_factory=list)
    """File names for which storescu printed 'Received Store Response (Success)'."""
    other_responses: list[tuple[str | None, str]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def feed(self, line: str) -> bool:
        """Take one line; True when it was a Success response."""
        self.lines.append(line)
        if m := re.search(r"Sending file: (.+?)\s*$", line):
            self.current = Path(m.group(1)).name
        elif m := re.search(r"Received Store Response \((.+)\)", line):
            if m.group(1) == "Success":
                assert self.current is not None, f"a response before any file: {line}"
                self.acknowledged.append(self.current)
                self.current = None
                return True
            self.other_responses.append((self.current, m.group(1)))
        return False


def run_storescu_and_kill(node: RunningNode, corpus: Corpus, kill_after: int) -> StorescuTranscript:
    """Send the corpus with storescu over one association and kill -9 the PACS as soon as
    storescu reports the `kill_after`-th Success. A watchdog ends storescu if anything hangs."""
    cmd = ["storescu", "-v", "-aet", "STORESCU", "-aec", node.ae_title]
    cmd += ["-to", "10", "-ta", "10", "-td", "10"]
    cmd += ["127.0.0.1", str(node.dicom_port), *map(str, corpus.files)]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    watchdog = threading.Timer(40.0, proc.kill)
    watchdog.start()
    transcript = StorescuTranscript()
    killed = False
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if transcript.feed(line) and not killed and len(transcript.acknowledged) >= kill_after:
                node.kill9()
                killed = True
        proc.wait(timeout=15)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "".join(transcript.lines[-15:])
    assert killed, f"storescu never reached {kill_after} Success responses:\n{text}"
    assert len(transcript.acknowledged) < N_FILES, (
        "storescu finished every file before the kill landed; the test proved nothing"
    )
    return transcript


def wait_until_gone(node: RunningNode, timeout: float = 10.0) -> None:
    """Wait until the killed PACS is reaped. kill_now() can return while the thread group is
    still exiting (the leader shows as a zombie first), and a restart in that window may find
    the DICOM port still bound."""
    deadline = time.monotonic() + timeout
    while node.process.alive():
        assert time.monotonic() < deadline, f"PACS pid {node.process.pid} survived kill -9"
        time.sleep(0.01)


def strings_in(value: Any) -> Iterator[str]:
    """Every string anywhere in a JSON answer, so UIDs are found whatever the keys are called."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def indexed_instances(node: RunningNode, corpus: Corpus) -> set[str]:
    """SOP Instance UIDs the index lists, through the admin API (GET /studies, /studies/{uid})."""
    known_sops = set(corpus.sop_of.values())
    listed_studies = set(strings_in(node.admin.get("/studies", limit=10_000))) & corpus.study_uids
    found: set[str] = set()
    for study_uid in listed_studies:
        detail = node.admin.get(f"/studies/{path_part(study_uid)}")
        found |= set(strings_in(detail)) & known_sops
    return found


def stored_objects(node: RunningNode) -> dict[str, Path]:
    """SOP Instance UID -> file, for every file under data/objects (read back with pydicom)."""
    objects = node.data_dir / "objects"
    found: dict[str, Path] = {}
    for path in sorted(objects.rglob("*")) if objects.exists() else []:
        if not path.is_file():
            continue
        ds = dcmread(path, force=True, stop_before_pixels=True)
        uid = str(ds.get("SOPInstanceUID", ""))
        assert uid, f"{path} under data/objects has no SOP Instance UID"
        assert uid not in found, f"two files for {uid}: {found[uid]} and {path}"
        found[uid] = path
    return found


def leftover_temp_files(node: RunningNode) -> list[Path]:
    """Files that look like unfinished writes: anything in data/tmp, or temp-like names."""
    leftovers = []
    for path in node.data_dir.rglob("*"):
        if not path.is_file():
            continue
        rel = path.relative_to(node.data_dir)
        if rel.parts[0] == "tmp" or (
            TEMP_NAME.search(path.name) and not INDEX_FILE.search(path.name)
        ):
            leftovers.append(rel)
    return leftovers


@requires_dcmtk
@pytest.mark.dcmtk
@pytest.mark.timeout(60)
@pytest.mark.parametrize("kill_after", [1, 37, 101])
def test_kill9_during_storescu_loses_no_acknowledged_instance(
    tmp_path: Path, corpus: Corpus, kill_after: int
) -> None:
    """kill -9 after the N-th acknowledged C-STORE, restart, and check the archive's promises:
    acknowledged => indexed and on disk and whole; index == files; no temp files left."""
    node = start_pacs(tmp_path / "pacs")
    try:
        transcript = run_storescu_and_kill(node, corpus, kill_after)
        wait_until_gone(node)
        node.start()

        indexed = indexed_instances(node, corpus)
        on_disk = stored_objects(node)
        acknowledged = {corpus.sop_of[name] for name in transcript.acknowledged}

        missing_rows = sorted(acknowledged - indexed)
        assert not missing_rows, (
            f"{len(missing_rows)} of {len(acknowledged)} acknowledged instances are not in the "
            f"index after restart, e.g. {missing_rows[:3]}"
        )
        missing_files = sorted(acknowledged - set(on_disk))
        assert not missing_files, (
            f"{len(missing_files)} acknowledged instances have no file, e.g. {missing_files[:3]}"
        )
        rows_without_file = sorted(indexed - set(on_disk))
        assert not rows_without_file, f"index rows without a file: {rows_without_file[:5]}"
        files_without_row = sorted(set(on_disk) - indexed)
        assert not files_without_row, f"files the index does not list: {files_without_row[:5]}"
        # At most the one in flight when the kill landed may be stored without a Success.
        unacknowledged_kept = indexed - acknowledged
        assert len(unacknowledged_kept) <= 1, sorted(unacknowledged_kept)

        for uid, path in on_disk.items():
            full = dcmread(path)
            assert bytes(full.PixelData) == corpus.pixels_of[uid], f"{path} is not whole"

        assert leftover_temp_files(node) == [], "temp files survived crash recovery"
        assert node.admin.get("/stats")["instances"] == len(indexed)
    finally:
        node.stop()


@requires_dcmtk
@pytest.mark.dcmtk
@pytest.mark.timeout(60)
def test_restart_recovers_planted_crash_artefacts(tmp_path: Path, corpus: Corpus) -> None:
    """The three states a crash can leave, made deterministically instead of hoping the kill
    lands in the right microsecond: a half-written temp file (killed during the write), a whole
    object file without an index row (killed between rename and index commit), and an index row
    whose file is gone (a file lost or deleted by hand). After restart the temp file is gone, the
    orphan object is indexed, the dangling row is dropped, and index == files."""
    node = start_pacs(tmp_path / "pacs")
    try:
        first_study = [p for p in corpus.files if p.name.startswith("s1-")]
        sent = subprocess.run(
            [
                *("storescu", "-aet", "STORESCU", "-aec", node.ae_title, "127.0.0.1"),
                *(str(node.dicom_port), *map(str, first_study[:10])),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert sent.returncode == 0, sent.stderr
        node.kill9()
        wait_until_gone(node)

        on_disk = stored_objects(node)
        assert len(on_disk) == 10, f"expected 10 stored objects, found {len(on_disk)}"
        lost_uid, lost_path = sorted(on_disk.items())[0]
        lost_path.unlink()

        orphan_source = first_study[10]
        orphan_uid = corpus.sop_of[orphan_source.name]
        digest = hashlib.sha256(orphan_uid.encode()).hexdigest()
        orphan_path = node.data_dir / "objects" / digest[:2] / digest[2:4] / f"{digest}.dcm"
        orphan_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(orphan_source, orphan_path)

        tmp_dir = node.data_dir / "tmp"
        tmp_dir.mkdir(exist_ok=True)
        half = first_study[11].read_bytes()
        (tmp_dir / "crashed-during-write.dcm").write_bytes(half[: len(half) // 2])

        node.start()
        indexed = indexed_instances(node, corpus)
        on_disk = stored_objects(node)
        assert lost_uid not in indexed, "the index still lists an instance whose file is gone"
        assert orphan_uid in indexed, "an object file without an index row was not re-indexed"
        assert indexed == set(on_disk), (
            f"index and files differ: rows without file {sorted(indexed - set(on_disk))[:3]}, "
            f"files without row {sorted(set(on_disk) - indexed)[:3]}"
        )
        assert leftover_temp_files(node) == [], "temp files survived crash recovery"
        assert node.admin.get("/stats")["instances"] == len(indexed) == 10
    finally:
        node.stop()
