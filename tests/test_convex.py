"""The `convex-dual` certificate: rigour, tightness, and its place in the verdicts.

Rigour is tested against facts that do not depend on the code under test: a lower bound on the
optimum can never exceed the objective of *any* point of the original problem.  The objective
of a point is enclosed here independently, in rational arithmetic (logits, MSE loss,
regulariser) and 200-bit interval arithmetic (the CE logarithms), so the comparisons carry no
tolerance: one fails only on a proven violation.  Tightness is tested against values computed independently: the exact
separable reduction for MSE, Zhu et al.'s closed form for balanced CE, the full `K x N`
program, and the claims' own predictions.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

import theorems
from ncverify.backend import Backend
from ncverify.certify import CERTIFIERS, separable_reduction
from ncverify.claim import Prediction
from ncverify.convex import (
    _positive_definite,
    convex_dual,
    dual_bound,
    round_down,
    solve,
)
from ncverify.objective import Params
from ncverify.optimize import multistart
from ncverify.problem import Problem
from ncverify.verify import Settings, Tolerances, verify
from theorems.mse_balanced_biasfree import MSEBalancedBiasFree

NUMPY = Backend.create("numpy")
TOL = Tolerances.for_eps(NUMPY.eps)
LAMBDAS = (Fraction(1, 2000), Fraction(1, 100), Fraction(1, 20), Fraction(1, 5), Fraction(1, 2))
BITS = 200


# ---- an independent, rigorous enclosure of F at a float point -----------------------------------
def _fractions(a: np.ndarray) -> list[list[Fraction]]:
    return [[Fraction(float(v)) for v in row] for row in np.atleast_2d(np.asarray(a))]


def objective_upper_end(problem: Problem, p: Params) -> mpmath.mpf:
    """A number provably at least `F(p)` (for depth 1), within `2^-190` of it: the logits, the MSE
    loss and the regulariser in exact rationals, then a 200-bit interval for the CE logarithms.

    `bound <= objective_upper_end(...)` fails only when `bound > F(p)` is *proven*: it adds no
    tolerance (a bound that equals `F(p)` exactly, as at the zero solution, must pass).
    """
    iv = mpmath.iv
    saved, iv.prec = iv.prec, BITS
    try:
        w = _fractions(p.Ws[0])  # K x d
        h = _fractions(p.H)  # d x N
        b = [Fraction(float(v)) for v in p.b] if p.b is not None else [Fraction(0)] * problem.K
        labels = problem.labels()
        k, d, n = problem.K, len(h), problem.N
        logits = [
            [sum(w[i][j] * h[j][c] for j in range(d)) + b[i] for i in range(k)] for c in range(n)
        ]
        reg = problem.lambda_w[0] / 2 * sum(v * v for row in w for v in row)
        reg += problem.lambda_h / 2 * sum(v * v for row in h for v in row)
        if problem.bias == "regularised":
            reg += problem.lambda_b / 2 * sum(v * v for v in b)
        if problem.loss == "mse":
            loss = sum(
                (z[i] - (1 if i == labels[c] else 0)) ** 2
                for c, z in enumerate(logits)
                for i in range(k)
            ) / (2 * n)
            total = _iv(loss + reg)
        else:
            total = _iv(reg)
            for c, z in enumerate(logits):
                lse = iv.log(sum(iv.exp(_iv(v)) for v in z))
                total += (lse - _iv(z[labels[c]])) / n
        with mpmath.workprec(BITS):
            return mpmath.mpf(total.b)
    finally:
        iv.prec = saved


def _iv(x: Fraction):  # noqa: ANN202
    return mpmath.iv.mpf(x.numerator) / mpmath.iv.mpf(x.denominator)


# ---- instances ----------------------------------------------------------------------------------
@st.composite
def one_layer(
    draw: st.DrawFn,
    loss: str | None = None,
    bias: str | None = None,
    balanced: bool = False,
    wide: bool = False,
    max_samples: int = 5,
) -> Problem:
    """A small depth-1 instance; `wide` forces `d >= K` (no relaxation)."""
    k = draw(st.integers(2, 4))
    if balanced:
        counts = (draw(st.integers(1, max_samples)),) * k
    else:
        counts = tuple(draw(st.lists(st.integers(1, max_samples), min_size=k, max_size=k)))
    d = draw(st.integers(k, k + 1) if wide else st.integers(1, k + 1))
    loss = loss or draw(st.sampled_from(["mse", "ce"]))
    bias = bias or draw(st.sampled_from(["none", "free", "regularised"]))
    return Problem(
        counts=counts,
        depth=1,
        widths=(d,),
        lambda_w=(draw(st.sampled_from(LAMBDAS)),),
        lambda_h=draw(st.sampled_from(LAMBDAS)),
        loss=loss,
        bias=bias,
        lambda_b=draw(st.sampled_from(LAMBDAS)) if bias == "regularised" else None,
    )


# ---- rigour -------------------------------------------------------------------------------------
@given(one_layer(), st.integers(0, 2**16))
def test_bound_never_exceeds_any_feasible_objective(problem: Problem, seed: int) -> None:
    cert = convex_dual(problem)
    assert cert is not None and cert.rigorous and cert.kind == "convex-dual"
    assert cert.bound_exact is not None
    assert mpmath.mpf(cert.bound) <= cert.bound_exact  # the float is rounded down
    assert cert.exact == (problem.widths[0] >= problem.K)
    runs = multistart(problem, NUMPY, restarts=2, seed=seed, max_iter=3000)
    zero = Params(
        (np.zeros((problem.K, problem.widths[0])),),
        np.zeros((problem.widths[0], problem.N)),
        None if problem.bias == "none" else np.zeros(problem.K),
    )
    for point in [run.point for run in runs] + [cert.point, zero]:
        assert cert.bound_exact <= objective_upper_end(problem, point)


@given(
    st.one_of(one_layer(bias="none"), one_layer(bias="regularised"), one_layer(loss="mse")),
    st.integers(0, 2**16),
)
def test_any_dual_point_gives_a_lower_bound(problem: Problem, seed: int) -> None:
    """Far from the optimum (random logits) the scaling into the spectral ball does the work."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, size=(problem.K, problem.K))
    bound = dual_bound(problem, logits)
    assert bound is not None  # here the construction has no positivity condition to fail
    assert 0 < bound.scale <= 1
    cert = convex_dual(problem)
    assert cert is not None
    assert bound.value <= objective_upper_end(problem, cert.point)


