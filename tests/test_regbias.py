"""`mse-balanced-regbias`: balanced MSE with a weight-decayed bias (docs/theory/mse.md#regularised-bias).

The claim rests on a split over the modes of a *weighted* target that no published lemma proves,
so besides the closed form's own consistency these tests hold it against the problem itself:
full-parameter optimisation on small instances on both sides of the mean mode's threshold, the
exact bracket between the free-bias and the bias-free optimum (computed by the engine's
separable-reduction certificate, not by any claim), and the one-layer threshold of
docs/theory/mse.md#regularised-bias.  A variant that forgets the bias's weight decay is refuted.
"""

from __future__ import annotations

import math
from dataclasses import replace
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import theorems
from ncverify.backend import Backend
from ncverify.evidence.certificates import separable_reduction
from ncverify.evidence.optimize import multistart
from ncverify.model.problem import Problem
from ncverify.testing import assert_predicted_point_is_stationary, problems
from ncverify.verify import Settings, verify
from theorems.mse_balanced_regbias import MSEBalancedRegBias

NUMPY = Backend.create()
CLAIM = theorems.get("mse-balanced-regbias")


def regbias(**kw: object) -> st.SearchStrategy[Problem]:
    opts = {"max_classes": 4, "max_depth": 3, "max_width": 6, "max_samples": 5}
    opts.update(kw)
    return problems(loss="mse", bias="regularised", balanced=True, **opts)  # type: ignore[arg-type]


def with_bias(problem: Problem, bias: str, lambda_b: Fraction | None = None) -> Problem:
    return replace(problem, bias=bias, lambda_b=lambda_b)


