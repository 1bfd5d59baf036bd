"""The DICOM servers the benchmarks measure, and the plumbing around them.

Every DICOM benchmark (ingest, Q/R) runs the same three kinds of server on 127.0.0.1 and needs
the same care: start it with a config of its own, wait until it answers a C-ECHO, send it files
with DCMTK's storescu, ask how many objects it holds, and stop it (and every other child
process, and the scratch directories) whatever happens, Ctrl-C included. This module is that
plumbing, so the benchmark scripts hold only what they measure:

- `SimlabPacs`: the simlab PACS, started as a real node process (as a lab starts it);
- `Orthanc`: Debian's Orthanc with its own config (SQLite index, loopback ports);
- `Storescp`: DCMTK's storescp writing files (``--fork``: one process per association), the
  ingest peer and the C-MOVE destination of the Q/R benchmark.

Each server knows the calling AE titles of the DCMTK tools and the `peers` it is given (AE title
-> port on 127.0.0.1), which are its C-MOVE destinations. Every child inherits TCP_NODELAY=1:
without it DCMTK and Orthanc stall ~40 ms per small PDU on loopback (Nagle + delayed ACK).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fake_modalities.images import CtSeriesSpec, PatientStudy, ct_series, write_dataset
from simlab.client.admin import AdminApiError, AdminClient
from simlab.common.config import RemoteAe
from simlab.runtime.ports import free_ports
from simlab.runtime.process import NodeStartError, spawn_node, stop_process, wait_healthy
from simlab.runtime.topology import pacs_config, write_node_dir

HOST = "127.0.0.1"
CALLING_AES = ("STORESCU", "ECHOSCU", "FINDSCU", "MOVESCU")
"""AE titles the DCMTK tools call with; every server under test knows them."""
STORESCU_AE, ECHOSCU_AE, FINDSCU_AE, MOVESCU_AE = CALLING_AES
ECHOSCU_OPTIONS = ["echoscu", "-to", "2", "-ta", "2", "-td", "2", "-aet", ECHOSCU_AE]
ORTHANC = shutil.which("Orthanc") or (
    "/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None
)
WORK_DIR = Path(__file__).resolve().parent / ".work"
"""Generated images, cached between runs (gitignored)."""
SEED = 20240304
START_TIMEOUT = 60.0
"""Seconds a server may take to answer its first C-ECHO."""
SEND_TIMEOUT = 900.0
"""Seconds one send's storescu processes may take in all."""
STORE_SETTLE_TIMEOUT = 30.0
"""Seconds to wait, after storescu exits, for the server's count to reach N."""
NOT_ERRORS = (NodeStartError, OSError, subprocess.SubprocessError)
"""What a trial catches besides BenchError: the trial fails, the run goes on."""


class BenchError(RuntimeError):
    """A server did not start, a send failed, or images are missing."""


def nodelay_env() -> dict[str, str]:
    """The environment for DCMTK, Orthanc and the simlab node: TCP_NODELAY on every socket."""
    return {**os.environ, "TCP_NODELAY": "1"}


def median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


# -- images ----------------------------------------------------------------------------------


def cached_files(
    directory: Path, wanted: dict[str, object], count: int, generate: Callable[[Path], None]
) -> list[Path]:
    """The ``*.dcm`` files under `directory`, generated once and reused while `wanted` (the
    parameters, the generator's digest) is unchanged and all `count` files are there."""
    marker = directory / "complete.json"
    wanted = {**wanted, "generator": _generator_digest()}
    if marker.exists():
        try:
            if json.loads(marker.read_text()) == wanted:
                files = sorted(directory.rglob("*.dcm"))
                if len(files) == count:
                    return files
        except (OSError, ValueError):
            pass
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    started = time.perf_counter()
    generate(directory)
    files = sorted(directory.rglob("*.dcm"))
    if len(files) != count:
        raise BenchError(f"generated {len(files)} files in {directory}, expected {count}")
    marker.write_text(json.dumps(wanted))
    print(f"generated {count} files in {directory.name} in {time.perf_counter() - started:.1f} s")
    return files


