"""Lab-level benchmarks: boot, docker boot, scoring and a simulated day (issue 8).

- Lab boot on the local runtime (default department, until every node is healthy): the median of
  N boots, each a fresh lab in a temporary home, stopped after. Goal <= 2 s. The peer is the
  floor of a Python-process-per-node design: as many bare `python -c "import pynetdicom"`
  processes as the lab has nodes, started in parallel, until they all exit; boots and floors
  are interleaved so a busy neighbour weighs on both. The breakdown is, per node, the median
  seconds from spawn to healthy (the lab's `node_started` events; nodes are awaited in turn,
  so a node that was ready early is counted when its turn came), when it was spawned and seen
  healthy since `up` began, and the CPU seconds its process used to get there (their sum over
  the cores is a lower bound of the boot).
- Lab boot on the docker runtime with a cached image (one `simlab image build` first, untimed):
  goal <= 10 s, skipped with a note when no engine answers.
- Scoring every objective of the largest shipped scenario (most objectives): the median of
  repeated `ScenarioRun.objectives(record=False)` on a started scenario (its faults active, as
  a trainee's first `check` sees it); goal <= 0.2 s; the breakdown is the median time of each
  check type.
- `simulate-day --studies N`: its wall time against the sum of its protocol work, which is the
  time spent inside the admin-API calls that drive the department (each one is a node doing its
  DICOM or HL7 exchange: worklist C-FIND, MPPS, C-STORE queueing, storage commitment, viewer
  C-FIND + C-MOVE, the RIS's ADT/ORM), timed at the client. The overhead ratio wall/sum is the
  driver's own time plus the waits for the modalities' background sends; measured, no goal.

Only 127.0.0.1 is used; every lab started is stopped (also on Ctrl-C).

    .venv/bin/python -m bench.lab [--quick] [--boots 5] [--studies 200] [--only boot docker ...]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.figures import Figure, details, table
from simlab.client.admin import AdminApiError, AdminClient
from simlab.runtime.docker_engine import DockerUnavailable, engine
from simlab.runtime.lab import Lab
from simlab.scenarios.catalog import scenario_catalog
from simlab.scenarios.checks import CheckContext, evaluate
from simlab.scenarios.engine import ScenarioRun
from simlab.workflow.day import simulate_day

ROOT = Path(__file__).resolve().parent.parent
BOOT_LIMIT = 2.0
DOCKER_BOOT_LIMIT = 10.0
SCORING_LIMIT = 0.2
PARTS = ("boot", "docker", "scoring", "day")


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


@contextmanager
def temp_home(prefix: str) -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix=f"simlab-bench-{prefix}-"))
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def node_seconds(lab: Lab) -> dict[str, float]:
    """Seconds from spawn to healthy of each node of the last `up`, from the lab's events."""
    out: dict[str, float] = {}
    for event in lab.events.read():
        if event.get("kind") == "lab_starting":
            out.clear()
        elif event.get("kind") == "node_started":
            out[str(event["node"])] = float(event["seconds"])
    return out


