"""Query/Retrieve benchmark: C-FIND latency and C-MOVE throughput, simlab PACS next to Orthanc.

Both servers are started once (see bench/servers.py) and filled through DICOM, with storescu
over four parallel associations, with the same corpus: N small CT images (default 10,000,
32x32) spread over 100 patients and 200 studies dated through 2025, plus the 300-image CT study
of the ingest benchmark (512x512). Files are generated once into bench/.work/ and reused.

- C-FIND: study-level queries with findscu (Study Root), interleaved between the servers, the
  median of the repeats: every study of a date range, a Patient's Name wildcard, and one
  Patient ID. Each asks what a worklist screen shows, counts of related instances included.
  Both servers must return the same number of matches.
- C-MOVE: movescu moves the 300-image study to a DCMTK storescp (started here, known to both
  servers as STORESCP), timed from start to exit, interleaved rounds; the destination must have
  received every image before the round counts.

    .venv/bin/python -m bench.qr [--instances 10000] [--rounds 3] [--count 300]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from pydicom import dcmread

from bench.figures import Figure, details, table
from bench.servers import (
    FINDSCU_AE,
    MOVESCU_AE,
    NOT_ERRORS,
    SEED,
    WORK_DIR,
    BenchError,
    Storescp,
    Supervisor,
    Target,
    bench_session,
    cached_files,
    check_stored,
    make_targets,
    median_or_none,
    missing_tools,
    prepare_images,
    send,
    server_notes,
    timed_tool,
)
from fake_modalities.images import CtSeriesSpec, PatientStudy, ct_series, write_dataset

FILL_PARALLEL = 4
"""storescu processes filling each server."""
FIND_TIMEOUT = 120.0
MOVE_TIMEOUT = 600.0
FIND_REPEATS = 5
"""C-FIND repeats a round (they are cheap; the median needs several)."""
GOAL = 1.0
"""The issue's goal: simlab at least as fast as Orthanc."""


# -- corpus ----------------------------------------------------------------------------------


def prepare_corpus(instances: int, studies: int, patients: int, size: int) -> list[Path]:
    """`instances` small CT images, `studies` studies (one series each) of `patients` patients,
    one study a day from 2025-01-01; cached under bench/.work/."""
    per_study = [
        instances // studies + (1 if i < instances % studies else 0) for i in range(studies)
    ]

    def generate(directory: Path) -> None:
        first_day = datetime(2025, 1, 1, 8, 0)
        for index, slices in enumerate(per_study):
            if slices == 0:
                continue
            number = index % patients
            study = PatientStudy(
                patient_id=f"QR{number:05d}",
                patient_name=f"QRPATIENT^N{number:05d}",
                birth_date=f"19{50 + number % 50:02d}0101",
                sex="MF"[number % 2],
                accession_number=f"QRACC{index:06d}",
                study_id=f"QR{index}",
                study_description="CT HEAD (Q/R benchmark)",
                study_datetime=first_day + timedelta(days=index % 365, minutes=index),
            )
            spec = CtSeriesSpec(slices=slices, rows=size, columns=size)
            folder = directory / f"s{index:05d}"
            folder.mkdir()
            for ds in ct_series(study, spec, seed=SEED + index):
                write_dataset(ds, folder / f"CT{int(ds.InstanceNumber):05d}.dcm")

    wanted = {"instances": instances, "studies": studies, "patients": patients, "size": size}
    name = f"qr-{instances}-{studies}st-{patients}pt-{size}px"
    return cached_files(WORK_DIR / name, wanted, instances, generate)


# -- queries ---------------------------------------------------------------------------------

STUDY_RETURN_KEYS = [
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyDescription",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
]
"""What a study list screen asks for (universal keys: returned, not matched)."""


@dataclass(frozen=True)
class Query:
    name: str
    keys: dict[str, str]


def queries(studies: int, patients: int) -> list[Query]:
    last = (datetime(2025, 1, 1) + timedelta(days=min(studies, 365) - 1)).strftime("%Y%m%d")
    return [
        Query("every study of a date range", {"StudyDate": f"20250101-{last}"}),
        Query("Patient's Name wildcard", {"PatientName": "QRPATIENT^N0001*"}),
        Query("one Patient ID", {"PatientID": f"QR{min(42, patients - 1):05d}"}),
    ]