@given(
    st.integers(2, 6),
    st.fractions(min_value=Fraction(1, 1000), max_value=1000),
    st.integers(0, 2**32 - 1),
)
def test_optimal_bias_leaves_the_mean_direction_weighted_by_mu(
    k: int, lambda_b: Fraction, seed: int
) -> None:
    """For any class-level product A', `b* = (1 - A'1)/(K(1+lambda_b))` minimises
    `||A' + b 1^T - I||^2/(2K) + (lambda_b/2)||b||^2`, and the minimum weighs the mean direction
    of the residual by `mu = lambda_b/(1+lambda_b)`."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(k, k))
    lam = float(lambda_b)
    ones = np.ones(k)

    def f(b: np.ndarray) -> float:
        r = a + np.outer(b, ones) - np.eye(k)
        return float(np.sum(r * r)) / (2 * k) + lam / 2 * float(b @ b)

    # the normal equations of this strictly convex quadratic, solved as a linear system
    hessian = (1.0 + lam) * np.eye(k)
    rhs = (ones - a @ ones) / k
    b_star = np.linalg.solve(hessian, rhs)
    assert np.allclose(b_star, (ones - a @ ones) / (k * (1 + lam)), rtol=1e-12, atol=1e-14)
    mu = lam / (1 + lam)
    c = np.eye(k) - np.outer(ones, ones) / k
    resid = a - np.eye(k)
    reduced = (np.sum((resid @ c) ** 2) + mu * np.sum((resid @ ones) ** 2) / k) / (2 * k)
    assert f(b_star) == pytest.approx(reduced, rel=1e-11, abs=1e-14)
    for _ in range(3):  # and it is the minimum
        assert f(b_star + 1e-3 * rng.normal(size=k)) > f(b_star)


@given(regbias())
def test_predicted_point_is_stationary_with_claimed_value(problem: Problem) -> None:
    """The point built from the closed form has the claimed value and zero gradient (both
    computed by `ncverify.model.objective`, not by the claim), with the claimed bias."""
    pred = CLAIM.closed_form(problem)
    point = assert_predicted_point_is_stationary(CLAIM, problem)
    # the bias is the shrunk mean residual of the class-level product
    w = point.Ws[-1]
    for layer in reversed(point.Ws[:-1]):
        w = w @ layer
    n, k = problem.counts[0], problem.K
    a = w @ point.H[:, ::n]  # one sample per class: the class means (NC1 holds exactly)
    expected = (np.ones(k) - a @ np.ones(k)) / (k * (1 + float(problem.lambda_b)))
    assert np.allclose(pred.bias, expected, atol=1e-12)


@given(regbias(max_depth=4), st.fractions(min_value=Fraction(1, 10**4), max_value=10**4))
def test_optimum_lies_between_the_free_and_the_bias_free_optimum(
    problem: Problem, lambda_b: Fraction
) -> None:
    """A bias penalised by lambda_b can do no better than a free one and no worse than none;
    both ends are computed by the separable-reduction certificate (proven lemmas only)."""
    problem = replace(problem, lambda_b=lambda_b)
    claimed = CLAIM.closed_form(problem).objective
    free = separable_reduction(with_bias(problem, "free")).bound_exact
    none = separable_reduction(with_bias(problem, "none")).bound_exact
    slack = mpmath.mpf(10) ** -30
    assert free - slack <= claimed <= none + slack


@given(regbias(max_depth=3), st.integers(0, 10), st.integers(1, 9))
def test_optimum_increases_with_lambda_b(problem: Problem, exponent: int, step: int) -> None:
    """More weight decay on the bias can only raise the optimum."""
    small = Fraction(step, 10**exponent)
    large = small * 2
    f_small = CLAIM.closed_form(replace(problem, lambda_b=small)).objective
    f_large = CLAIM.closed_form(replace(problem, lambda_b=large)).objective
    assert f_small <= f_large + mpmath.mpf(10) ** -30


@given(
    st.integers(2, 5),
    st.integers(1, 50),
    st.fractions(min_value=Fraction(1, 10**5), max_value=Fraction(1, 10)),
    st.fractions(min_value=Fraction(1, 10**4), max_value=100),
)
def test_one_layer_mean_mode_threshold(k: int, n: int, lam: Fraction, lambda_b: Fraction) -> None:
    """docs/theory/mse.md#regularised-bias: for M = 1 the optimum is a simplex ETF exactly while
    `mu <= K sqrt(n lambda_W lambda_H)`, the mean direction being fitted beyond."""
    p = Problem.build(
        classes=k, samples=n, depth=1, width=k, lambda_w=lam, lambda_h=lam, lambda_b=lambda_b
    )
    mu = lambda_b / (1 + lambda_b)
    alive_everywhere = Fraction(k) ** 2 * n * lam * lam < 1  # the centred modes' own condition
    mean_alive = mu * mu > Fraction(k) ** 2 * n * lam * lam  # exact: both sides are rational
    geometry = CLAIM.closed_form(p).geometry
    if not alive_everywhere:
        assert geometry == "zero"
    elif mean_alive:
        assert geometry == "simplex ETF with a mean direction"
    else:
        assert geometry == "simplex ETF"


def small(depth: int, lambda_b: str, lam: str = "0.02") -> Problem:
    return Problem.build(
        classes=3, samples=2, depth=depth, width=4, lambda_w=lam, lambda_h=lam, lambda_b=lambda_b
    )


# depth 1, 2 and 3; lambda_b below and above the mean mode's threshold (for depth 2 and 3 the
# jump sits near lambda_b ~ 0.5, for depth 1 near 0.17)
FULL = [(1, "0.05"), (1, "2"), (2, "0.1"), (2, "5"), (3, "0.2"), (3, "5")]


@pytest.mark.parametrize(("depth", "lambda_b"), FULL)
def test_claimed_value_matches_full_optimisation(depth: int, lambda_b: str) -> None:
    """Random-start L-BFGS on every W_m, H and b: no run beats the claimed optimum by more than
    its rounding-error bound, and some run reaches it."""
    problem = small(depth, lambda_b)
    claimed = float(CLAIM.closed_form(problem).objective)
    runs = multistart(problem, NUMPY, restarts=12, seed=1, jobs=1)
    best = min(run.objective for run in runs)
    assert all(run.objective >= claimed - run.error_bound - 1e-13 for run in runs)
    assert best == pytest.approx(claimed, rel=1e-9)


def test_both_regimes_occur_in_the_full_optimisation_cases() -> None:
    """The cases above straddle the threshold: each depth has one of each geometry."""
    for depth in (1, 2, 3):
        kinds = {CLAIM.closed_form(small(d, b)).geometry for d, b in FULL if d == depth}
        assert kinds == {"simplex ETF", "simplex ETF with a mean direction"}


class ForgetsTheBiasDecay(MSEBalancedRegBias):
    """A plausible slip: the free-bias claim's value and bias, as if lambda_b changed nothing."""

    def closed_form(self, problem: Problem):  # noqa: ANN201
        pred = super().closed_form(problem)
        mu = problem.lambda_b / (1 + problem.lambda_b)
        wrong = pred.objective - mpmath.mpf(mu.numerator) / mu.denominator / (2 * problem.K)
        return replace(pred, objective=wrong)


