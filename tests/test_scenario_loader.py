"""Scenario files are data: every mistake an instructor can make is reported with its line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from simlab.cli.main import app
from simlab.scenarios.catalog import catalog_markdown, scenario_catalog, scenarios_dir
from simlab.scenarios.loader import ScenarioError, parse_scenario

GOOD = (scenarios_dir() / "ct-wrong-called-ae.yaml").read_text(encoding="utf-8")


def problems(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "s.yaml")
    return [str(p) for p in info.value.problems]


def test_the_shipped_example_parses() -> None:
    scenario = parse_scenario(GOOD, "s.yaml")
    assert scenario.id == "ct-wrong-called-ae"
    assert scenario.faults[0].type == "wrong_called_ae"


def test_a_yaml_syntax_error_names_its_line() -> None:
    (only,) = problems("id: x\ntitle: [unclosed\nlevel: novice\n")
    assert only.startswith("s.yaml:3: YAML:") or only.startswith("s.yaml:2: YAML:"), only


def test_an_unknown_key_is_reported_at_its_line_with_a_hint() -> None:
    text = GOOD.replace("expected_minutes: 10", "expected_minutes: 10\nexpected_minutse: 3")
    line = text.splitlines().index("expected_minutse: 3") + 1
    (only,) = problems(text)
    assert only.startswith(f"s.yaml:{line}: expected_minutse:"), only
    assert "hint: unknown key" in only


def test_a_wrong_level_and_a_missing_ticket_are_both_reported() -> None:
    text = GOOD.replace("level: novice", "level: beginner")
    text = text[: text.index("ticket:")] + text[text.index("objectives:") :]
    found = problems(text)
    assert any(": level:" in p and "novice" in p for p in found), found
    assert any("ticket" in p and "required" in p for p in found), found


def test_an_unknown_fault_type_and_a_bad_fault_param_are_caught_before_a_run() -> None:
    text = GOOD.replace("type: wrong_called_ae", "type: wrong_caled_ae")
    (only,) = problems(text)
    assert "unknown fault type 'wrong_caled_ae'" in only
    assert "simlab faults list" in only
    text = GOOD.replace("called_ae: PACS_MAIN}", "called_ae: PACS_MAIN, colour: red}")
    (only,) = problems(text)
    assert "faults[0].params.colour" in only


def test_an_unknown_check_and_an_unknown_action_are_caught() -> None:
    text = GOOD.replace("{type: no_instance_lost}", "{type: no_image_lost}")
    assert any("unknown check type 'no_image_lost'" in p for p in problems(text))
    text = GOOD.replace("{action: queue.list, node: ct-1}", "{action: queue.lsit, node: ct-1}")
    assert any("unknown action 'queue.lsit'" in p for p in problems(text))


def test_references_must_resolve() -> None:
    text = GOOD.replace("perform: morning_ct", "perform: evening_ct")
    assert any("no order 'evening_ct'" in p for p in problems(text))


def test_yaml_is_loaded_safely_no_python_objects() -> None:
    text = GOOD.replace("seed: 11", "seed: !!python/object/apply:os.system ['true']")
    assert any("YAML" in p for p in problems(text))


def test_cli_validate_reports_file_and_line_and_exits_non_zero(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("level: novice", "level: guru"), encoding="utf-8")
    good = tmp_path / "good.yaml"
    good.write_text(GOOD, encoding="utf-8")
    result = CliRunner().invoke(app, ["scenario", "validate", str(good), str(bad)])
    assert result.exit_code == 1
    assert f"{good}: ok" in result.output
    assert f"{bad}:" in result.output and "level" in result.output


def test_cli_schema_is_json_schema_of_the_scenario() -> None:
    result = CliRunner().invoke(app, ["scenario", "schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert schema["title"] == "Scenario"
    assert {"id", "ticket", "objectives", "solution"} <= set(schema["required"])


def test_docs_scenarios_md_lists_every_shipped_scenario() -> None:
    expected = catalog_markdown(scenario_catalog())
    docs = scenarios_dir().parent / "docs" / "scenarios.md"
    assert docs.read_text(encoding="utf-8").strip() == expected.strip(), (
        "docs/scenarios.md is stale: run `simlab scenario list --markdown > docs/scenarios.md`"
    )
