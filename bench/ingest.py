"""Ingest benchmark: how fast the simlab PACS stores CT images, next to Orthanc and storescp.

It generates N synthetic CT images (512x512, 16 bits; default N=300) into bench/.work/, then in
one run, interleaved over several rounds, sends them with DCMTK's storescu over one association
and over four parallel associations (the files split between four storescu processes) to the
simlab PACS, Orthanc and DCMTK's storescp (see bench/servers.py).

Every trial starts its server fresh on an empty store (so a second send is never a duplicate),
waits until it answers a C-ECHO, times the storescu processes from start to exit, checks the
server holds every image, then stops it. Only 127.0.0.1 is used. The figures are the median
rate of the rounds, simlab against Orthanc (goal >= 1.0x) and against storescp (>= 0.5x).

    .venv/bin/python -m bench.ingest [--count 300] [--rounds 3] [--size 512] [--parallel 1 4]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.figures import Figure, details, table
from bench.servers import (
    NOT_ERRORS,
    BenchError,
    Supervisor,
    Target,
    bench_session,
    check_stored,
    make_targets,
    median_or_none,
    missing_tools,
    prepare_images,
    send,
    server_notes,
)

GOALS = {"orthanc": 1.0, "storescp": 0.5}
"""The issue's goals: simlab's ingest rate as a multiple of each peer's."""


@dataclass
class Trial:
    target: str
    parallel: int
    round: int
    seconds: float | None
    error: str = ""


def run_trial(
    target: Target, files: list[Path], parallel: int, rnd: int, scratch: Path, sup: Supervisor
) -> Trial:
    """One send to a freshly started server on an empty store."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"{target.name}-p{parallel}-r{rnd}-", dir=scratch))
    try:
        target.start(run_dir)
        seconds = send(target, files, parallel, sup)
        check_stored(target, len(files))
        return Trial(target.name, parallel, rnd, seconds)
    except (BenchError, *NOT_ERRORS) as exc:
        return Trial(target.name, parallel, rnd, None, str(exc))
    finally:
        target.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


def run_trials(
    files: list[Path],
    rounds: int,
    parallel: list[int],
    targets: list[Target],
    sup: Supervisor,
    scratch: Path,
) -> list[Trial]:
    """Every (server, parallel) trial once a round; the order rotates so no server always goes
    first (a warm page cache or a busy neighbour favours nobody)."""
    trials = []
    for rnd in range(rounds):
        order = targets[rnd % len(targets) :] + targets[: rnd % len(targets)]
        parallels = parallel if rnd % 2 == 0 else list(reversed(parallel))
        for assoc in parallels:
            for target in order:
                trial = run_trial(target, files, assoc, rnd, scratch, sup)
                state = f"{trial.seconds:.2f} s" if trial.seconds else f"FAILED {trial.error}"
                print(f"round {rnd + 1}: {target.name:<9} x{assoc}: {state}", flush=True)
                trials.append(trial)
    return trials


def figures_from_trials(
    trials: list[Trial], count: int, total_bytes: int, targets: list[Target]
) -> list[Figure]:
    """Images/s of simlab at each association count, against each peer."""
    notes = {t.name: t.note for t in targets}

    def rate(name: str, parallel: int) -> tuple[float | None, list[Trial]]:
        mine = [t for t in trials if t.target == name and t.parallel == parallel]
        median = median_or_none([t.seconds for t in mine if t.seconds is not None])
        return (count / median if median else None), mine

    out = []
    for parallel in sorted({t.parallel for t in trials}):
        value, own = rate("simlab", parallel)
        for peer, goal in GOALS.items():
            if peer not in notes:
                continue
            peer_value, theirs = rate(peer, parallel)
            detail: dict[str, float | str] = {
                "simlab rounds (s)": _rounds(own),
                f"{peer} rounds (s)": _rounds(theirs),
            }
            errors = [t.error for t in own + theirs if t.error]
            if errors:
                detail["error"] = errors[0]
            out.append(
                Figure(
                    name=f"PACS ingest, {parallel} association{'s' if parallel > 1 else ''}",
                    value=value or 0.0,
                    unit="images/s",
                    better="higher",
                    peer=peer,
                    peer_value=peer_value,
                    min_ratio=goal,
                    note=f"{count} CT, {total_bytes / 1e6:.0f} MB",
                    detail=detail,
                )
            )
    return out


def _rounds(trials: list[Trial]) -> str:
    return " ".join("failed" if t.seconds is None else f"{t.seconds:.2f}" for t in trials)


def figures(
    count: int = 300,
    rounds: int = 3,
    size: int = 512,
    parallel: list[int] | None = None,
    targets: list[str] | None = None,
) -> list[Figure]:
    """Run the ingest benchmark; its figures (simlab against Orthanc and storescp at each
    association count). Every server is stopped and every scratch file removed on return."""
    parallel = parallel or [1, 4]
    missing = missing_tools("storescu", "echoscu", "storescp")
    if missing:
        raise BenchError(f"DCMTK tools missing: {', '.join(missing)}")
    files = prepare_images(count, size)
    total_bytes = sum(p.stat().st_size for p in files)
    with bench_session("simlab-bench-ingest-") as (supervisor, scratch):
        servers = make_targets(targets or ["simlab", "orthanc", "storescp"], supervisor)
        trials = run_trials(files, rounds, parallel, servers, supervisor, scratch)
    return figures_from_trials(trials, count, total_bytes, servers)


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
    try:
        result = figures(args.count, args.rounds, args.size, args.parallel, args.targets)
    except KeyboardInterrupt:
        print("\ninterrupted; every server stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"ingest benchmark: {exc}", file=sys.stderr)
        return 1
    print()
    print(table(result))
    print(details(result))
    print()
    print(server_notes(args.targets))
    return 0 if all(f.value and f.peer_value for f in result) else 1


if __name__ == "__main__":
    sys.exit(main())
