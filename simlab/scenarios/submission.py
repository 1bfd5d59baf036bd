"""Submit: freeze the answers, judge the lab, write the report (text, JSON, HTML)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simlab.scenarios.engine import ScenarioError, ScenarioRun
from simlab.scenarios.report import build_report, write_report
from simlab.scenarios.scoring import Score, score_session
from simlab.scenarios.session import save_session


@dataclass
class Submission:
    score: Score
    report: dict[str, Any]
    paths: dict[str, Path]


def submit(
    run: ScenarioRun, answers: dict[str, str] | None = None, actor: str = "trainee"
) -> Submission:
    """Score the session now and write its report under `<lab>/reports/`.

    A session is submitted once; a second submit raises (the first report stands).
    """
    run.refresh()
    if run.state.submitted_at is not None:
        raise ScenarioError("this session was already submitted")
    known = {q.id for q in run.scenario.questions}
    unknown = sorted(set(answers or {}) - known)
    if unknown:
        raise ScenarioError(
            f"no question {', '.join(unknown)} (questions: {', '.join(sorted(known)) or 'none'})"
        )
    run.state.answers.update(answers or {})
    save_session(run.lab, run.state)
    run.lab.events.append("submitted", actor=actor)
    # The session is marked submitted only once the report is written: the runner stops the
    # lab when it sees the mark, and the judging needs the lab up.
    now = time.time()
    score = score_session(run, now - (run.state.started_at or now))
    run.state.submitted_at = now
    report = build_report(run, score)
    paths = write_report(report, run.lab.paths.root / "reports")
    run.lab.events.append("scored", total=score.total, maximum=score.maximum, percent=score.percent)
    save_session(run.lab, run.state)
    return Submission(score, report, paths)