def find(target: Target, query: Query, sup: Supervisor, log: Path) -> tuple[float, int]:
    """One study-level C-FIND with findscu; (seconds from start to exit, matches)."""
    keys = {key: "" for key in STUDY_RETURN_KEYS} | query.keys
    argv = ["findscu", "-S", "-v", "-aet", FINDSCU_AE, "-aec", target.ae_title]
    argv += ["-k", "QueryRetrieveLevel=STUDY"]
    for key, value in keys.items():
        argv += ["-k", f"{key}={value}" if value else key]
    elapsed = timed_tool(argv, target, sup, log, FIND_TIMEOUT)
    lines = log.read_text(errors="replace").splitlines()
    return elapsed, sum(1 for line in lines if "Find Response" in line and "Pending" in line)


def move(target: Target, study_uid: str, dest: Storescp, sup: Supervisor, log: Path) -> float:
    """One study-level C-MOVE to `dest` with movescu; seconds from start to exit."""
    argv = ["movescu", "-S", "-v", "-aet", MOVESCU_AE, "-aec", target.ae_title]
    argv += ["-aem", dest.ae_title, "-to", "60", "-ta", "30", "-td", "300"]
    argv += ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}"]
    return timed_tool(argv, target, sup, log, MOVE_TIMEOUT)


# -- the run ---------------------------------------------------------------------------------


@dataclass
class Results:
    fill_seconds: dict[str, float] = field(default_factory=dict)
    find: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    matches: dict[tuple[str, str], set[int]] = field(default_factory=dict)
    moves: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    find_errors: dict[str, str] = field(default_factory=dict)


def fill(targets: list[Target], files: list[Path], sup: Supervisor, results: Results) -> None:
    for target in targets:
        seconds = send(target, files, FILL_PARALLEL, sup)
        check_stored(target, len(files))
        results.fill_seconds[target.name] = seconds
        print(f"filled {target.name}: {len(files)} instances in {seconds:.1f} s", flush=True)


def run_finds(
    targets: list[Target],
    qs: list[Query],
    repeats: int,
    sup: Supervisor,
    scratch: Path,
    results: Results,
) -> None:
    for rep in range(repeats):
        for query in qs:
            order = targets if rep % 2 == 0 else list(reversed(targets))
            for target in order:
                try:
                    seconds, matches = find(target, query, sup, scratch / "findscu.log")
                except (BenchError, *NOT_ERRORS) as exc:
                    results.find_errors[query.name] = f"{target.name}: {exc}"
                    continue
                results.find.setdefault((target.name, query.name), []).append(seconds)
                results.matches.setdefault((target.name, query.name), set()).add(matches)
    for query in qs:
        seen = {n for t in targets for n in results.matches.get((t.name, query.name), set())}
        if (len(seen) != 1 or 0 in seen) and query.name not in results.find_errors:
            results.find_errors[query.name] = (
                f"match counts differ between servers, or none: {seen}"
            )


def run_moves(
    targets: list[Target],
    study_uid: str,
    count: int,
    dest: Storescp,
    rounds: int,
    sup: Supervisor,
    scratch: Path,
    results: Results,
) -> None:
    for rnd in range(rounds):
        order = targets[rnd % len(targets) :] + targets[: rnd % len(targets)]
        for target in order:
            dest.clear()
            try:
                seconds = move(target, study_uid, dest, sup, scratch / "movescu.log")
                received = dest.stored()
                if received != count:
                    raise BenchError(f"destination received {received} of {count} images")
            except (BenchError, *NOT_ERRORS) as exc:
                results.errors.append(f"C-MOVE from {target.name}: {exc}")
                print(f"round {rnd + 1}: C-MOVE {target.name:<8} FAILED {exc}", flush=True)
                continue
            results.moves.setdefault(target.name, []).append(seconds)
            print(f"round {rnd + 1}: C-MOVE {target.name:<8} {seconds:.2f} s", flush=True)


