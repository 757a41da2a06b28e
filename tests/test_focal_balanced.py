"""`focal-balanced`: focal loss's ETF scalar problem, enclosed rigorously, against an independent
float search; the predicted point; a check names the evidence it rests on (no certificate)."""

from __future__ import annotations

import json
import math
import re
import shlex
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scalars import grid_minimum

import theorems
from ncverify.claim import Regime
from ncverify.model.problem import Problem
from ncverify.testing import assert_predicted_point_is_stationary
from theorems.ce_balanced import margin_minimum
from theorems.focal_balanced import critical_focal_c, focal_margin_minimum

NCVERIFY = str(Path(sys.executable).with_name("ncverify"))
CLAIM = theorems.get("focal-balanced")


def scalar(k: int, depth: int, c: float, gamma: float, m: float) -> float:
    """`f(m)`, written from the definition: the focal loss of `softmax(m (e_1 - 1/K))` against
    class 1, plus the ETF's share of the factorisation penalty (docs/theory/focal.md)."""
    z = np.full(k, -m / k)
    z[0] += m
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    loss = -((1 - p[0]) ** gamma) * math.log(p[0])
    return loss + (k - 1) * (depth + 1) / 2 * c * m ** (2 / (depth + 1))


def float_minimum(k: int, depth: int, c: float, gamma: float) -> float:
    """An independent estimate of the scalar problem's minimum (`scalars.grid_minimum`)."""
    return grid_minimum(lambda m: scalar(k, depth, c, gamma, m), 200.0)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(2, 8),
    st.integers(1, 5),
    st.integers(-8, 0).map(lambda e: Fraction(10) ** e),
    st.integers(4, 40).map(lambda g: Fraction(g, 4)),
)
def test_the_enclosure_contains_the_scalar_minimum(
    k: int, depth: int, n_p: Fraction, gamma: Fraction
) -> None:
    mm = focal_margin_minimum(k, depth, n_p, gamma)
    c = float(n_p) ** (1 / (depth + 1))
    found = float_minimum(k, depth, c, float(gamma))
    lower, upper = (float(v) for v in mm.value)
    # the float search finds a value at least the minimum, and within its accuracy of it
    assert lower <= found * (1 + 1e-12)
    assert found <= upper + 1e-9 * abs(upper)
    if mm.regime == Regime.ALIVE:
        assert scalar(k, depth, c, float(gamma), float(mm.alpha_mid)) <= upper * (1 + 1e-12)


@pytest.mark.parametrize(("k", "depth"), [(3, 1), (4, 2), (6, 3)])
@pytest.mark.parametrize("gamma", [Fraction(1), Fraction(3)])
def test_its_minimum_lies_below_cross_entropys(k: int, depth: int, gamma: Fraction) -> None:
    # focal loss never exceeds cross-entropy ((1 - p)^gamma <= 1), so neither does its minimum;
    # and it is positive
    n_p = Fraction(1, 10**4)
    focal, ce = focal_margin_minimum(k, depth, n_p, gamma), margin_minimum(k, depth, n_p)
    assert 0 < focal.value[0] <= focal.value[1] <= ce.value[1]


@pytest.mark.parametrize(("k", "depth"), [(3, 2), (5, 3)])
def test_zero_wins_beyond_the_critical_c_and_not_below_it(k: int, depth: int) -> None:
    gamma = Fraction(2)
    c_star = critical_focal_c(k, depth, gamma)

    def regime(c: float) -> Regime:
        n_p = Fraction(c).limit_denominator(10**15) ** (depth + 1)
        return focal_margin_minimum(k, depth, n_p, gamma).regime

    assert regime(c_star * 0.9) == Regime.ALIVE
    assert regime(c_star * 1.1) == Regime.COLLAPSED


def test_predicted_point_has_the_claimed_value() -> None:
    for depth in (1, 3):
        problem = Problem.build(
            classes=4, samples=3, depth=depth, width=5, lambda_w="1e-3", lambda_h="2e-3",
            loss="focal", focusing="2",
        )  # fmt: skip
        assert_predicted_point_is_stationary(CLAIM, problem)


def test_the_issue_instance_is_checked_on_every_samples_features_with_its_evidence_named(
    tmp_path: Path,
) -> None:
    """The command of docs/theory/focal.md#one-layer, verbatim, with its JSON written aside."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "theory" / "focal.md").read_text()
    (block,) = re.findall(r"```bash\n(.*?)```", page, flags=re.S)
    argv = shlex.split(block.strip())
    assert argv[:3] == ["ncverify", "check", "focal-balanced"]
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [NCVERIFY, *argv[1:], "--json", str(out)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert proc.returncode == 0 and report["counterexample"] is None, proc.stdout + proc.stderr
    # no certificate covers focal loss: the verdict is at most consistent, and says what backs it
    assert report["certificate"] is None and report["verdict"] == "consistent"
    assert "no certificate; backed by" in " ".join(proc.stdout.split())
    runs, claimed = report["numerical"]["runs"], report["prediction"]["objective"]
    assert all(r["objective"] >= claimed - r["error_bound"] for r in runs)
    assert report["search"]["coverage"]["starts"] >= 100
    # the runs optimise every sample's features, and E4 compares their within-class spread too
    assert report["numerical"]["parameterisation"] == "full"
    assert report["numerical"]["coverage"]["at_prediction_share"] > 0
    e4 = next(c for c in report["checks"] if c["name"] == "E4 geometry")
    assert e4["passed"] and "NC1" in e4["detail"]


def test_the_claimed_value_falls_as_gamma_grows() -> None:
    # at gamma = 1 the focal value lies strictly
    # between 0 and cross-entropy's, and it decreases as gamma grows ((1 - p)^gamma falls)
    n_p = Fraction(1, 10**3)
    values = [focal_margin_minimum(4, 2, n_p, Fraction(g)).value for g in (1, 2, 4)]
    ce = margin_minimum(4, 2, n_p).value
    assert values[0][1] < ce[0]
    assert values[2][1] < values[1][0] and values[1][1] < values[0][0]
    with mpmath.workprec(100):
        assert all(v[1] - v[0] <= mpmath.mpf(2) ** -100 * v[1] for v in values)
