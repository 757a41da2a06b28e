"""How much search backs a verdict: the random-start runs grouped by where they ended.

A *basin* here is a set of runs whose end values agree within their evaluation error and the
tolerance at which a run counts as reaching a value; the share of the runs in each basin, and
the share that reached the best value found, say how thoroughly the search explored the instance
and how often it found its best point.  A `consistent` verdict that rests on a search names this
coverage: eight runs that all reach the prediction say more than one of thirty-two.

>>> from ncverify.evidence.optimize import Run
>>> runs = [Run(i, 1.0, v, 0.0, 1, 1, 0.0, None, outcome=o) for i, (v, o) in
...         enumerate([(1.0, "at-prediction"), (1.0, "at-prediction"), (2.0, "worse")])]
>>> c = coverage(runs, relative=1e-8)
>>> [(b.value, b.runs) for b in c.basins], c.reached_best
([(1.0, 2), (2.0, 1)], 2)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ncverify.evidence.optimize import Run


@dataclass(frozen=True)
class Basin:
    """Runs that ended at one value: the lowest of them, how many, and their outcomes."""

    value: float
    runs: int
    share: float
    outcomes: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "value": self.value,
            "runs": self.runs,
            "share": self.share,
            "outcomes": list(self.outcomes),
        }


@dataclass(frozen=True)
class Coverage:
    """The runs' end values grouped into basins, lowest first."""

    starts: int
    basins: tuple[Basin, ...]
    reached_best: int  # runs in the lowest basin
    at_prediction: int  # runs classified at the prediction
    failed: int

    @property
    def reached_best_share(self) -> float:
        return self.reached_best / self.starts if self.starts else 0.0

    @property
    def at_prediction_share(self) -> float:
        return self.at_prediction / self.starts if self.starts else 0.0

    def words(self, unit: str = "run") -> str:
        """One line for the readable report (`unit`: what a start is called)."""
        if not self.starts:
            return f"no {unit}s"
        shown = "; ".join(
            f"{b.value:.10g} ({b.runs} {unit}{'' if b.runs == 1 else 's'}, {100 * b.share:.0f}%"
            f", {'/'.join(b.outcomes)})"
            for b in self.basins[:6]
        )
        more = f"; {len(self.basins) - 6} more" if len(self.basins) > 6 else ""
        return (
            f"{self.starts} starts, {len(self.basins)} distinct end value"
            f"{'' if len(self.basins) == 1 else 's'}: {shown}{more}; "
            f"{100 * self.reached_best_share:.0f}% reached the best value found, "
            f"{100 * self.at_prediction_share:.0f}% the prediction"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "starts": self.starts,
            "basins": [b.to_json() for b in self.basins],
            "reached_best": self.reached_best,
            "reached_best_share": self.reached_best_share,
            "at_prediction": self.at_prediction,
            "at_prediction_share": self.at_prediction_share,
            "failed": self.failed,
        }


def coverage(runs: Sequence[Run], relative: float) -> Coverage:
    """Group the finite end values of `runs`, lowest first: a run joins the current basin when
    its value exceeds the basin's lowest by at most `relative` times its size plus both runs'
    error bounds (the tolerance at which a run counts as reaching a value)."""
    return basins_of([(r.objective, r.error_bound, r.outcome) for r in runs], relative)


def basins_of(ends: Sequence[tuple[float, float, str]], relative: float) -> Coverage:
    """`coverage` of end points given as `(value, error bound, outcome)`: the one grouping rule
    for the random-start runs and the batched search alike."""
    finite = sorted((e for e in ends if math.isfinite(e[0])), key=lambda e: e[0])
    groups: list[list[tuple[float, float, str]]] = []
    for end in finite:
        if groups:
            first = groups[-1][0]
            if end[0] - first[0] <= relative * abs(first[0]) + first[1] + end[1]:
                groups[-1].append(end)
                continue
        groups.append([end])
    total = len(ends)
    basins = tuple(
        Basin(g[0][0], len(g), len(g) / total, tuple(sorted({e[2] for e in g}))) for g in groups
    )
    return Coverage(
        starts=total,
        basins=basins,
        reached_best=basins[0].runs if basins else 0,
        at_prediction=sum(e[2] == "at-prediction" for e in ends),
        failed=total - len(finite),
    )
