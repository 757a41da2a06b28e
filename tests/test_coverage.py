"""How much search backs a verdict (`ncverify.evidence.coverage`): the basins partition the runs,
lie in increasing order and apart by more than the tolerance that joins a run to a basin; a
`consistent` report says it in text and JSON."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ncverify.evidence.coverage import coverage
from ncverify.evidence.optimize import Run

NCVERIFY = str(Path(sys.executable).with_name("ncverify"))
values = st.one_of(st.floats(0.0, 10.0), st.just(math.inf), st.sampled_from([1.0, 2.0]))


def runs_of(ends: list[float]) -> list[Run]:
    outcomes = ("at-prediction", "worse")
    return [
        Run(i, 1.0, v, 0.0, 1, 1, 0.0, None, outcome=outcomes[i % 2]) for i, v in enumerate(ends)
    ]


@settings(max_examples=50, deadline=None)
@given(st.lists(values, min_size=1, max_size=40), st.floats(0.0, 1e-2))
def test_the_basins_partition_the_finite_runs_in_order(ends: list[float], relative: float) -> None:
    c = coverage(runs_of(ends), relative)
    finite = [v for v in ends if math.isfinite(v)]
    assert sum(b.runs for b in c.basins) == len(finite) and c.failed == len(ends) - len(finite)
    assert c.starts == len(ends) and math.isclose(
        sum(b.share for b in c.basins), len(finite) / len(ends)
    )
    lows = [b.value for b in c.basins]
    assert lows == sorted(lows) and (not lows or lows[0] == min(finite))
    for a, b in zip(lows, lows[1:], strict=False):  # each basin starts beyond the last one's reach
        assert b - a > relative * abs(a)
    assert c.reached_best == (c.basins[0].runs if c.basins else 0)
    assert c.at_prediction == sum(1 for i in range(len(ends)) if i % 2 == 0)


def test_a_consistent_check_says_how_much_search_backs_it() -> None:
    """dnc-binary has no certificate: its verdict rests on the runs, and says how many."""
    proc = subprocess.run(
        [NCVERIFY, "check", "dnc-binary", "--quiet", "--json", "-"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    report = json.loads(proc.stdout)
    assert report["verdict"] == "consistent"
    cov = report["numerical"]["coverage"]
    runs = report["numerical"]["runs"]
    assert (
        cov["starts"] == len(runs) and cov["at_prediction"] == report["numerical"]["counts"]["at"]
    )
    assert sum(b["runs"] for b in cov["basins"]) + cov["failed"] == len(runs)
    text = subprocess.run(
        [NCVERIFY, "check", "dnc-binary", "--quiet"],
        capture_output=True, text=True, timeout=600, check=False,
    ).stdout  # fmt: skip
    assert f"{len(runs)} random-start runs" in text and "coverage:" in text
    assert f"backed by {report['search']['starts']} batched-search starts" in text