def test_positive_definite_check_is_exact() -> None:
    rng = np.random.default_rng(7)
    for _ in range(40):
        k = int(rng.integers(1, 6))
        b = rng.integers(-2, 3, size=(k, k))
        m = [[Fraction(int(v)) for v in row] for row in b @ b.T]
        det = round(np.linalg.det(b.astype(float)))  # integer matrix: the rounded det is exact
        assert _positive_definite(m) == (det != 0)
    # a matrix with a tiny negative eigenvalue is caught exactly
    eps = Fraction(1, 2**200)
    assert not _positive_definite([[Fraction(1), Fraction(1)], [Fraction(1), 1 - eps]])
    assert _positive_definite([[Fraction(1), Fraction(1)], [Fraction(1), 1 + eps]])


@given(st.fractions(min_value=-10, max_value=10, max_denominator=10**30))
def test_round_down_never_rounds_up(x: Fraction) -> None:
    with mpmath.workprec(BITS):
        value = mpmath.mpf(x.numerator) / x.denominator
    f = round_down(value)
    assert mpmath.mpf(f) <= value < mpmath.mpf(float(np.nextafter(f, np.inf)))


def test_deeper_networks_get_no_convex_certificate() -> None:
    problem = Problem.build(counts="3,3", depth=2, width=3)
    assert convex_dual(problem) is None


# ---- tightness against independent values -------------------------------------------------------
@given(st.data())
def test_mse_bound_equals_separable_reduction(data: st.DataObject) -> None:
    bias = data.draw(st.sampled_from(["none", "free"]))
    problem = data.draw(one_layer(loss="mse", bias=bias, balanced=bias == "free", wide=True))
    exact = separable_reduction(problem)
    cert = convex_dual(problem)
    assert exact is not None and cert is not None
    assert abs(cert.bound_exact - exact.bound_exact) <= 1e-8 * abs(exact.bound_exact)
    assert cert.bound_exact <= objective_upper_end(problem, exact.point)


