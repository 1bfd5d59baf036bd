"""Scoring rules that need no lab: weights, answers, time, config keys, the report pages."""

from __future__ import annotations

import pytest

from simlab.scenarios.checks import CheckResult, flatten_config, key_matches
from simlab.scenarios.engine import ObjectiveStatus
from simlab.scenarios.loader import parse_scenario
from simlab.scenarios.report import render_html, render_text
from simlab.scenarios.schema import Question
from simlab.scenarios.scoring import (
    Score,
    ScoreLine,
    _address_partner,
    normalise,
    objective_lines,
    question_lines,
    time_lines,
)
from tests.test_scenario_loader import GOOD

SCENARIO = parse_scenario(GOOD, "s.yaml")


def status(oid: str, weight: float, ok: bool) -> ObjectiveStatus:
    return ObjectiveStatus(oid, oid, weight, True, CheckResult(ok, "evidence"), "not yet")


def test_objectives_share_the_points_by_weight() -> None:
    lines = objective_lines(SCENARIO, [status("a", 3, True), status("b", 1, False)])
    assert [line.points for line in lines] == [75.0, 0.0]
    assert "not met (25.0 pts)" in lines[1].detail


def test_choice_and_short_answers() -> None:
    choice = Question(id="q", text="?", choices={"a": "x", "b": "y"}, answer="b")
    short = Question(id="r", text="?", accepted=["Called AE title", "called AET"], points=5)
    lines = question_lines([choice, short], {"q": "B", "r": "  called-AE  title! "})
    assert [line.points for line in lines] == [10, 5]
    lines = question_lines([choice, short], {"q": "a"})
    assert [line.points for line in lines] == [0, 0]
    assert "expected b) y" in lines[0].detail and lines[1].detail == (
        "not answered; expected Called AE title"
    )
    assert normalise("A-ASSOCIATE-RJ 1/1/7") == "a associate rj 1 1 7"


def test_time_over_the_expected_costs_up_to_the_cap() -> None:
    assert time_lines(SCENARIO, 9 * 60)[0].points == 0
    assert time_lines(SCENARIO, 13 * 60)[0].points == -3
    assert time_lines(SCENARIO, 120 * 60)[0].points == -SCENARIO.penalties.time_max


def test_config_is_flattened_with_rows_by_ae_title_and_patterns_match() -> None:
    flat = flatten_config(
        {
            "dicom": {"port": 104, "ae_title": "PACS"},
            "ae_table": [{"ae_title": "CT_1", "port": 4101}],
            "destinations": [{"name": "pacs", "port": 2575}],
        }
    )
    assert flat == {
        "dicom.port": 104,
        "dicom.ae_title": "PACS",
        "ae_table[CT_1].ae_title": "CT_1",
        "ae_table[CT_1].port": 4101,
        "destinations[pacs].name": "pacs",
        "destinations[pacs].port": 2575,
    }
    assert key_matches("ct-1:destination.*", "ct-1", "destination.port")
    assert not key_matches("ct-1:destination.*", "mr-1", "destination.port")
    assert key_matches("pacs:ae_table[CT_1].*", "pacs", "ae_table[CT_1].port")


def test_a_score_never_goes_below_zero_and_knows_its_verdict() -> None:
    score = Score([ScoreLine("objectives", "a", 10), ScoreLine("collateral", "b", -40)], 100, 70)
    assert score.total == 0 and score.percent == 0 and not score.passed
    assert Score([ScoreLine("objectives", "a", 70)], 100, 70).passed


def test_report_pages_escape_everything_a_trainee_could_type() -> None:
    report = {
        "scenario": {"id": "x", "title": "<b>T</b>", "level": "novice", "expected_minutes": 5},
        "lab": "default",
        "actor": "<script>alert(1)</script>",
        "elapsed_seconds": 61,
        "score": Score([ScoreLine("objectives", "o", 5, "<i>")], 10, 70).as_dict(),
        "objectives": [{"title": "o", "ok": True, "evidence": "<x>"}],
        "timeline": [{"t": 1.0, "what": "action", "actor": "a", "detail": "<y>"}],
        "questions": [{"text": "q?", "answer_given": "<z>"}],
        "debrief": "because <reasons>",
    }
    page = render_html(report)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<x>" not in page and "&lt;reasons&gt;" in page
    text = render_text(report)
    assert "Score: 5 / 10 (50%)" in text and "01:01" in text


@pytest.mark.timeout(10)
def test_a_host_counts_with_its_port_as_one_address() -> None:
    assert _address_partner("destinations[pacs].host") == ("destinations[pacs].port",)
    assert _address_partner("links[0].upstream_host") == ("links[0].upstream_port",)
    assert _address_partner("host") == ("port",)
    assert _address_partner("dicom.ae_title") == ()