def prepare_images(count: int, size: int, work_dir: Path = WORK_DIR) -> list[Path]:
    """N synthetic CT images of one study and series (size x size, 16 bits), cached."""

    def generate(directory: Path) -> None:
        study = PatientStudy(
            patient_id="BENCH0001",
            patient_name="BENCH^INGEST",
            birth_date="19700101",
            sex="O",
            accession_number="BENCH-ACC-1",
            study_id="BENCH1",
            referring_physician="BENCH^REFERRER",
            study_description="CT HEAD (ingest benchmark)",
        )
        spacing = round(min(5.0, 160.0 / count), 3)
        spec = CtSeriesSpec(
            slices=count,
            rows=size,
            columns=size,
            slice_thickness=spacing,
            spacing=spacing,
            series_description=f"Head {spacing:g} H30s",
        )
        for ds in ct_series(study, spec, seed=SEED):
            write_dataset(ds, directory / f"CT{int(ds.InstanceNumber):05d}.dcm")

    wanted = {"count": count, "size": size, "seed": SEED}
    return cached_files(work_dir / f"ct-{size}px-{count}", wanted, count, generate)


def _generator_digest() -> str:
    """A digest of the image generator's source, so a changed generator regenerates the files."""
    import fake_modalities.images as package

    digest = hashlib.sha256()
    for source in sorted(Path(package.__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


# -- processes ---------------------------------------------------------------------------------


@dataclass
class Supervisor:
    """Owns every child process of the run, so all are stopped whatever happens."""

    children: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, argv: list[str], log: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=nodelay_env(),
                cwd=str(cwd) if cwd else None,
                start_new_session=True,  # a Ctrl-C reaches us, and we stop them in order
            )
        self.children.append(proc)
        return proc

    def adopt(self, proc: subprocess.Popen[bytes]) -> None:
        self.children.append(proc)

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
        """SIGTERM the child's process group, SIGKILL after `grace`, and reap it."""
        if proc.poll() is None:
            stop_process(proc.pid, grace=grace)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5.0)
        if proc.poll() is None:  # still there: kill the group outright
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5.0)
        if proc in self.children:
            self.children.remove(proc)

    def stop_all(self) -> None:
        for proc in list(reversed(self.children)):
            self.stop(proc, grace=3.0)

    def wait_all(
        self, procs: list[subprocess.Popen[bytes]], timeout: float, what: str
    ) -> list[int]:
        """Wait for `procs` to exit within `timeout` s in all; their exit codes. They are
        reaped (and removed from the supervisor) either way."""
        deadline = time.monotonic() + timeout
        try:
            for proc in procs:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise BenchError(f"{what} took over {timeout:.0f} s") from None
        finally:
            for proc in procs:
                self.stop(proc)
        return [int(proc.returncode) for proc in procs]


@contextlib.contextmanager
def bench_session(prefix: str) -> Iterator[tuple[Supervisor, Path]]:
    """A supervisor and a scratch directory for one benchmark run; on leaving (normally, on an
    error, on Ctrl-C or SIGTERM) every child is stopped and the scratch directory removed."""
    os.environ["TCP_NODELAY"] = "1"  # for every child, including the simlab node
    supervisor = Supervisor()
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    scratch = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield supervisor, scratch
    finally:
        supervisor.stop_all()
        shutil.rmtree(scratch, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous_term)


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def missing_tools(*tools: str) -> list[str]:
    """The DCMTK tools (or others) not on PATH."""
    return [tool for tool in tools if shutil.which(tool) is None]


