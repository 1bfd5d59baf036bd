"""Every benchmark of issue 8 in one run: one table, and docs/performance.md rewritten.

`bash bench/run` sets the machine up and calls this. Each bench module offers
`figures(...) -> list[Figure]`; a bench that fails prints why and the others still run (the exit
status is then 1). The full run writes docs/performance.md: the table, the breakdowns, the
machine and the command, so the page always says where its numbers came from.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench.figures import Figure, details, table, to_json

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"


def _ingest(quick: bool) -> list[Figure]:
    from bench import ingest

    if quick:
        return ingest.figures(count=60, rounds=1)
    return ingest.figures(count=300, rounds=3)


def _qr(quick: bool) -> list[Figure]:
    from bench import qr

    if quick:
        return qr.figures(instances=1000, count=60, rounds=1)
    return qr.figures()


def _lab(quick: bool) -> list[Figure]:
    from bench import lab

    return lab.figures(quick=quick)


def _capacity(quick: bool) -> list[Figure]:
    from bench import capacity

    return capacity.figures(quick=quick)


BENCHES: dict[str, Callable[[bool], list[Figure]]] = {
    "ingest": _ingest,
    "qr": _qr,
    "lab": _lab,
    "capacity": _capacity,
}


def machine() -> str:
    cores = os.cpu_count() or 0
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            kb = int(next(line for line in fh if line.startswith("MemTotal")).split()[1])
        memory = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        memory = "unknown memory"
    system = f"{platform.system()} {platform.machine()}"
    return f"{system}, {cores} cores, {memory}, Python {platform.python_version()}"


def write_doc(figures: list[Figure], command: str, seconds: float) -> None:
    today = datetime.date.today().isoformat()
    text = [
        "# Performance",
        "",
        "Speed goals live in `bench/`, never as timed asserts in tests. Every figure with a peer",
        "is a ratio against that peer (Orthanc, DCMTK) measured in the same run, interleaved,",
        'because these machines are noisy; the ratio reads "simlab relative to the peer, higher',
        'is better" (for a time it is peer/simlab).',
        "",
        f"Latest figures ({today}, {machine()}), made by `{command}` in {seconds / 60:.0f} min:",
        "",
        table(figures),
    ]
    breakdown = details(figures)
    if breakdown:
        text += ["## Breakdowns", "", "```", breakdown, "```", ""]
    text += [
        "## How to run",
        "",
        "```sh",
        "bash bench/run                 # everything; rewrites this page",
        "bash bench/run --quick         # smaller sizes, to try it (this page is left alone)",
        "bash bench/run --only ingest   # one bench (ingest, qr, lab, capacity)",
        "```",
        "",
    ]
    DOC.write_text("\n".join(text), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes; docs untouched")
    parser.add_argument("--only", nargs="+", choices=list(BENCHES), default=list(BENCHES))
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/performance.md")
    args = parser.parse_args(argv)
    started = time.monotonic()
    figures: list[Figure] = []
    failed = []
    for name in args.only:
        print(f"== {name}", flush=True)
        try:
            got = BENCHES[name](args.quick)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except Exception:  # one bench's failure is reported; the others still run
            traceback.print_exc()
            failed.append(name)
            continue
        print(table(got), flush=True)
        figures += got
    seconds = time.monotonic() - started
    print(f"== all figures ({seconds / 60:.1f} min)")
    print(table(figures))
    print(details(figures))
    if args.json:
        args.json.write_text(to_json(figures), encoding="utf-8")
    if not args.quick and not args.no_doc and set(args.only) == set(BENCHES) and not failed:
        write_doc(figures, "bash bench/run", seconds)
        print(f"wrote {DOC.relative_to(ROOT)}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