def zhu_optimum(classes: int, samples: int, lambda_product: Fraction):  # noqa: ANN201
    """Zhu et al. (2021), one layer, balanced CE: margin `alpha = log((1-(K-1)c)/c)` with
    `c = sqrt(n lambda_W lambda_H)`, zero when `K c >= 1`; value
    `log(1 + (K-1) e^-alpha) + (K-1) c alpha`, as a 200-bit interval."""
    iv = mpmath.iv
    saved, iv.prec = iv.prec, BITS
    try:
        c = iv.sqrt(_iv(samples * lambda_product))
        k = iv.mpf(classes)
        if samples * lambda_product * classes**2 >= 1:  # K c >= 1, decided exactly
            return iv.log(k)
        alpha = iv.log((1 - (k - 1) * c) / c)
        return iv.log(1 + (k - 1) * iv.exp(-alpha)) + (k - 1) * c * alpha
    finally:
        iv.prec = saved


@given(
    st.integers(2, 6),
    st.integers(1, 30),
    st.sampled_from(LAMBDAS),
    st.sampled_from(LAMBDAS),
    st.sampled_from(["none", "free", "regularised"]),
)
def test_ce_bound_equals_zhu_closed_form(
    classes: int, samples: int, lambda_w: Fraction, lambda_h: Fraction, bias: str
) -> None:
    problem = Problem(
        counts=(samples,) * classes,
        depth=1,
        widths=(classes,),
        lambda_w=(lambda_w,),
        lambda_h=lambda_h,
        loss="ce",
        bias=bias,
        lambda_b=Fraction(1, 10) if bias == "regularised" else None,
    )
    optimum = zhu_optimum(classes, samples, lambda_w * lambda_h)
    cert = convex_dual(problem)
    assert cert is not None and cert.rigorous
    with mpmath.workprec(BITS):
        lo, hi = mpmath.mpf(optimum.a), mpmath.mpf(optimum.b)
        assert cert.bound_exact <= hi  # a lower bound, with no tolerance
        assert lo - cert.bound_exact <= TOL.certificate * lo  # and tight
    assert cert.gap is not None and cert.gap <= TOL.certificate


@given(one_layer(wide=True, max_samples=3))
def test_samples_program_agrees_with_class_means(problem: Problem) -> None:
    reduced = solve(problem, reduction="class-means")
    full = solve(problem, reduction="samples")
    assert abs(full.value - reduced.value) <= 1e-7 * max(1.0, abs(reduced.value))
    a = convex_dual(problem, reduction="class-means")
    b = convex_dual(problem, reduction="samples")
    assert a is not None and b is not None
    assert abs(a.bound_exact - b.bound_exact) <= 1e-9 * abs(a.bound_exact)
    # each bound is below the other's feasible point
    assert a.bound_exact <= objective_upper_end(problem, b.point)
    assert b.bound_exact <= objective_upper_end(problem, a.point)


@pytest.mark.parametrize("bias", ["none", "free"])
def test_many_classes_imbalanced_ce_is_certified_tightly(bias: str) -> None:
    """K = 10, N = 1000 through the class-mean reduction (the size of acceptance item 3)."""
    problem = Problem.build(
        counts="190,10,150,50,100,100,120,80,130,70", depth=1, width=64, loss="ce", bias=bias
    )
    cert = convex_dual(problem)
    assert cert is not None and cert.rigorous and cert.exact
    assert cert.gap is not None and cert.gap <= TOL.certificate


# ---- the claims and the verdicts ----------------------------------------------------------------
CONVEX_CLAIMS = sorted(
    cid for cid, c in theorems.registry().items() if "convex-dual" in c.certificates
)


def _instance(claim_id: str, lam_w: Fraction, lam_h: Fraction) -> Problem:
    """A depth-1, K = 4 instance the claim applies to: imbalanced if it allows, else balanced."""
    claim = theorems.get(claim_id)
    for counts in ((6, 4, 3, 2), (4, 4, 4, 4)):
        problem = Problem(
            counts=counts,
            depth=1,
            widths=(5,),
            lambda_w=(lam_w,),
            lambda_h=lam_h,
            loss=claim.loss,
            bias=claim.bias,
            lambda_b=Fraction(1, 10) if claim.bias == "regularised" else None,
        )
        if not claim.hypotheses(problem):
            return problem
    raise AssertionError(f"{claim_id} accepts no depth-1 K = 4 instance")


def test_the_balanced_mse_claims_use_the_convex_certificate() -> None:
    assert {"mse-balanced-biasfree", "mse-balanced-bias"} <= set(CONVEX_CLAIMS)
    assert CERTIFIERS["convex-dual"] is convex_dual


