"""The score report: rendered from the journal and the score, as text, JSON and one HTML page.

The timeline shows what fired and what the trainee did, with times from the start; each
objective comes with its evidence; the score with every line; then the root-cause questions and
the debrief. The HTML page is self-contained (inline CSS, no scripts, everything escaped), so it
can be mailed to an instructor or archived with a certification portfolio.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

from simlab.scenarios.engine import ScenarioRun
from simlab.scenarios.scoring import Score

TIMELINE_KINDS = {
    "scenario_started": "scenario started",
    "steady_state": "steady state checked",
    "ticket_shown": "ticket shown",
    "fault_injected": "fault fired",
    "fault_reverted": "fault reverted",
    "fault_failed": "fault failed to fire",
    "activity": "department activity",
    "action": "action",
    "hint_taken": "hint taken",
    "node_exited": "node exited",
    "node_restarted": "node restarted",
    "node_stopped": "node stopped",
    "note": "note",
    "submitted": "submitted",
}


def build_report(run: ScenarioRun, score: Score) -> dict[str, Any]:
    """The report as data (the JSON form; text and HTML render this)."""
    scenario, state = run.scenario, run.state
    started = state.started_at or 0.0
    submitted = state.submitted_at or time.time()
    return {
        "scenario": {
            "id": scenario.id,
            "title": scenario.title,
            "level": scenario.level,
            "expected_minutes": scenario.expected_minutes,
            "seed": scenario.seed,
            "domains": scenario.domains.model_dump(mode="json"),
        },
        "lab": run.lab.manifest.lab_id,
        "actor": state.actor,
        "started_at": started,
        "submitted_at": submitted,
        "elapsed_seconds": round(submitted - started, 1),
        "score": score.as_dict(),
        "objectives": [o.as_dict() for o in score.objectives],
        "timeline": timeline(run),
        "faults": [
            {"id": f.id, "type": f.type, "fired": f.id in state.fired} for f in scenario.faults
        ],
        "questions": [
            {
                "id": q.id,
                "text": q.text,
                "answer_given": state.answers.get(q.id, ""),
                "choices": q.choices,
            }
            for q in scenario.questions
        ],
        "hints_taken": state.hints_taken,
        "debrief": run.fill(scenario.debrief),
    }


def timeline(run: ScenarioRun) -> list[dict[str, Any]]:
    """Journal events worth reading, with seconds from the scenario's start."""
    started = run.state.started_at or 0.0
    out = []
    for event in run.lab.events.read():
        kind = event.get("kind", "")
        if kind not in TIMELINE_KINDS:
            continue
        extra = {k: v for k, v in event.items() if k not in ("ts", "kind")}
        out.append(
            {
                "t": round(float(event.get("ts", 0)) - started, 1),
                "kind": kind,
                "what": TIMELINE_KINDS[kind],
                "detail": _detail(kind, extra),
                "actor": extra.get("actor", ""),
            }
        )
    return out


def _detail(kind: str, extra: dict[str, Any]) -> str:
    if kind == "action":
        args = ", ".join(f"{k}={v}" for k, v in (extra.get("args") or {}).items())
        result = "ok" if extra.get("ok", True) else f"failed: {extra.get('error', '')}"
        return f"{extra.get('action')}({args}) {result}"
    if kind in ("fault_injected", "fault_reverted", "fault_failed"):
        return f"{extra.get('fault')} ({extra.get('type')})"
    return ", ".join(f"{k}={v}" for k, v in extra.items() if k != "actor")


def _clock(seconds: float) -> str:
    sign = "-" if seconds < 0 else ""
    seconds = abs(int(seconds))
    return f"{sign}{seconds // 60:02d}:{seconds % 60:02d}"