# --------------------------------------------------------------------------------- lab boot
def interpreter_floor(count: int) -> float:
    """Seconds for `count` bare `python -c "import pynetdicom"` processes, started in parallel,
    to exit: what any design with one Python process per node pays at least."""
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", "import pynetdicom"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]
    for proc in procs:
        proc.wait(timeout=120)
    return time.monotonic() - started


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds a process has used so far (None when it is not readable)."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(") ", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class Boot:
    """One timed `up`; every offset is seconds since `up` was called."""

    seconds: float
    spawned: dict[str, float] = field(default_factory=dict)
    """When each node's process (container) was started."""
    healthy: dict[str, float] = field(default_factory=dict)
    """When each node was seen healthy (nodes are awaited in turn: an upper bound)."""
    to_healthy: dict[str, float] = field(default_factory=dict)
    """The lab's own `node_started` seconds, spawn to healthy."""
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds each node process used to get healthy (local runtime only)."""
    image: float | None = None
    """When the node image was ready (docker runtime)."""


def boot_once(home: Path, lab_id: str, runtime: str = "local") -> Boot:
    """Create a lab, time `up` until all healthy, stop it."""
    lab = Lab.create(home, lab_id, runtime=runtime)
    marks: list[tuple[str, str, float]] = []
    try:
        started = time.monotonic()

        def progress(node: str, message: str) -> None:
            marks.append((node, message, time.monotonic() - started))

        lab.up(timeout=300 if runtime == "docker" else 60, progress=progress)
        boot = Boot(time.monotonic() - started, to_healthy=node_seconds(lab))
        if runtime == "local":
            for entry in lab.manifest.nodes:
                used = cpu_seconds(entry.pid)
                if used is not None:
                    boot.cpu[entry.node_id] = used
    finally:
        lab.down()
    for node, message, offset in marks:
        if node == "image":
            boot.image = offset
        elif message == "starting":
            boot.spawned[node] = offset
        elif message.startswith("healthy in"):
            boot.healthy[node] = offset
    return boot


class BootStats:
    """Boots of one kind, summarised per node as medians."""

    def __init__(self) -> None:
        self.boots: list[Boot] = []

    def add(self, boot: Boot) -> None:
        self.boots.append(boot)

    def median(self) -> float:
        return _median([b.seconds for b in self.boots])

    def _node(self, attr: str, node: str) -> float | None:
        values = [getattr(b, attr)[node] for b in self.boots if node in getattr(b, attr)]
        return _median(values) if values else None

    def detail(self) -> dict[str, float | str]:
        out: dict[str, float | str] = {}
        nodes = list(self.boots[0].to_healthy) if self.boots else []
        for node in nodes:
            parts = [f"spawn to healthy {self._node('to_healthy', node):.2f} s"]
            spawned, healthy = self._node("spawned", node), self._node("healthy", node)
            if spawned is not None and healthy is not None:
                parts.append(f"spawned at +{spawned:.2f}, seen healthy at +{healthy:.2f}")
            cpu = self._node("cpu", node)
            if cpu is not None:
                parts.append(f"CPU {cpu:.2f} s")
            out[f"{node} (medians)"] = ", ".join(parts)
        images = [b.image for b in self.boots if b.image is not None]
        if images:
            out["node image ready at (median s)"] = round(_median(images), 2)
        out["boots (s)"] = ", ".join(f"{b.seconds:.2f}" for b in self.boots)
        return out


def boot_figure(boots: int) -> Figure:
    """Local-runtime boot, interleaved with the interpreter floor."""
    stats = BootStats()
    floors: list[float] = []
    with temp_home("boot") as home:
        for i in range(boots):
            boot = boot_once(home, f"boot{i}")
            stats.add(boot)
            floors.append(interpreter_floor(len(boot.to_healthy)))
    nodes = len(stats.boots[0].to_healthy)
    detail = stats.detail()
    detail["interpreter floor (s)"] = ", ".join(f"{s:.2f}" for s in floors)
    cores = os.cpu_count() or 1
    cpu_sum = _median([sum(b.cpu.values()) for b in stats.boots])
    detail["CPU s of all nodes / cores (a lower bound of the boot)"] = (
        f"{cpu_sum:.2f} / {cores} = {cpu_sum / cores:.2f} s"
    )
    return Figure(
        name="lab boot, local runtime, until all healthy",
        value=stats.median(),
        unit="s",
        better="lower",
        peer=f"{nodes}x python import pynetdicom",
        peer_value=_median(floors),
        limit=BOOT_LIMIT,
        note=f"median of {boots}",
        detail=detail,
    )


def skipped(name: str, why: str) -> Figure:
    """A figure that could not be measured: no value, no verdict (a 0 s would 'pass')."""
    return Figure(name, 0.0, "s", "lower", note=f"skipped: {why}; goal <= {DOCKER_BOOT_LIMIT:g} s")


def docker_boot_figure(boots: int) -> Figure:
    """Docker-runtime boot with a cached image; skipped (a note, no value) without an engine."""
    name = "lab boot, docker runtime, cached image"
    try:
        engine(timeout=10)
    except DockerUnavailable as exc:
        return skipped(name, str(exc))
    # The image is content-cached: build it once, untimed, so the boots find it.
    built = subprocess.run(
        [sys.executable, "-m", "simlab", "image", "build"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if built.returncode != 0:
        why = (built.stderr or built.stdout).strip().splitlines()[-1:] or ["?"]
        return skipped(name, f"simlab image build failed: {why[0]}")
    stats = BootStats()
    with temp_home("docker") as home:
        for i in range(boots):
            # containers are named after the lab: a random id keeps clear of other labs
            stats.add(boot_once(home, f"bd{i}{secrets.token_hex(2)}", "docker"))
    return Figure(
        name=name,
        value=stats.median(),
        unit="s",
        better="lower",
        limit=DOCKER_BOOT_LIMIT,
        note=f"median of {boots}",
        detail=stats.detail(),
    )


# ---------------------------------------------------------------------------------- scoring
def largest_scenario() -> tuple[Path, int]:
    """The shipped scenario with the most objectives (its path and objective count)."""
    entries = [(e.path, e.scenario) for e in scenario_catalog() if e.scenario is not None]
    path, scenario = max(entries, key=lambda ps: (len(ps[1].objectives), ps[0].name))
    return path, len(scenario.objectives)


def scoring_figure(evaluations: int) -> Figure:
    path, count = largest_scenario()
    with temp_home("scoring") as home:
        run: ScenarioRun | None = None
        try:
            run = ScenarioRun.start(home, path, "score")
            # warm: first use of every client and check
            met = sum(o.result.ok for o in run.objectives(record=False))
            times = []
            for _ in range(evaluations):
                started = time.monotonic()
                run.objectives(record=False)
                times.append(time.monotonic() - started)
            by_type: dict[str, list[float]] = defaultdict(list)
            ctx = CheckContext(run.lab, run.state.refs)
            for _ in range(max(3, evaluations // 4)):
                per_round: dict[str, float] = defaultdict(float)
                for objective in run.scenario.objectives:
                    check = run.fill(objective.check)
                    started = time.monotonic()
                    evaluate(check, ctx)
                    per_round[str(objective.check.get("type"))] += time.monotonic() - started
                for kind, s in per_round.items():
                    by_type[kind].append(s)
            viewer_side = _last_open(run.lab)
        finally:
            if run is not None:
                run.lab.down()
            else:  # start failed half-way: stop whatever it started
                _down_all(home)
    detail: dict[str, float | str] = {
        f"{kind} (median ms, all of its objectives)": round(_median(v) * 1000, 1)
        for kind, v in sorted(by_type.items(), key=lambda kv: -_median(kv[1]))
    }
    detail["scenario"] = f"{path.stem} ({count} objectives, {met} met as started)"
    if viewer_side:
        detail["the viewer's last open, its own timing"] = viewer_side
    return Figure(
        name="scoring all objectives of the largest scenario",
        value=_median(times),
        unit="s",
        better="lower",
        limit=SCORING_LIMIT,
        note=f"{path.stem}, {count} objectives, median of {evaluations}",
        detail=detail,
    )


def _last_open(lab: Lab) -> str:
    """What the viewer's newest open (a viewer_opens check) moved and how long it took."""
    try:
        opens = lab.client("viewer").get("/opens", limit=1)
    except AdminApiError:
        return ""
    if not opens:
        return ""
    last = opens[0]
    return (
        f"{last.get('instances')} instances in {last.get('duration_s')} s "
        f"(ok={last.get('ok')}, C-FIND + {str(last.get('method', '')).upper()})"
    )


