"""One benchmark figure, its goal and the table every bench script prints.

A figure is a measured value, and where the issue names a peer (Orthanc, DCMTK's storescp) the
peer's value measured in the same run, interleaved, so the ratio survives a noisy machine. The
ratio is always "simlab relative to the peer, higher is better": for a rate it is simlab/peer,
for a time (latency, wall time) it is peer/simlab. A goal is either a minimum ratio (">= 1.0x
Orthanc") or a limit on the value itself ("<= 2 s"); `passed` says which side of it we are.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal

Better = Literal["higher", "lower"]


@dataclass
class Figure:
    """One line of the table."""

    name: str
    value: float
    unit: str
    better: Better
    """Whether a higher value (a rate) or a lower one (a time) is better."""
    peer: str | None = None
    peer_value: float | None = None
    min_ratio: float | None = None
    """Goal as a ratio against the peer (simlab relative to peer, higher is better)."""
    limit: float | None = None
    """Goal on the value itself: at most (better=lower) or at least (better=higher)."""
    note: str = ""
    detail: dict[str, float | str] = field(default_factory=dict)
    """Breakdown (per node, per stage) printed under the line and kept in the JSON."""

    @property
    def ratio(self) -> float | None:
        if not self.peer_value or not self.value:
            return None
        if self.better == "higher":
            return self.value / self.peer_value
        return self.peer_value / self.value

    @property
    def goal(self) -> str:
        if self.min_ratio is not None and self.peer:
            return f">= {self.min_ratio:g}x {self.peer}"
        if self.limit is not None:
            sign = "<=" if self.better == "lower" else ">="
            return f"{sign} {self.limit:g} {self.unit}"
        return "(measured)"

    @property
    def passed(self) -> bool | None:
        """True/False against the goal; None when the figure has no goal or no peer value."""
        if self.min_ratio is not None:
            ratio = self.ratio
            return None if ratio is None else ratio >= self.min_ratio
        if self.limit is not None:
            return self.value <= self.limit if self.better == "lower" else self.value >= self.limit
        return None

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out.update(ratio=self.ratio, goal=self.goal, passed=self.passed)
        return out


def verdict(figure: Figure) -> str:
    return {True: "pass", False: "falls short", None: "-"}[figure.passed]


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def table(figures: list[Figure]) -> str:
    """The figures as a Markdown table (it reads in a terminal and in docs/performance.md)."""
    head = "| figure | simlab | peer | ratio | goal | result |\n|---|---|---|---|---|---|\n"
    rows = []
    for f in figures:
        peer = f"{f.peer} {_num(f.peer_value)} {f.unit}" if f.peer else "-"
        ratio = "-" if f.ratio is None else f"{f.ratio:.2f}x"
        name = f.name + (f" ({f.note})" if f.note else "")
        rows.append(
            f"| {name} | {_num(f.value)} {f.unit} | {peer} | {ratio} | {f.goal} | {verdict(f)} |"
        )
    return head + "\n".join(rows) + "\n"


def details(figures: list[Figure]) -> str:
    """The breakdowns, one block a figure that has one."""
    blocks = []
    for f in figures:
        if f.detail:
            lines = [f"- {k}: {v}" for k, v in f.detail.items()]
            blocks.append(f"{f.name}:\n" + "\n".join(lines))
    return "\n\n".join(blocks)


def to_json(figures: list[Figure]) -> str:
    return json.dumps([f.as_dict() for f in figures], indent=2)
