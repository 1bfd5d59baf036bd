"""Ingest benchmark: how fast the simlab PACS stores CT images, next to Orthanc and storescp.

It generates N synthetic CT images (512x512, 16 bits; default N=300) into bench/.work/, then in
one run, interleaved over several rounds, sends them with DCMTK's storescu over one association
and over four parallel associations (the files split between four storescu processes) to:

- simlab: the simlab PACS, started as a real node process (as a lab starts it);
- orthanc: Debian's Orthanc, with its own config (SQLite index, loopback ports), if installed;
- storescp: DCMTK's storescp writing files (``--fork``: one process per association).

Every trial starts its server fresh on an empty store (so a second send is never a duplicate),
waits until it answers a C-ECHO, times the storescu processes from start to exit, checks the
server holds every image, then stops it. Only 127.0.0.1 is used. The table gives the median of
the rounds and the ratios simlab/Orthanc and simlab/storescp.

    .venv/bin/python bench/ingest.py [--count 300] [--rounds 3] [--size 512]
"""

from __future__ import annotations

import argparse
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
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from fake_modalities.images import CtSeriesSpec, PatientStudy, ct_series, write_dataset
from simlab.client.admin import AdminApiError, AdminClient
from simlab.common.config import RemoteAe
from simlab.runtime.ports import free_ports
from simlab.runtime.process import NodeStartError, spawn_node, stop_process, wait_healthy
from simlab.runtime.topology import pacs_config, write_node_dir

HOST = "127.0.0.1"
ECHOSCU_OPTIONS = ["echoscu", "-to", "2", "-ta", "2", "-td", "2", "-aet", "ECHOSCU"]
CALLING_AE = "STORESCU"
ORTHANC = shutil.which("Orthanc") or (
    "/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None
)
WORK_DIR = Path(__file__).resolve().parent / ".work"
SEED = 20240304
START_TIMEOUT = 60.0
"""Seconds a server may take to answer its first C-ECHO."""
SEND_TIMEOUT = 900.0
"""Seconds one trial's storescu processes may take in all."""
STORE_SETTLE_TIMEOUT = 30.0
"""Seconds to wait, after storescu exits, for the server's count to reach N."""


def nodelay_env() -> dict[str, str]:
    """The environment for DCMTK and Orthanc: without TCP_NODELAY they stall ~45 ms an image."""
    return {**os.environ, "TCP_NODELAY": "1"}


class BenchError(RuntimeError):
    """A server did not start, a send failed, or images are missing."""


# -- images ----------------------------------------------------------------------------------


def prepare_images(count: int, size: int, work_dir: Path) -> list[Path]:
    """The N CT files, generated once per (count, size) and reused while complete."""
    directory = work_dir / f"ct-{size}px-{count}"
    marker = directory / "complete.json"
    wanted = {"count": count, "size": size, "seed": SEED, "generator": _generator_digest()}
    if marker.exists():
        try:
            if json.loads(marker.read_text()) == wanted:
                files = sorted(directory.glob("*.dcm"))
                if len(files) == count:
                    return files
        except (OSError, ValueError):
            pass
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
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
    started = time.perf_counter()
    files = []
    for ds in ct_series(study, spec, seed=SEED):
        files.append(write_dataset(ds, directory / f"CT{int(ds.InstanceNumber):05d}.dcm"))
    marker.write_text(json.dumps(wanted))
    print(f"generated {count} CT images {size}x{size} in {time.perf_counter() - started:.1f} s")
    return files


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


# -- targets -----------------------------------------------------------------------------------


