"""The action engine: validate an action's arguments, run it, and journal what came of it.

Every administrator action — from `simlab admin`, the TUI, or a scenario's reference solution —
passes through `ActionsBase.perform`, so each one lands in the lab's journal (EventLog) as
`{"kind": "action", "action", "actor", "args", "ok", "result" | "error"}` and scoring sees
exactly what the trainee did, reading actions included (they show the diagnosis in the timeline).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from simlab.client.admin import AdminApiError, AdminClient
from simlab.runtime.lab import Lab, LabError
from simlab.runtime.manifest import NodeEntry

MAX_JOURNAL_TEXT = 300
"""Result/error texts are cut to this in the journal; the caller gets the whole result."""


class ActionArgs(BaseModel):
    """Base of every action's arguments: unknown keys are an error (a typo never goes unnoticed)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class NodeArgs(ActionArgs):
    """Arguments of an action on one node."""

    node: str
    """The node id, e.g. 'pacs' or 'ct-1'."""


class ActionError(ValueError):
    """The action cannot run as asked: unknown action, wrong or missing arguments, unknown node."""


class ActionFailed(Exception):
    """The action ran and failed (the node refused, the peer rejected); `data` says more."""

    def __init__(self, text: str, data: Any = None) -> None:
        super().__init__(text)
        self.text = text
        self.data = data


@dataclass
class Outcome:
    """What an action function returns: its data and a one-line text for people."""

    data: Any
    text: str
    ok: bool = True


@dataclass
class ActionResult:
    """The result of one action, as journalled (text cut) and returned (whole)."""

    action: str
    ok: bool
    text: str
    data: Any = None
    args: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "ok": self.ok,
            "text": self.text,
            "args": self.args,
            "data": self.data,
        }


A = TypeVar("A", bound=ActionArgs)
ActionFunction = Callable[..., ActionResult]


@dataclass(frozen=True)
class ActionSpec:
    """One row of the registry."""

    name: str
    model: type[ActionArgs]
    method: ActionFunction
    summary: str


ACTIONS: dict[str, ActionSpec] = {}
"""Every action by name ('ae.put'): its argument model and the bound-method factory."""


def action(name: str, model: type[A]) -> Callable[[Callable[[Any, A], Outcome]], ActionFunction]:
    """Register a method of an Actions mixin as the action `name` with argument model `model`.

    The decorated method is called as `actions.ae_put(node="pacs", ...)` (keyword arguments,
    validated by the model) and returns an ActionResult; the body gets the validated model.
    """

    def wrap(fn: Callable[[Any, A], Outcome]) -> ActionFunction:
        @functools.wraps(fn)
        def method(self: ActionsBase, **kwargs: Any) -> ActionResult:
            return self.perform(name, kwargs)

        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else name
        ACTIONS[name] = ActionSpec(name, model, fn, summary)
        return method

    return wrap


def describe_validation(exc: ValidationError) -> str:
    """'node: field required; port: input should be a valid integer' — one line."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown argument"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


def _api_detail(detail: Any) -> str:
    """' (dicom.port: Input should be a valid integer)' from a node's validation detail."""
    if not isinstance(detail, list):
        return ""
    parts = [f"{d.get('loc')}: {d.get('msg')}" for d in detail[:3] if isinstance(d, dict)]
    return f" ({'; '.join(parts)})" if parts else ""


def _short(text: str) -> str:
    return text if len(text) <= MAX_JOURNAL_TEXT else text[: MAX_JOURNAL_TEXT - 1] + "…"


class ActionsBase:
    """Bound to a lab and an actor; runs and journals actions. Mixins add the actions."""

    def __init__(self, lab: Lab, actor: str = "trainee") -> None:
        self.lab = lab
        self.actor = actor

    # ---------------------------------------------------------------------------- running
    def run(self, step: dict[str, Any]) -> ActionResult:
        """Run one action given as data, e.g. {"action": "ae.put", "node": "pacs", ...}."""
        if not isinstance(step, dict) or "action" not in step:
            raise ActionError('an action step is an object with an "action" key')
        args = {k: v for k, v in step.items() if k != "action"}
        return self.perform(str(step["action"]), args)

    def perform(self, name: str, raw: dict[str, Any]) -> ActionResult:
        """Validate, run, journal. Raises ActionError for a call that cannot run as asked."""
        spec = ACTIONS.get(name)
        if spec is None:
            error = f"unknown action {name!r}; known: {', '.join(sorted(ACTIONS))}"
            self._journal(name, raw, False, error=error)
            raise ActionError(error)
        try:
            args = spec.model.model_validate(raw)
        except ValidationError as exc:
            error = f"{name}: {describe_validation(exc)}"
            self._journal(name, raw, False, error=error)
            raise ActionError(error) from None
        shown = args.model_dump(mode="json", by_alias=True, exclude_none=True)
        try:
            outcome = spec.method(self, args)
        except ActionError as exc:
            self._journal(name, shown, False, error=str(exc))
            raise
        except ActionFailed as exc:
            return self._finish(name, shown, Outcome(exc.data, exc.text, ok=False))
        except AdminApiError as exc:
            text = f"{exc.status or 'unreachable'}: {exc.message}" + _api_detail(exc.detail)
            return self._finish(name, shown, Outcome(exc.detail, text, ok=False))
        except LabError as exc:
            return self._finish(name, shown, Outcome(None, str(exc), ok=False))
        return self._finish(name, shown, outcome)

    def _finish(self, name: str, args: dict[str, Any], outcome: Outcome) -> ActionResult:
        if outcome.ok:
            self._journal(name, args, True, result=outcome.text)
        else:
            self._journal(name, args, False, error=outcome.text)
        return ActionResult(name, outcome.ok, outcome.text, outcome.data, args)

    def _journal(self, name: str, args: dict[str, Any], ok: bool, **text: str) -> None:
        self.lab.events.append(
            "action",
            action=name,
            actor=self.actor,
            args=args,
            ok=ok,
            **{k: _short(v) for k, v in text.items()},
        )

    # ---------------------------------------------------------------------------- helpers
    def entry(self, node: str) -> NodeEntry:
        """The manifest entry of a node; ActionError naming the lab's nodes when unknown."""
        try:
            return self.lab.manifest.node(node)
        except KeyError as exc:
            raise ActionError(str(exc.args[0])) from None

    def client(self, node: str, timeout: float = 30.0) -> AdminClient:
        self.entry(node)
        return self.lab.client(node, timeout=timeout)

    def node_ids(self) -> list[str]:
        return [n.node_id for n in self.lab.manifest.nodes]