def tail(path: Path, lines: int = 3) -> str:
    """The last lines of a log, joined, for an error message."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def _echo(ae_title: str, port: int, log: Path) -> bool:
    """One C-ECHO with echoscu; True when the server answered."""
    with open(log, "ab") as out:
        result = subprocess.run(
            [*ECHOSCU_OPTIONS, "-aec", ae_title, HOST, str(port)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=nodelay_env(),
            timeout=10,
            check=False,
        )
    return result.returncode == 0


def wait_for_echo(
    name: str, proc: subprocess.Popen[bytes], ae_title: str, port: int, log: Path
) -> None:
    """Poll with C-ECHO until the server answers; fail fast if it exits; bounded by a deadline."""
    deadline = time.monotonic() + START_TIMEOUT
    delay = 0.02
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited during start (code {proc.returncode}); see {log}")
        if _port_open(port) and _echo(ae_title, port, log):
            return
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)
    raise BenchError(f"{name} did not answer C-ECHO within {START_TIMEOUT:.0f} s; see {log}")


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


# -- servers -----------------------------------------------------------------------------------


class Target:
    """A DICOM server under test, started on an empty store in a run directory of its own.

    Args:
        supervisor: owns the server's process.
        peers: remote AEs the server must know as C-MOVE destinations (AE title -> port).
    """

    name = ""
    ae_title = ""
    note = ""

    def __init__(self, supervisor: Supervisor, peers: dict[str, int] | None = None) -> None:
        self.supervisor = supervisor
        self.peers = dict(peers or {})
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.run_dir = Path()

    def start(self, run_dir: Path) -> None:
        raise NotImplementedError

    def stored(self) -> int:
        """How many objects the server holds (-1 when it cannot tell)."""
        raise NotImplementedError

    def stop(self) -> None:
        if self.proc is not None:
            self.supervisor.stop(self.proc)
            self.proc = None

    @property
    def log(self) -> Path:
        return self.run_dir / f"{self.name}.log"


class SimlabPacs(Target):
    """The simlab PACS as a lab runs it: a node process with config, token and data dir."""

    name = "simlab"
    ae_title = "SIMLAB_PACS"
    note = "simlab PACS node (pynetdicom), fsync per object before Success"

    def __init__(self, supervisor: Supervisor, peers: dict[str, int] | None = None) -> None:
        super().__init__(supervisor, peers)
        self.admin: AdminClient | None = None

    def start(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        dicom_port, hl7_port, admin_port = free_ports(3)
        callers = {title: 11112 for title in CALLING_AES}
        ae_table = [
            RemoteAe(ae_title=title, host=HOST, port=port)
            for title, port in {**callers, **self.peers}.items()
        ]
        config = pacs_config(
            dicom_port=dicom_port,
            hl7_port=hl7_port,
            admin_port=admin_port,
            ae_title=self.ae_title,
            ae_table=ae_table,
            host=HOST,
        )
        token = secrets.token_hex(16)
        node_dir = run_dir / "pacs"
        config_path = write_node_dir(node_dir, config, token)
        stderr_path = node_dir / "stderr.log"
        node = spawn_node("simlab.nodes.pacs", config_path, stderr_path)  # inherits TCP_NODELAY
        assert node.popen is not None
        self.proc = node.popen
        self.supervisor.adopt(node.popen)
        self.port = dicom_port
        self.admin = AdminClient(f"http://{HOST}:{admin_port}", token)
        wait_healthy(node, self.admin, START_TIMEOUT, node_dir / "node.log", stderr_path)
        wait_for_echo(self.name, self.proc, self.ae_title, self.port, self.log)

    def stored(self) -> int:
        if self.admin is None:
            return -1
        try:
            return int(self.admin.get("/stats").get("instances", 0))
        except AdminApiError:
            return -1


class Orthanc(Target):
    """Debian's Orthanc with a config of its own: SQLite index, storage in the run's dir."""

    name = "orthanc"
    ae_title = "ORTHANC"
    note = "Orthanc (Debian package), SQLite index, its default max PDU (16 KiB)"

    def __init__(self, supervisor: Supervisor, peers: dict[str, int] | None = None) -> None:
        super().__init__(supervisor, peers)
        self.http_port = 0

    def start(self, run_dir: Path) -> None:
        assert ORTHANC is not None
        self.run_dir = run_dir
        self.port, self.http_port = free_ports(2)
        root = run_dir / "orthanc"
        config = {
            "Name": "simlab-bench",
            "StorageDirectory": str(root / "storage"),
            "IndexDirectory": str(root / "index"),
            "StorageCompression": False,
            "Plugins": [],
            "DicomServerEnabled": True,
            "DicomAet": self.ae_title,
            "DicomPort": self.port,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowMove": True,
            "DicomModalities": {
                title.lower(): [title, HOST, port] for title, port in self.peers.items()
            },
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "SslEnabled": False,
            "HttpsVerifyPeers": False,
            "KeepAlive": True,
            "TcpNoDelay": True,
            "SaveJobs": False,
            "LuaScripts": [],
            "OverwriteInstances": False,
            "StorageAccessOnFind": "Never",  # answer C-FIND from the index, as simlab does
        }
        root.mkdir(parents=True, exist_ok=True)
        config_path = root / "orthanc.json"
        config_path.write_text(json.dumps(config, indent=2))
        self.proc = self.supervisor.spawn([ORTHANC, str(config_path)], self.log, cwd=root)
        self._wait_http()
        wait_for_echo(self.name, self.proc, self.ae_title, self.port, self.log)

    def _wait_http(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        delay = 0.02
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"Orthanc exited during start; see {self.log}")
            if self._get("/system") is not None:
                return
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)
        raise BenchError(f"Orthanc's HTTP API did not answer within {START_TIMEOUT:.0f} s")

    def _get(self, path: str) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.http_port}{path}", timeout=5) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def stored(self) -> int:
        stats = self._get("/statistics")
        return int(stats["CountInstances"]) if stats else -1


class Storescp(Target):
    """DCMTK's storescp writing each image to a file; one forked process per association."""

    name = "storescp"
    ae_title = "STORESCP"
    note = "DCMTK storescp --fork, writes files, its default max PDU (16 KiB)"

    def start(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        (self.port,) = free_ports(1)
        self.out_dir = run_dir / "storescp"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        argv = ["storescp", "--fork", "-dhl", "-aet", self.ae_title, "-od", str(self.out_dir)]
        self.proc = self.supervisor.spawn([*argv, str(self.port)], self.log, cwd=run_dir)
        wait_for_echo(self.name, self.proc, self.ae_title, self.port, self.log)

    def stored(self) -> int:
        return sum(1 for p in self.out_dir.iterdir() if p.is_file() and not p.name.startswith("."))

    def clear(self) -> None:
        """Remove the files received so far (between the rounds of a C-MOVE benchmark)."""
        for path in self.out_dir.iterdir():
            if path.is_file():
                path.unlink(missing_ok=True)


TARGETS: dict[str, type[Target]] = {"simlab": SimlabPacs, "orthanc": Orthanc, "storescp": Storescp}


def make_targets(
    names: list[str], supervisor: Supervisor, peers: dict[str, int] | None = None
) -> list[Target]:
    """The servers named, in order; Orthanc is skipped (with a line) when not installed."""
    targets = []
    for name in names:
        if name == "orthanc" and ORTHANC is None:
            print("Orthanc is not installed: skipping it")
            continue
        targets.append(TARGETS[name](supervisor, peers))
    return targets


def server_notes(names: list[str]) -> str:
    """What each server is and how it is configured, one line each, for under a table."""
    return "\n".join(f"- {name}: {TARGETS[name].note}" for name in names if name in TARGETS)


# -- sending ----------------------------------------------------------------------------------


def send(target: Target, files: list[Path], parallel: int, supervisor: Supervisor) -> float:
    """Send `files` split between `parallel` storescu processes; seconds from start to last exit."""
    size = -(-len(files) // parallel)
    chunks = [files[i : i + size] for i in range(0, len(files), size)]
    logs = [target.run_dir / f"storescu-{i}.log" for i in range(len(chunks))]
    started = time.perf_counter()
    procs = [
        supervisor.spawn(
            ["storescu", "-R", "-to", "60", "-ta", "30", "-td", "120"]
            + ["-aet", STORESCU_AE, "-aec", target.ae_title, HOST, str(target.port)]
            + [str(p) for p in chunk],
            log,
        )
        for chunk, log in zip(chunks, logs, strict=True)
    ]
    codes = supervisor.wait_all(procs, SEND_TIMEOUT, f"storescu to {target.name}")
    elapsed = time.perf_counter() - started
    for code, log in zip(codes, logs, strict=True):
        if code != 0:
            raise BenchError(f"storescu to {target.name} exited with {code}: {tail(log)}")
    return elapsed


def timed_tool(
    argv: list[str], target: Target, sup: Supervisor, log: Path, timeout: float
) -> float:
    """Run one DCMTK tool against `target` (its host and port appended), its output in `log`
    (emptied first); seconds from start to exit. Raises BenchError when it fails."""
    log.write_bytes(b"")
    started = time.perf_counter()
    proc = sup.spawn([*argv, HOST, str(target.port)], log)
    (code,) = sup.wait_all([proc], timeout, f"{argv[0]} to {target.name}")
    elapsed = time.perf_counter() - started
    if code != 0:
        raise BenchError(f"{argv[0]} to {target.name} failed ({code}): {tail(log)}")
    return elapsed


def wait_stored(target: Target, expected: int) -> int:
    """Bounded poll until the server reports `expected` images (it should already)."""
    deadline = time.monotonic() + STORE_SETTLE_TIMEOUT
    count = target.stored()
    while count < expected and time.monotonic() < deadline:
        time.sleep(0.05)
        count = target.stored()
    return count


def check_stored(target: Target, expected: int) -> None:
    count = wait_stored(target, expected)
    if count != expected:
        raise BenchError(f"{target.name} holds {count} of {expected} images")
