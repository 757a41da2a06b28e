"""`ls-balanced`: the scalar problem of label smoothing, enclosed rigorously, against an
independent float search and against cross-entropy's; the predicted point; checks at depth."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import mpmath
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scalars import grid_minimum

import theorems
from ncverify.claim import Regime
from ncverify.model.problem import Problem
from ncverify.testing import assert_predicted_point_is_stationary
from theorems.ce_balanced import margin_minimum
from theorems.ls_balanced import critical_smoothed_c, smoothed_margin_minimum

NCVERIFY = str(Path(sys.executable).with_name("ncverify"))
CLAIM = theorems.get("ls-balanced")


def scalar(k: int, depth: int, c: float, alpha: float, m: float) -> float:
    """`f(m)`, written from the definition (`docs/theory/label-smoothing.md`)."""
    q = 2 / (depth + 1)
    loss = math.log1p((k - 1) * math.exp(-m)) + alpha * (k - 1) / k * m
    return loss + (k - 1) * (depth + 1) / 2 * c * m**q


def float_minimum(k: int, depth: int, c: float, alpha: float) -> float:
    """An independent estimate of the scalar problem's minimum (`scalars.grid_minimum`)."""
    return grid_minimum(
        lambda m: scalar(k, depth, c, alpha, m), math.log(k) / (alpha * (k - 1) / k) + 1
    )


@settings(max_examples=25, deadline=None)
@given(
    st.integers(2, 8),
    st.integers(1, 5),
    st.integers(-8, 0).map(lambda e: Fraction(10) ** e),
    st.integers(1, 90).map(lambda a: Fraction(a, 100)),
)
def test_the_enclosure_contains_the_scalar_minimum(
    k: int, depth: int, n_p: Fraction, alpha: Fraction
) -> None:
    mm = smoothed_margin_minimum(k, depth, n_p, alpha)
    c = float(n_p) ** (1 / (depth + 1))
    found = float_minimum(k, depth, c, float(alpha))
    lower, upper = (float(v) for v in mm.value)
    # the float search finds a value at least the minimum, and within its accuracy of it
    assert lower <= found * (1 + 1e-12)
    assert found <= upper + 1e-9 * abs(upper)
    if mm.regime == Regime.ALIVE:
        at = float(mm.alpha_mid)
        assert scalar(k, depth, c, float(alpha), at) <= upper * (1 + 1e-12)


@pytest.mark.parametrize(("k", "depth"), [(3, 1), (4, 2), (6, 3)])
@pytest.mark.parametrize("alpha", [Fraction(1, 100), Fraction(1, 5)])
def test_it_lies_between_cross_entropy_and_cross_entropy_plus_the_linear_cost(
    k: int, depth: int, alpha: Fraction
) -> None:
    # f_LS = f_CE + alpha (K-1) m / K >= f_CE, so min f_CE <= min f_LS <= f_LS(m_CE)
    n_p = Fraction(1, 10**6)
    ce, ls = margin_minimum(k, depth, n_p), smoothed_margin_minimum(k, depth, n_p, alpha)
    assert ce.value[0] <= ls.value[1]
    assert ls.value[0] <= ce.value[1] + alpha * mpmath.mpf(k - 1) / k * ce.alpha[1]
    assert ls.alpha[1] <= ce.alpha[1]  # the linear cost moves the margin down, never up


@pytest.mark.parametrize(("k", "depth"), [(3, 2), (5, 3)])
def test_zero_wins_beyond_the_critical_c_and_not_below_it(k: int, depth: int) -> None:
    alpha = Fraction(1, 10)
    c_star = critical_smoothed_c(k, depth, alpha)

    def regime(c: float) -> Regime:
        n_p = Fraction(c).limit_denominator(10**15) ** (depth + 1)
        return smoothed_margin_minimum(k, depth, n_p, alpha).regime

    assert regime(c_star * 0.9) == Regime.ALIVE
    assert regime(c_star * 1.1) == Regime.COLLAPSED


def test_predicted_point_has_the_claimed_value() -> None:
    for depth in (1, 3):
        problem = Problem.build(
            classes=4, samples=3, depth=depth, width=5, lambda_w="1e-3", lambda_h="2e-3",
            loss="ls", smoothing="0.2",
        )  # fmt: skip
        assert_predicted_point_is_stationary(CLAIM, problem)


def check(*args: str) -> tuple[int, dict]:
    proc = subprocess.run(
        [NCVERIFY, "check", "ls-balanced", *args, "--json", "-", "--quiet"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    return proc.returncode, json.loads(proc.stdout)


def test_at_eight_classes_and_three_layers_a_certified_point_beats_the_etf(tmp_path: Path) -> None:
    code, report = check(
        "--classes", "8", "--samples", "1", "--depth", "3", "--width", "8",
        "--lambda-w", "1e-3", "--lambda-h", "1e-3", "--smoothing", "0.01",
        "--save-counterexample", str(tmp_path),
    )  # fmt: skip
    assert code == 1 and report["verdict"] == "refuted"
    cx = report["counterexample"]
    assert cx["objective"] < report["prediction"]["objective"] - cx["error_bound"]
    saved = next(tmp_path.glob("*.npz"))
    recheck = subprocess.run(
        [NCVERIFY, "recheck", str(saved)], capture_output=True, text=True, timeout=600
    )
    assert recheck.returncode == 1, recheck.stdout + recheck.stderr


@pytest.mark.parametrize("bias", ["none", "free"])
def test_at_one_layer_the_convex_certificate_proves_the_etf_value(bias: str) -> None:
    code, report = check(
        "--classes", "5", "--samples", "2", "--depth", "1", "--width", "5",
        "--lambda-w", "1e-3", "--lambda-h", "1e-3", "--smoothing", "0.3", "--bias", bias,
    )  # fmt: skip
    assert report["counterexample"] is None and code == 0
    cert, claimed = report["certificate"], report["prediction"]["objective"]
    assert cert["kind"] == "convex-dual" and cert["rigorous"] and cert["exact"]
    # a proven lower bound that meets the claimed value: nothing can lie below the ETF
    assert cert["bound"] <= claimed <= cert["bound"] * (1 + report["tolerances"]["certificate"])
    assert report["verdict"] == "certified"  # what the theory page says a one-layer check is
    assert report["prediction"]["objective"] <= min(
        r["objective"] + r["error_bound"] for r in report["numerical"]["runs"]
    )


def test_a_probe_on_cross_entropy_predicts_cross_entropys_value() -> None:
    # alpha = 0 is cross-entropy: without a smoothing the claim's scalar problem is CE's
    problem = Problem.build(
        classes=4, samples=2, depth=2, width=4, lambda_w="1e-3", lambda_h="1e-3", loss="ce"
    )
    ls, ce = CLAIM.closed_form(problem), theorems.get("ce-balanced").closed_form(problem)
    assert ls.objective == ce.objective
    assert ls.phase.boundaries == ce.phase.boundaries