def render_text(report: dict[str, Any]) -> str:
    s, sc = report["score"], report["scenario"]
    lines = [
        f"{sc['title']} ({sc['id']}, {sc['level']})",
        f"Score: {s['total']:g} / {s['maximum']:g} ({s['percent']:g}%) — "
        + ("PASSED" if s["passed"] else f"not passed (pass mark {s['pass_percent']:g}%)"),
        f"Time: {_clock(report['elapsed_seconds'])} "
        f"(expected {report['scenario']['expected_minutes']:g} min)",
        "",
        "Objectives:",
    ]
    for o in report["objectives"]:
        mark = "[x]" if o["ok"] else "[ ]"
        lines.append(f"  {mark} {o['title']}")
        lines.append(f"      evidence: {o['evidence']}")
    lines += ["", "Score breakdown:"]
    for line in s["lines"]:
        lines.append(f"  {line['points']:+7.1f}  {line['category']:<11} {line['label']}")
        if line["detail"]:
            lines.append(f"           {line['detail']}")
    lines += ["", "Timeline:"]
    for item in report["timeline"]:
        who = f" [{item['actor']}]" if item["actor"] else ""
        lines.append(f"  {_clock(item['t'])}  {item['what']}{who}: {item['detail']}")
    lines += ["", "Debrief:", report["debrief"].strip()]
    return "\n".join(lines) + "\n"


_CSS = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.6rem;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%}td,th{padding:.25rem .5rem;border-bottom:1px solid #eee;
text-align:left;vertical-align:top}.ok{color:#176117}.fail{color:#a11}.num{text-align:right;
font-variant-numeric:tabular-nums}.score{font-size:1.3rem;font-weight:bold}
pre{white-space:pre-wrap;background:#f6f6f6;padding:.8rem}
"""


def render_html(report: dict[str, Any]) -> str:
    e = html.escape
    s = report["score"]
    sc = report["scenario"]
    verdict = "PASSED" if s["passed"] else f"not passed (pass mark {s['pass_percent']:g}%)"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(sc['title'])} — simlab report</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(sc['title'])}</h1>",
        f"<p>{e(sc['id'])} · {e(sc['level'])} · lab {e(report['lab'])} · "
        f"trainee {e(report['actor'])} · time {_clock(report['elapsed_seconds'])} "
        f"(expected {sc['expected_minutes']:g} min)</p>",
        f"<p class='score'>{s['total']:g} / {s['maximum']:g} ({s['percent']:g}%) — "
        f"{e(verdict)}</p>",
        "<h2>Objectives</h2><table><tr><th></th><th>Objective</th><th>Evidence</th></tr>",
    ]
    for o in report["objectives"]:
        cls, mark = ("ok", "✔") if o["ok"] else ("fail", "✘")
        parts.append(
            f"<tr><td class='{cls}'>{mark}</td><td>{e(o['title'])}</td>"
            f"<td>{e(o['evidence'])}</td></tr>"
        )
    parts.append("</table><h2>Score breakdown</h2><table>")
    for line in s["lines"]:
        parts.append(
            f"<tr><td class='num'>{line['points']:+.1f}</td><td>{e(line['category'])}</td>"
            f"<td>{e(line['label'])}</td><td>{e(line['detail'])}</td></tr>"
        )
    parts.append("</table><h2>Timeline</h2><table>")
    for item in report["timeline"]:
        parts.append(
            f"<tr><td class='num'>{_clock(item['t'])}</td><td>{e(item['what'])}</td>"
            f"<td>{e(item['actor'])}</td><td>{e(item['detail'])}</td></tr>"
        )
    parts.append("</table>")
    if report["questions"]:
        parts.append("<h2>Root-cause questions</h2><ul>")
        for q in report["questions"]:
            parts.append(
                f"<li>{e(q['text'])}<br>answer given: {e(q['answer_given'] or '(none)')}</li>"
            )
        parts.append("</ul>")
    parts.append(f"<h2>Debrief</h2><pre>{e(report['debrief'].strip())}</pre></body></html>")
    return "\n".join(parts) + "\n"


def write_report(report: dict[str, Any], directory: Path) -> dict[str, Path]:
    """Write report.json, report.txt and report.html; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": directory / "report.json",
        "text": directory / "report.txt",
        "html": directory / "report.html",
    }
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    paths["text"].write_text(render_text(report), encoding="utf-8")
    paths["html"].write_text(render_html(report), encoding="utf-8")
    return paths
