"""Capacity: how many labs (default department) run side by side on this machine (issue 8).

Labs are started one after another on the local runtime (separate lab ids in one temporary
home). After each boot every running lab is measured: the sum of its node processes' VmRSS
(/proc/<pid>/status) and PSS (/proc/<pid>/smaps_rollup; shared pages split between the
processes that map them, so PSS sums to what the labs really cost the machine), plus the
machine's MemAvailable. It stops at --max-labs, when MemAvailable falls under --min-available,
or when a lab fails to boot. Then one lab plays `simulate_day(studies=N)` while its RSS is
sampled; the figure is the peak.

Figures: idle labs reached (goal >= 20), RSS per idle lab, median (goal <= 300 MB), the CPU an
idle lab uses (measured: with one process per node, idle polling is what limits a 2-core
machine), PSS per idle lab, median (measured), RSS of one lab during simulate-day, peak
(measured). The breakdown also says how many labs would fit by memory. Every lab started
is stopped again, also on Ctrl-C.

    .venv/bin/python -m bench.capacity [--quick] [--max-labs 20] [--studies 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bench.figures import Figure, details, table
from simlab.client.admin import AdminClient
from simlab.runtime.lab import Lab, LabError
from simlab.workflow.day import simulate_day

LABS_GOAL = 20
RSS_GOAL_MB = 300.0
MIN_AVAILABLE_MB = 2048.0
SAMPLE_SECONDS = 0.25
IDLE_WINDOW = 10.0
"""Seconds over which the labs' idle CPU use is measured."""


# --------------------------------------------------------------------------------- /proc
def _kib_field(path: str, name: str) -> float:
    """One 'Name:   123 kB' line of a /proc file, in MB (0 when the process is gone)."""
    try:
        with open(path, encoding="ascii") as fh:
            for line in fh:
                if line.startswith(name + ":"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def descendants(pid: int) -> list[int]:
    """The pid and every child process under it (a node that forks a helper pays for it)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            with open(f"/proc/{current}/task/{current}/children", encoding="ascii") as fh:
                todo += [int(c) for c in fh.read().split()]
        except OSError:
            pass
    return out


def process_memory(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of one process and its children, in MB."""
    rss = pss = 0.0
    for p in descendants(pid):
        rss += _kib_field(f"/proc/{p}/status", "VmRSS")
        pss += _kib_field(f"/proc/{p}/smaps_rollup", "Pss")
    return rss, pss


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children so far (0 when gone)."""
    total = 0.0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/stat", encoding="ascii") as fh:
                fields = fh.read().rsplit(") ", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def idle_cpu_percent(labs: list[Lab], seconds: float) -> list[float]:
    """Each lab's CPU use over `seconds` of idling, in percent of one core."""

    def used() -> list[float]:
        return [sum(cpu_seconds(e.pid) for e in lab.manifest.nodes if e.pid) for lab in labs]

    before = used()
    time.sleep(seconds)
    return [100 * (b - a) / seconds for a, b in zip(before, used(), strict=True)]


def mem_available_mb() -> float:
    return _kib_field("/proc/meminfo", "MemAvailable")


@dataclass
class LabMemory:
    rss: float
    pss: float
    nodes: dict[str, tuple[float, float]] = field(default_factory=dict)


def lab_memory(lab: Lab) -> LabMemory:
    """Sum over the lab's node processes."""
    nodes = {e.node_id: process_memory(e.pid) for e in lab.manifest.nodes if e.pid}
    return LabMemory(
        rss=sum(r for r, _ in nodes.values()), pss=sum(p for _, p in nodes.values()), nodes=nodes
    )


# ----------------------------------------------------------------------------- the run
def down_all(labs: list[Lab]) -> None:
    """Stop every lab, a few at once; report a lab that will not stop and go on."""

    def stop(lab: Lab) -> None:
        try:
            lab.down()
        except Exception as exc:  # best effort: the others must still stop
            print(f"could not stop lab {lab.manifest.lab_id}: {exc}", file=sys.stderr)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(stop, labs))


def day_peak(lab: Lab, studies: int) -> tuple[LabMemory, float, str]:
    """Run simulate_day in the lab while sampling its memory; (peak sample, seconds, result)."""
    statuses = lab.status()
    clients: dict[str, AdminClient] = {
        st.entry.node_id: lab.client(st.entry.node_id, timeout=120) for st in statuses
    }
    stations = {
        st.entry.node_id: (st.health["profile"], st.entry.ae_title or "")
        for st in statuses
        if st.entry.role == "modality"
    }
    peak = lab_memory(lab)
    per_node_peak = dict(peak.nodes)
    done = threading.Event()
    result: list[str] = []

    def play() -> None:
        try:
            report = simulate_day(clients, stations, studies=studies, seed=7)
            good = sum(o.ok for o in report.orders)
            result.append(f"{good} of {len(report.orders)} orders reconciled")
        except Exception as exc:  # reported in the figure's note
            result.append(f"failed: {exc}")
        finally:
            done.set()

    started = time.monotonic()
    worker = threading.Thread(target=play, name="simulate-day", daemon=True)
    worker.start()
    while not done.wait(SAMPLE_SECONDS):
        sample = lab_memory(lab)
        if sample.rss > peak.rss:
            peak = sample
        for node, (rss, pss) in sample.nodes.items():
            old = per_node_peak.get(node, (0.0, 0.0))
            per_node_peak[node] = (max(old[0], rss), max(old[1], pss))
    seconds = time.monotonic() - started
    worker.join()
    peak.nodes = per_node_peak
    return peak, seconds, result[0] if result else "no result"