def test_forgetting_the_bias_decay_is_refuted() -> None:
    problem = Problem.build(classes=4, samples=5, depth=2, width=6, lambda_b="0.05")
    settings = Settings(restarts=4, seed=0)
    assert verify(ForgetsTheBiasDecay(), problem, NUMPY, settings).verdict == "refuted"
    assert verify(CLAIM, problem, NUMPY, settings).verdict == "consistent"


def test_one_layer_is_certified_by_the_convex_dual() -> None:
    problem = Problem.build(classes=4, samples=5, depth=1, width=6, lambda_b="1")
    report = verify(CLAIM, problem, NUMPY, Settings(restarts=4, seed=0))
    assert report.verdict == "certified"
    assert report.certificate is not None and report.certificate.kind == "convex-dual"


@pytest.mark.parametrize(
    ("kw", "unmet"),
    [
        ({"bias": "free"}, "weight-decayed bias"),
        ({"counts": "3,2,2", "lambda_b": "0.1"}, "balanced"),
        ({"lambda_b": "0.1", "width": 2}, "bottleneck"),
    ],
)
def test_hypotheses_name_what_is_unmet(kw: dict, unmet: str) -> None:
    args = {"classes": 4, "samples": 3, "depth": 2, "width": 6}
    if "counts" in kw:
        args.pop("classes")
        args.pop("samples")
    args.update(kw)
    assert any(unmet in h for h in CLAIM.hypotheses(Problem.build(**args)))


def test_stationarity_helper_rejects_the_wrong_value() -> None:
    problem = Problem.build(classes=4, samples=5, depth=2, width=6, lambda_b="0.05")
    with pytest.raises(AssertionError, match="claimed optimum"):
        assert_predicted_point_is_stationary(ForgetsTheBiasDecay(), problem)


@given(regbias(max_depth=4, max_lambda="1/100"))
def test_reported_critical_lambda_b_is_where_the_mean_mode_turns_on(problem: Problem) -> None:
    """The phase boundary in the report separates the two geometries of the closed form."""
    crit = CLAIM.closed_form(problem).phase.quantity("critical_lambda_b").value
    # a mean mode that can turn on: room for it (R >= K) and a finite threshold
    assume(math.isfinite(crit) and problem.bottleneck >= problem.K)
    below = Fraction(crit * (1 - 1e-6)).limit_denominator(10**12)
    above = Fraction(crit * (1 + 1e-6)).limit_denominator(10**12)
    assert CLAIM.closed_form(replace(problem, lambda_b=below)).geometry == "simplex ETF"
    assert (
        CLAIM.closed_form(replace(problem, lambda_b=above)).geometry
        == "simplex ETF with a mean direction"
    )