@pytest.mark.parametrize("claim_id", CONVEX_CLAIMS)
@given(st.sampled_from(LAMBDAS[:4]), st.sampled_from(LAMBDAS[:4]))
def test_bound_matches_each_claims_prediction(
    claim_id: str, lam_w: Fraction, lam_h: Fraction
) -> None:
    claim = theorems.get(claim_id)
    problem = _instance(claim_id, lam_w, lam_h)
    claimed = claim.closed_form(problem).objective
    cert = convex_dual(problem)
    assert cert is not None and cert.rigorous
    assert cert.bound_exact <= objective_upper_end(problem, claim.minimiser(problem, NUMPY))
    assert cert.gap is not None and cert.gap <= TOL.certificate
    assert abs(claimed - cert.bound_exact) <= TOL.certificate * abs(claimed)


@pytest.mark.parametrize("claim_id", CONVEX_CLAIMS)
def test_claims_are_certified_at_depth_one(claim_id: str) -> None:
    problem = _instance(claim_id, Fraction(1, 100), Fraction(1, 50))
    report = verify(theorems.get(claim_id), problem, NUMPY, Settings(restarts=2))
    assert report.certificate is not None and report.certificate.kind == "convex-dual"
    assert report.verdict == "certified", [c for c in report.checks if c.passed is False]


class OffByOnePercentObjective(MSEBalancedBiasFree):
    """Wrong: the optimal value scaled by 0.99 (everything else as the true claim)."""

    id = "test-off-objective"

    def closed_form(self, problem: Problem) -> Prediction:
        pred = super().closed_form(problem)
        return replace(pred, objective=pred.objective * mpmath.mpf("0.99"))


class OffByOnePercentGain(MSEBalancedBiasFree):
    """Wrong: the class gain scaled by 1.01; the claimed value and point follow from that gain."""

    id = "test-off-gain"

    def gain(self, problem: Problem) -> tuple[sp.Expr, str]:
        g, regime = super().gain(problem)
        return sp.Rational(101, 100) * g, regime


def _one_layer_balanced() -> Problem:
    return Problem.build(counts="30,30,30,30", depth=1, width=6, lambda_w="1e-2", lambda_h="5e-3")


def test_objective_off_by_one_percent_is_refuted_by_the_bound() -> None:
    problem = _one_layer_balanced()
    report = verify(OffByOnePercentObjective(), problem, NUMPY, Settings(optimise=False))
    assert report.verdict == "refuted"
    assert report.certificate.kind == "convex-dual" and report.certificate.rigorous
    # the certificate alone: a rigorous lower bound above the claimed optimum
    assert report.claimed_minus_bound is not None and report.claimed_minus_bound < 0
    assert report.prediction.objective < report.certificate.bound_exact


def test_gain_off_by_one_percent_is_refuted_by_the_certificates_point() -> None:
    problem = _one_layer_balanced()
    claim = OffByOnePercentGain()
    assert claim.closed_form(problem).classes[0].regime == "alive"
    report = verify(claim, problem, NUMPY, Settings(optimise=False))
    assert report.verdict == "refuted"
    e3 = next(c for c in report.checks if c.name == "E3 certificate")
    assert e3.passed is False
    # the certificate alone: its feasible point beats the claimed optimum
    assert report.counterexample is not None
    assert "convex-dual" in report.counterexample.origin
    assert report.counterexample.objective < float(report.prediction.objective)


def test_a_relaxation_gives_way_to_an_exact_certificate() -> None:
    """With d < K the convex program is a relaxation (a lower bound that need not be attained):
    the verifier takes the exact separable reduction listed after it, and certifies."""
    problem = Problem.build(counts="5,5,5,5", depth=1, width=2, lambda_w="1e-2", lambda_h="1e-2")
    relaxed = convex_dual(problem)
    exact = separable_reduction(problem)
    assert relaxed is not None and not relaxed.exact and relaxed.notes
    assert exact is not None
    # the relaxation is strictly below the optimum here: four equal modes, only two fit
    assert relaxed.bound_exact < exact.bound_exact * (1 - 1e-3)
    report = verify(MSEBalancedBiasFree(), problem, NUMPY, Settings(restarts=2))
    assert report.certificate is not None and report.certificate.kind == "separable-reduction"
    assert report.verdict == "certified", [c for c in report.checks if c.passed is False]