class Target:
    """A storage server under test: started fresh for each trial, on an empty store."""

    name = ""
    ae_title = ""
    note = ""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.run_dir = Path()
        self.admin: AdminClient | None = None

    def start(self, run_dir: Path) -> None:
        raise NotImplementedError

    def stored(self) -> int:
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
    note = "simlab PACS node (pynetdicom), max PDU 256 KiB, fsync per object"

    def start(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        dicom_port, hl7_port, admin_port = free_ports(3)
        ae_table = [RemoteAe(ae_title=t, host=HOST, port=11112) for t in (CALLING_AE, "ECHOSCU")]
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
    """Debian's Orthanc with a config of its own: SQLite index, storage in the trial's dir."""

    name = "orthanc"
    ae_title = "ORTHANC"
    note = "Orthanc (Debian package), SQLite index, max PDU 16 KiB (its default)"

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
            "DicomModalities": {},
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
            with urllib.request.urlopen(f"http://{HOST}:{self.http_port}{path}", timeout=2) as r:
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
    note = "DCMTK storescp --fork, writes files, max PDU 16 KiB (its default)"

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


# -- trials ------------------------------------------------------------------------------------


@dataclass
class Trial:
    target: str
    parallel: int
    round: int
    seconds: float | None
    error: str = ""


def send(target: Target, files: list[Path], parallel: int, supervisor: Supervisor) -> float:
    """Send `files` split between `parallel` storescu processes; seconds from start to last exit."""
    size = -(-len(files) // parallel)
    chunks = [files[i : i + size] for i in range(0, len(files), size)]
    logs = [target.run_dir / f"storescu-{i}.log" for i in range(len(chunks))]
    started = time.perf_counter()
    procs = [
        supervisor.spawn(
            ["storescu", "-R", "-to", "60", "-ta", "30", "-td", "120"]
            + ["-aet", CALLING_AE, "-aec", target.ae_title, HOST, str(target.port)]
            + [str(p) for p in chunk],
            log,
        )
        for chunk, log in zip(chunks, logs, strict=True)
    ]
    deadline = time.monotonic() + SEND_TIMEOUT
    try:
        for proc in procs:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise BenchError(f"storescu to {target.name} took over {SEND_TIMEOUT:.0f} s") from None
    elapsed = time.perf_counter() - started
    for proc, log in zip(procs, logs, strict=True):
        supervisor.stop(proc)
        if proc.returncode != 0:
            raise BenchError(
                f"storescu to {target.name} exited with {proc.returncode}: {_tail(log)}"
            )
    return elapsed


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def wait_stored(target: Target, expected: int) -> int:
    """Bounded poll until the server reports `expected` images (it should already)."""
    deadline = time.monotonic() + STORE_SETTLE_TIMEOUT
    count = target.stored()
    while count < expected and time.monotonic() < deadline:
        time.sleep(0.05)
        count = target.stored()
    return count


def run_trial(
    target: Target, files: list[Path], parallel: int, rnd: int, scratch: Path, sup: Supervisor
) -> Trial:
    run_dir = Path(tempfile.mkdtemp(prefix=f"{target.name}-p{parallel}-r{rnd}-", dir=scratch))
    try:
        target.start(run_dir)
        seconds = send(target, files, parallel, sup)
        count = wait_stored(target, len(files))
        if count != len(files):
            raise BenchError(f"{target.name} holds {count} of {len(files)} images")
        return Trial(target.name, parallel, rnd, seconds)
    except (BenchError, NodeStartError, OSError) as exc:
        return Trial(target.name, parallel, rnd, None, str(exc))
    finally:
        target.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


def report(trials: list[Trial], count: int, total_bytes: int, targets: list[Target]) -> None:
    mb = total_bytes / 1e6
    print()
    print(f"ingest of {count} CT images ({mb:.1f} MB), median of rounds")
    header = f"{'target':<10} {'parallel':>8} {'images/s':>9} {'MB/s':>8}   rounds (s)"
    print(header)
    print("-" * len(header))
    rates: dict[tuple[str, int], float] = {}
    for parallel in sorted({t.parallel for t in trials}):
        for target in targets:
            mine = [t for t in trials if t.target == target.name and t.parallel == parallel]
            ok = [t.seconds for t in mine if t.seconds is not None]
            errors = [t.error for t in mine if t.error]
            if ok:
                median = statistics.median(ok)
                rates[(target.name, parallel)] = count / median
                rounds = " ".join(f"{s:.2f}" for s in ok)
                print(
                    f"{target.name:<10} {parallel:>8} {count / median:>9.1f} "
                    f"{mb / median:>8.1f}   {rounds}"
                )
            if errors:
                print(f"{target.name:<10} {parallel:>8} {'failed':>9}   {errors[0]}")
    print()
    for other in ("orthanc", "storescp"):
        parts = []
        for parallel in sorted({t.parallel for t in trials}):
            mine, theirs = rates.get(("simlab", parallel)), rates.get((other, parallel))
            if mine and theirs:
                parts.append(f"{parallel} assoc {mine / theirs:.2f}")
        if parts:
            print(f"simlab/{other:<9} " + ", ".join(parts))
    print()
    for target in targets:
        print(f"  {target.name}: {target.note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300, help="CT images to send (300)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every trial (3)")
    parser.add_argument("--size", type=int, default=512, help="rows and columns (512)")
    parser.add_argument(
        "--parallel", type=int, nargs="+", default=[1, 4], help="associations per trial (1 4)"
    )
    parser.add_argument(
        "--targets",
        nargs="+",
        choices=["simlab", "orthanc", "storescp"],
        default=["simlab", "orthanc", "storescp"],
    )
    args = parser.parse_args(argv)
    if args.count < 1 or args.rounds < 1 or args.size < 8 or min(args.parallel) < 1:
        parser.error("count, rounds and parallel must be positive, size at least 8")
    for tool in ("storescu", "echoscu"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} (DCMTK) is not installed")

    os.environ["TCP_NODELAY"] = "1"  # for every child, including the simlab node
    supervisor = Supervisor()
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    scratch = Path(tempfile.mkdtemp(prefix="simlab-bench-"))
    try:
        files = prepare_images(args.count, args.size, WORK_DIR)
        total_bytes = sum(p.stat().st_size for p in files)
        targets = _targets(args.targets, supervisor)
        trials = []
        for rnd in range(args.rounds):
            order = targets[rnd % len(targets) :] + targets[: rnd % len(targets)]
            parallels = args.parallel if rnd % 2 == 0 else list(reversed(args.parallel))
            for parallel in parallels:
                for target in order:
                    trial = run_trial(target, files, parallel, rnd, scratch, supervisor)
                    state = f"{trial.seconds:.2f} s" if trial.seconds else f"FAILED {trial.error}"
                    print(f"round {rnd + 1}: {target.name:<9} x{parallel}: {state}", flush=True)
                    trials.append(trial)
        report(trials, args.count, total_bytes, targets)
        return 0 if all(t.seconds is not None for t in trials) else 1
    except KeyboardInterrupt:
        print("\ninterrupted; stopping every server", file=sys.stderr)
        return 130
    finally:
        supervisor.stop_all()
        shutil.rmtree(scratch, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous_term)


def _targets(names: list[str], supervisor: Supervisor) -> list[Target]:
    targets: list[Target] = []
    for name in names:
        if name == "simlab":
            targets.append(SimlabPacs(supervisor))
        elif name == "orthanc":
            if ORTHANC is None:
                print("Orthanc is not installed: skipping it")
                continue
            targets.append(Orthanc(supervisor))
        else:
            targets.append(Storescp(supervisor))
    return targets


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
