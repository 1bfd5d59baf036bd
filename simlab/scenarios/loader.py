"""Load a scenario file safely and explain every error with file:line and a hint.

YAML is read with the safe loader (a scenario is data, never code); the document's node tree is
kept so a pydantic error at `objectives[2].check` can be reported at the line the instructor
wrote it on. Fault types, fault params and check types are validated too, against the catalogs,
so `simlab scenario validate` catches everything `simlab run` would trip over.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from simlab.faults.catalog import load_catalog
from simlab.scenarios.checks import CHECK_TYPES
from simlab.scenarios.schema import Scenario
from simlab.workflow.actions import ACTIONS


class ScenarioLoader(yaml.SafeLoader):
    """The safe loader with YAML 1.2 booleans: only true/false are booleans.

    YAML 1.1 reads `on`, `off`, `yes`, `no` as booleans, so a trigger's `on:` key would become
    `True`; an instructor must not have to know that.
    """


ScenarioLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ScenarioLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


@dataclass(frozen=True)
class Problem:
    """One error in a scenario file."""

    file: str
    line: int
    where: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}: {self.where}: {self.message}"
        return f"{text}\n    hint: {self.hint}" if self.hint else text


class ScenarioError(Exception):
    """A scenario file is invalid; `problems` lists every error found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def load_scenario(path: Path) -> Scenario:
    """Parse and validate a scenario file; ScenarioError with every problem otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError([Problem(str(path), 0, "file", f"cannot read: {exc}")]) from None
    return parse_scenario(text, str(path))


def parse_scenario(text: str, filename: str = "<scenario>") -> Scenario:
    try:
        root = yaml.compose(text, Loader=ScenarioLoader)
        data = _construct(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 0
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError(
            [Problem(filename, line, "YAML", problem, "check indentation and quoting")]
        ) from None
    if not isinstance(data, dict):
        raise ScenarioError(
            [Problem(filename, 1, "file", "a scenario is a YAML mapping (key: value)")]
        )
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        problems = [
            Problem(
                filename,
                _line_of(root, err["loc"]),
                _where(err["loc"]),
                err["msg"],
                _hint(err),
            )
            for err in exc.errors()
        ]
        raise ScenarioError(problems) from None
    problems = _semantic_problems(scenario, root, filename)
    if problems:
        raise ScenarioError(problems)
    return scenario


def _construct(text: str) -> Any:
    """The document as Python data, built by the safe constructor only (no Python objects)."""
    loader = ScenarioLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _semantic_problems(scenario: Scenario, root: Any, filename: str) -> list[Problem]:
    """Fault types and params, check types and params, action names: against the catalogs."""
    problems: list[Problem] = []
    catalog = load_catalog()
    for i, spec in enumerate(scenario.faults):
        loc: tuple[Any, ...] = ("faults", i)
        cls = catalog.get(spec.type)
        if cls is None:
            problems.append(
                Problem(
                    filename,
                    _line_of(root, (*loc, "type")),
                    _where((*loc, "type")),
                    f"unknown fault type {spec.type!r}",
                    "see `simlab faults list` for the catalog",
                )
            )
            continue
        try:
            cls.Params.model_validate(spec.params)
        except ValidationError as exc:
            for err in exc.errors():
                full = (*loc, "params", *err["loc"])
                problems.append(
                    Problem(filename, _line_of(root, full), _where(full), err["msg"], _hint(err))
                )
    for i, obj in enumerate(scenario.objectives):
        loc = ("objectives", i, "check")
        kind = obj.check["type"]
        check_cls = CHECK_TYPES.get(kind)
        if check_cls is None:
            problems.append(
                Problem(
                    filename,
                    _line_of(root, (*loc, "type")),
                    _where((*loc, "type")),
                    f"unknown check type {kind!r}",
                    "known: " + ", ".join(sorted(CHECK_TYPES)),
                )
            )
            continue
        try:
            check_cls.model_validate(obj.check)
        except ValidationError as exc:
            for err in exc.errors():
                full = (*loc, *err["loc"])
                problems.append(
                    Problem(filename, _line_of(root, full), _where(full), err["msg"], _hint(err))
                )
    steps: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        (("solution", i), step) for i, step in enumerate(scenario.solution)
    ]
    for w, fix in enumerate(scenario.wrong_fixes):
        steps += [(("wrong_fixes", w, "actions", i), s) for i, s in enumerate(fix.actions)]
    for a, act in enumerate(scenario.activity):
        if act.action is not None:
            steps.append((("activity", a, "action"), act.action))
    for loc, step in steps:
        name = step.get("action")
        if name not in ACTIONS:
            problems.append(
                Problem(
                    filename,
                    _line_of(root, loc),
                    _where(loc),
                    f"unknown action {name!r}",
                    "known: " + ", ".join(sorted(ACTIONS)),
                )
            )
    return problems


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "scenario"


def _line_of(root: Any, loc: tuple[Any, ...]) -> int:
    """The 1-based line of the deepest YAML node on the error's path."""
    node = root
    line = node.start_mark.line + 1 if node is not None else 0
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    child = value
                    line = key.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


def _hint(err: dict[str, Any]) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key: check its spelling against `simlab scenario schema`"
    if kind == "missing":
        return "this key is required"
    if kind == "literal_error":
        return "use one of the values listed"
    if kind == "string_pattern_mismatch":
        return "names are lower-case letters, digits and '_' (nodes: ct-1, pacs, …)"
    return ""