def figures(
    quick: bool = False,
    max_labs: int | None = None,
    studies: int = 20,
    min_available_mb: float = MIN_AVAILABLE_MB,
) -> list[Figure]:
    """Start labs until a bound, measure them idle, then one during simulate-day."""
    max_labs = max_labs or (3 if quick else LABS_GOAL)
    home = Path(tempfile.mkdtemp(prefix="simlab-bench-capacity-"))
    labs: list[Lab] = []
    started: list[Lab] = []  # every lab asked to start, stopped in the end (also on Ctrl-C)
    available: list[float] = [mem_available_mb()]
    stop_reason = f"bound of {max_labs} labs"
    try:
        for i in range(max_labs):
            lab = Lab.create(home, f"cap{i:02d}")
            started.append(lab)
            try:
                lab.up(timeout=120)
            except LabError as exc:
                stop_reason = f"lab {i + 1} failed to boot: {str(exc).splitlines()[0]}"
                break
            labs.append(lab)
            free = mem_available_mb()
            available.append(free)
            print(f"lab {i + 1} up, MemAvailable {free:,.0f} MB", file=sys.stderr, flush=True)
            if free < min_available_mb:
                stop_reason = f"MemAvailable {free:,.0f} MB < {min_available_mb:,.0f} MB"
                break
        time.sleep(1.0)  # let the last lab finish its start-up work before measuring idle
        idle = [lab_memory(lab) for lab in labs]
        available_idle = mem_available_mb()
        idle_cpu = idle_cpu_percent(labs, IDLE_WINDOW) if labs else []
        peak, day_seconds, day_result = day_peak(labs[0], studies) if labs else (None, 0.0, "")
    finally:
        down_all(started)
        shutil.rmtree(home, ignore_errors=True)

    per_node: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for m in idle:
        for node, value in m.nodes.items():
            per_node[node].append(value)
    rss_detail: dict[str, float | str] = {
        f"{node} (median RSS / PSS MB)": f"{statistics.median(r for r, _ in v):.1f} / "
        f"{statistics.median(p for _, p in v):.1f}"
        for node, v in per_node.items()
    }
    rss_detail["labs' RSS (MB)"] = ", ".join(f"{m.rss:.0f}" for m in idle)
    rss_detail["labs' PSS (MB)"] = ", ".join(f"{m.pss:.0f}" for m in idle)
    rss_detail["MemAvailable before and after each lab (MB)"] = ", ".join(
        f"{a:,.0f}" for a in available
    )
    rss_detail["MemAvailable with every lab idle (MB)"] = round(available_idle)
    if labs:
        per_lab = (available[0] - available_idle) / len(labs)
        room = available[0] - min_available_mb
        rss_detail["MemAvailable used per lab (MB)"] = round(per_lab)
        rss_detail[f"labs that fit by memory (keeping {min_available_mb:,.0f} MB free)"] = (
            int(room // per_lab) if per_lab > 0 else "-"
        )
    out = [
        Figure(
            name="idle labs side by side (default department)",
            value=float(len(labs)),
            unit="labs",
            better="higher",
            limit=float(LABS_GOAL),
            note=f"stopped at: {stop_reason}",
        ),
        Figure(
            name="RSS per idle lab, median",
            value=statistics.median(m.rss for m in idle) if idle else 0.0,
            unit="MB",
            better="lower",
            limit=RSS_GOAL_MB,
            note=f"{len(idle)} labs",
            detail=rss_detail,
        ),
        Figure(
            name="CPU of an idle lab, median",
            value=statistics.median(idle_cpu) if idle_cpu else 0.0,
            unit="% of a core",
            better="lower",
            note=f"over {IDLE_WINDOW:g} s; {os.cpu_count()} cores",
            detail={"labs (%)": ", ".join(f"{c:.1f}" for c in idle_cpu)},
        ),
        Figure(
            name="PSS per idle lab, median",
            value=statistics.median(m.pss for m in idle) if idle else 0.0,
            unit="MB",
            better="lower",
            note=f"{len(idle)} labs",
        ),
    ]
    if peak is not None:
        out.append(
            Figure(
                name=f"RSS of a lab during simulate-day --studies {studies}, peak",
                value=peak.rss,
                unit="MB",
                better="lower",
                note=f"{day_seconds:.0f} s, {day_result}",
                detail={
                    f"{node} (peak RSS / PSS MB)": f"{r:.1f} / {p:.1f}"
                    for node, (r, p) in peak.nodes.items()
                }
                | {"PSS at the RSS peak (MB)": round(peak.pss)},
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 labs")
    parser.add_argument("--max-labs", type=int, help=f"stop after this many (default {LABS_GOAL})")
    parser.add_argument("--studies", type=int, default=20, help="orders of the simulated day")
    parser.add_argument(
        "--min-available",
        type=float,
        default=MIN_AVAILABLE_MB,
        help="stop when MemAvailable falls under this many MB",
    )
    args = parser.parse_args(argv)
    got = figures(
        quick=args.quick,
        max_labs=args.max_labs,
        studies=args.studies,
        min_available_mb=args.min_available,
    )
    print(table(got))
    print(details(got))
    return 0


if __name__ == "__main__":
    sys.exit(main())