def figures(
    instances: int = 10_000,
    studies: int = 200,
    patients: int = 100,
    size: int = 32,
    count: int = 300,
    move_size: int = 512,
    rounds: int = 3,
) -> list[Figure]:
    """Run the Q/R benchmark; its figures (C-FIND latency per query, C-MOVE rate), simlab
    against Orthanc. Every server is stopped and every scratch file removed on return."""
    missing = missing_tools("storescu", "echoscu", "storescp", "findscu", "movescu")
    if missing:
        raise BenchError(f"DCMTK tools missing: {', '.join(missing)}")
    corpus = prepare_corpus(instances, studies, patients, size)
    move_files = prepare_images(count, move_size)
    study_uid = str(dcmread(move_files[0], stop_before_pixels=True).StudyInstanceUID)
    qs = queries(studies, patients)
    results = Results()
    with bench_session("simlab-bench-qr-") as (sup, scratch):
        dest = Storescp(sup)
        dest.start(scratch / "destination")
        targets = make_targets(["simlab", "orthanc"], sup, peers={dest.ae_title: dest.port})
        for target in targets:
            target.start(scratch / target.name)
        fill(targets, corpus + move_files, sup, results)
        run_finds(targets, qs, FIND_REPEATS * rounds, sup, scratch, results)
        run_moves(targets, study_uid, count, dest, rounds, sup, scratch, results)
    return _figures(results, qs, instances + count, count)


def _figures(results: Results, qs: list[Query], indexed: int, move_count: int) -> list[Figure]:
    out = []
    for query in qs:
        mine = median_or_none(results.find.get(("simlab", query.name), []))
        theirs = median_or_none(results.find.get(("orthanc", query.name), []))
        matches = sorted(results.matches.get(("simlab", query.name), set()))
        detail: dict[str, float | str] = {
            "keys": " ".join(f"{k}={v}" for k, v in query.keys.items()),
            "simlab (ms)": _ms(results.find.get(("simlab", query.name), [])),
            "orthanc (ms)": _ms(results.find.get(("orthanc", query.name), [])),
        }
        if query.name in results.find_errors:
            detail["error"] = results.find_errors[query.name]
        out.append(
            Figure(
                name=f"C-FIND study level, {query.name}",
                value=(mine or 0.0) * 1000,
                unit="ms",
                better="lower",
                peer="Orthanc",
                peer_value=None if theirs is None else theirs * 1000,
                min_ratio=GOAL,
                note=f"{matches[0] if len(matches) == 1 else matches} of {indexed:,} instances",
                detail=detail,
            )
        )
    mine_s = median_or_none(results.moves.get("simlab", []))
    theirs_s = median_or_none(results.moves.get("orthanc", []))
    detail = {
        "simlab rounds (s)": " ".join(f"{s:.2f}" for s in results.moves.get("simlab", [])),
        "orthanc rounds (s)": " ".join(f"{s:.2f}" for s in results.moves.get("orthanc", [])),
    }
    for name, seconds in results.fill_seconds.items():
        detail[f"{name} fill (s, {FILL_PARALLEL} associations)"] = round(seconds, 1)
    for number, error in enumerate(results.errors):
        detail[f"error {number + 1}"] = error
    out.append(
        Figure(
            name="C-MOVE of a study to storescp",
            value=move_count / mine_s if mine_s else 0.0,
            unit="images/s",
            better="higher",
            peer="Orthanc",
            peer_value=move_count / theirs_s if theirs_s else None,
            min_ratio=GOAL,
            note=f"{move_count} CT",
            detail=detail,
        )
    )
    return out


def _ms(values: list[float]) -> str:
    return " ".join(f"{v * 1000:.0f}" for v in values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=10_000, help="indexed instances (10000)")
    parser.add_argument("--studies", type=int, default=200, help="studies (200)")
    parser.add_argument("--patients", type=int, default=100, help="patients (100)")
    parser.add_argument("--size", type=int, default=32, help="rows/columns of those (32)")
    parser.add_argument("--count", type=int, default=300, help="images of the moved study (300)")
    parser.add_argument("--move-size", type=int, default=512, help="their rows/columns (512)")
    parser.add_argument("--rounds", type=int, default=3, help="C-MOVE rounds (3)")
    args = parser.parse_args(argv)
    if min(args.instances, args.studies, args.patients, args.count, args.rounds) < 1:
        parser.error("counts and rounds must be positive")
    if args.studies > args.instances:
        parser.error("at least one instance a study")
    try:
        result = figures(
            args.instances,
            args.studies,
            args.patients,
            args.size,
            args.count,
            args.move_size,
            args.rounds,
        )
    except KeyboardInterrupt:
        print("\ninterrupted; every server stopped", file=sys.stderr)
        return 130
    except (BenchError, *NOT_ERRORS) as exc:
        print(f"Q/R benchmark: {exc}", file=sys.stderr)
        return 1
    print()
    print(table(result))
    print(details(result))
    print()
    print(server_notes(["simlab", "orthanc", "storescp"]))
    return 0 if all(f.passed is not None for f in result) else 1


if __name__ == "__main__":
    sys.exit(main())