def _down_all(home: Path) -> None:
    from simlab.runtime.manifest import list_labs

    for lab_id in list_labs(home):
        try:
            Lab.open(home, lab_id).down()
        except Exception as exc:  # best effort: report, go on with the next lab
            print(f"could not stop lab {lab_id}: {exc}", file=sys.stderr)


# ----------------------------------------------------------------------------- simulate-day
_ID = re.compile(r"[0-9]")


def call_kind(node_id: str, method: str, path: str) -> str:
    """'modality POST /procedures/{id}/acquire': the call with ids folded, the node by role."""
    role = re.sub(r"-\d+$", "", node_id)
    role = "modality" if role in ("ct", "mr", "cr", "us", "dx") else role
    parts = ["{id}" if _ID.search(p) else p for p in path.split("?")[0].split("/")]
    return f"{role} {method} {'/'.join(parts)}"


class CallTimes:
    """Seconds and counts of admin-API round trips, by kind (shared by the timed clients)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def add(self, kind: str, seconds: float) -> None:
        with self._lock:
            self.seconds[kind] += seconds
            self.counts[kind] += 1

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


class TimedClient(AdminClient):
    """An AdminClient that records how long each of its round trips took."""

    def __init__(self, node_id: str, inner: AdminClient, times: CallTimes) -> None:
        super().__init__(inner.base_url, inner._token, inner.timeout)
        self.node_id = node_id
        self.times = times

    def request(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        started = time.monotonic()
        try:
            return super().request(method, path, body, **query)
        finally:
            self.times.add(call_kind(self.node_id, method, path), time.monotonic() - started)


def day_figure(studies: int, seed: int = 7) -> Figure:
    times = CallTimes()
    stages: dict[str, list[float]] = {}
    with temp_home("day") as home:
        lab = Lab.create(home, "day")
        try:
            lab.up(timeout=60)
            statuses = lab.status()
            clients: dict[str, AdminClient] = {
                st.entry.node_id: TimedClient(
                    st.entry.node_id, lab.client(st.entry.node_id, timeout=120), times
                )
                for st in statuses
            }
            stations = {
                st.entry.node_id: (st.health["profile"], st.entry.ae_title or "")
                for st in statuses
                if st.entry.role == "modality"
            }

            def progress(stage: str, _done: int, _total: int) -> None:
                now = time.monotonic()
                stages.setdefault(stage, [now, now])[1] = now

            started = time.monotonic()
            report = simulate_day(clients, stations, studies=studies, seed=seed, progress=progress)
            wall = time.monotonic() - started
        finally:
            lab.down()
    protocol = times.total
    good = sum(o.ok for o in report.orders)
    detail: dict[str, float | str] = {
        "wall (s)": round(wall, 2),
        "protocol work: admin-API round trips (s)": round(protocol, 2),
        "orders reconciled": f"{good} of {len(report.orders)}",
    }
    for kind, s in sorted(times.seconds.items(), key=lambda kv: -kv[1]):
        detail[f"{kind} (s, {times.counts[kind]} calls)"] = round(s, 2)
    begin = started
    for stage, (_first, last) in stages.items():
        detail[f"stage until '{stage}' done (s)"] = round(last - begin, 2)
    return Figure(
        name=f"simulate-day --studies {studies}: wall / protocol work",
        value=wall / protocol if protocol else 0.0,
        unit="x",
        better="lower",
        note=f"wall {wall:.1f} s, round trips {protocol:.1f} s",
        detail=detail,
    )


# ---------------------------------------------------------------------------------- the run
def figures(
    quick: bool = False,
    boots: int | None = None,
    docker_boots: int | None = None,
    evaluations: int | None = None,
    studies: int | None = None,
    only: tuple[str, ...] = PARTS,
) -> list[Figure]:
    """Every lab-level figure; `quick` uses smaller sizes (2 boots, 20 studies)."""
    boots = boots or (2 if quick else 5)
    docker_boots = docker_boots or (1 if quick else 3)
    evaluations = evaluations or (10 if quick else 20)
    studies = studies or (20 if quick else 200)
    out: list[Figure] = []
    if "boot" in only:
        out.append(boot_figure(boots))
    if "docker" in only:
        out.append(docker_boot_figure(docker_boots))
    if "scoring" in only:
        out.append(scoring_figure(evaluations))
    if "day" in only:
        out.append(day_figure(studies))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 boots, 1 docker boot, 20 studies")
    parser.add_argument("--boots", type=int, help="local boots (default 5)")
    parser.add_argument("--docker-boots", type=int, help="docker boots (default 3)")
    parser.add_argument("--evaluations", type=int, help="scoring evaluations (default 20)")
    parser.add_argument("--studies", type=int, help="orders of the simulated day (default 200)")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    args = parser.parse_args(argv)
    got = figures(
        quick=args.quick,
        boots=args.boots,
        docker_boots=args.docker_boots,
        evaluations=args.evaluations,
        studies=args.studies,
        only=tuple(args.only),
    )
    print(table(got))
    print(details(got))
    return 0


if __name__ == "__main__":
    sys.exit(main())
