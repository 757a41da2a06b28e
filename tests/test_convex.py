"""The `convex-dual` certificate: rigour, tightness, solvers, size limits, and its place in the
verdicts.

Rigour is tested against facts that do not depend on the code under test: a lower bound on the
optimum can never exceed the objective of *any* point of the original problem, and a dual point
proven feasible in verified floating point must be feasible in exact rational arithmetic.  The objective
of a point is enclosed here independently, in rational arithmetic (logits, MSE loss,
regulariser) and 200-bit interval arithmetic (the CE logarithms), so the comparisons carry no
tolerance: one fails only on a proven violation.  Tightness is tested against values computed independently: the exact
separable reduction for MSE, Zhu et al.'s closed form for balanced CE, the full `K x N`
program, the closed-form optima of balanced one-layer MSE (derived by hand below), and the
claims' own predictions.  The closed form (singular-value thresholding) and the accelerated
proximal gradient method are compared with the cvxpy solution of the same program.
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
from ncverify.claim import Prediction
from ncverify.evidence.certificates import CERTIFIERS, convex, separable_reduction
from ncverify.evidence.certificates.convex import (
    FORCE_ENV,
    MAX_CLASSES,
    MAX_CLASSES_CLOSED_FORM,
    Factorised,
    convex_dual,
    dual_bound,
    polish,
    solve,
)
from ncverify.evidence.certificates.verified import exact_positive_definite
from ncverify.evidence.optimize import multistart
from ncverify.limits import StepSkipped, forcing
from ncverify.model.intervals import round_down
from ncverify.model.objective import Params
from ncverify.model.problem import Problem
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
            # label smoothing: the targets' logit is (1 - alpha) z_y + (alpha / K) sum_i z_i
            alpha = problem.smoothing or Fraction(0)
            for c, z in enumerate(logits):
                lse = iv.log(sum(iv.exp(_iv(v)) for v in z))
                target = (1 - alpha) * z[labels[c]] + alpha / k * sum(z)
                total += (lse - _iv(target)) / n
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
    loss = loss or draw(st.sampled_from(["mse", "ce", "ls"]))
    bias = bias or draw(st.sampled_from(["none", "free", "regularised"]))
    smoothing = Fraction(draw(st.integers(1, 99)), 100) if loss == "ls" else None
    return Problem(
        counts=counts,
        depth=1,
        widths=(d,),
        lambda_w=(draw(st.sampled_from(LAMBDAS)),),
        lambda_h=draw(st.sampled_from(LAMBDAS)),
        loss=loss,
        bias=bias,
        lambda_b=draw(st.sampled_from(LAMBDAS)) if bias == "regularised" else None,
        smoothing=smoothing,
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
    st.one_of(
        one_layer(bias="none"),
        one_layer(bias="regularised"),
        one_layer(loss="mse"),
        one_layer(loss="ls", bias="none"),
    ),
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


def _exactly_feasible(problem: Problem, numer: list[list[int]], denom: int, t: Fraction) -> bool:
    """`s^2 I - t^2 Theta D^-2 Theta^T` positive definite, decided in exact rationals."""
    k = problem.K
    theta = [[Fraction(v, denom) for v in col] for col in numer]
    s2 = problem.lambda_w[0] * problem.lambda_h
    m = [
        [
            (s2 if i == j else 0)
            - t * t * sum(theta[c][i] * theta[c][j] / problem.counts[c] for c in range(k))
            for j in range(k)
        ]
        for i in range(k)
    ]
    return exact_positive_definite(m)


@given(one_layer(), st.integers(0, 2**16), st.sampled_from([0.0, 1e-9, 1.0]))
def test_verified_feasibility_is_exact_feasibility(
    problem: Problem, seed: int, noise: float
) -> None:
    """Every dual point that the verified-float check accepts is feasible in exact arithmetic,
    near the optimum (where the spectral constraint is tight) and far from it; and the exact
    check never needs a larger margin than the verified one (which would contradict soundness)."""
    sol = solve(problem)
    means = convex.ClassMeans(problem)
    logits = means.logits(sol.product, means.beta_of(sol.bias))
    logits = logits + noise * np.random.default_rng(seed).normal(size=logits.shape)
    verified = dual_bound(problem, logits)
    exact = dual_bound(problem, logits, check="exact")
    if verified is None:  # only the construction can fail (CE, free bias: a negative probability)
        assert problem.loss == "ce" and problem.bias == "free"
        assert convex.dual_point(problem, logits) is None
        return
    assert verified.check in ("verified-float", "verified-extended")
    assert _exactly_feasible(problem, verified.numer, verified.denom, verified.scale)
    assert exact is not None and exact.check == "exact"
    assert exact.margin <= verified.margin


def _direct_dual_value(problem: Problem, theta: list[list[Fraction]]):  # noqa: ANN202
    """The dual objective of §3 at the columns `theta`, straight from its definition: rational
    MSE terms, a 200-bit interval for the CE entropies (`p_c = t_c - theta_c / w_c` with the
    targets `t_c`, one-hot or smoothed)."""
    k, n = problem.K, problem.N
    w = [Fraction(c, n) for c in problem.counts]
    g = [sum(theta[c][j] for c in range(k)) for j in range(k)]
    exact = Fraction(0)
    if problem.bias == "regularised":
        exact -= sum(v * v for v in g) / (2 * problem.lambda_b)
    if problem.bias == "free":
        assert not any(g)
    iv = mpmath.iv
    saved, iv.prec = iv.prec, BITS
    try:
        if problem.loss == "mse":
            exact += sum(theta[c][c] - sum(v * v for v in theta[c]) / (2 * w[c]) for c in range(k))
            return _iv(exact)
        total = _iv(exact)
        alpha = problem.smoothing or Fraction(0)  # label smoothing's targets, else one-hot
        for c in range(k):
            for j in range(k):
                target = (1 - alpha) * (1 if j == c else 0) + alpha / k
                p = target - theta[c][j] / w[c]
                assert p >= 0
                if p > 0:
                    total -= _iv(w[c]) * _iv(p) * iv.log(_iv(p))
        return total
    finally:
        iv.prec = saved


@given(one_layer(max_samples=4), st.integers(0, 2**16))
def test_bound_value_is_the_dual_objective(problem: Problem, seed: int) -> None:
    """The integer shortcuts of the bound evaluation against the definition."""
    sol = solve(problem)
    means = convex.ClassMeans(problem)
    logits = means.logits(sol.product, means.beta_of(sol.bias))
    logits = logits + 1e-3 * np.random.default_rng(seed).normal(size=logits.shape)
    bound = dual_bound(problem, logits)
    if bound is None:  # only the free bias's shift can leave the simplex
        assert problem.loss in ("ce", "ls") and problem.bias == "free"
        return
    direct = _direct_dual_value(problem, bound.theta)
    with mpmath.workprec(BITS):
        assert mpmath.mpf(direct.a) - 2**-150 <= bound.value <= mpmath.mpf(direct.b)


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


# ---- the solvers against cvxpy -----------------------------------------------------------------
@given(st.data())
def test_closed_form_agrees_with_cvxpy(data: st.DataObject) -> None:
    """Singular-value thresholding (MSE, no bias or a free bias, any counts) against the cvxpy
    solution of the same class-mean program: it is at least as good, and the same point."""
    bias = data.draw(st.sampled_from(["none", "free"]))
    problem = data.draw(one_layer(loss="mse", bias=bias))
    ours = solve(problem)
    assert ours.solver.startswith("closed form")
    ref = solve(problem, method="cvxpy")
    scale = max(1.0, abs(ref.value))
    assert ours.value <= ref.value + 1e-12 * scale  # the exact minimiser: never worse
    assert ref.value - ours.value <= 1e-8 * scale
    assert np.allclose(ours.product, ref.product, atol=1e-4)
    if bias == "free":  # the optimal bias is n / N exactly (§4.1); cvxpy finds it too
        weights = np.asarray(problem.counts) / problem.N
        assert np.allclose(ours.bias, weights, atol=1e-12)
        assert np.allclose(ref.bias, weights, atol=1e-4)


@given(
    st.one_of(
        one_layer(loss="ce"), one_layer(loss="mse", bias="regularised"), one_layer(loss="mse")
    )
)
def test_apg_agrees_with_cvxpy(problem: Problem) -> None:
    """The first-order method (with its polish) against cvxpy: CE with every bias mode, MSE with a
    regularised bias (and, as a cross-check of the method itself, the MSE closed-form cases)."""
    ours = solve(problem, method="apg")
    assert ours.solver == "APG"
    ref = solve(problem, method="cvxpy")
    scale = max(1.0, abs(ref.value))
    assert ours.value <= ref.value + 1e-10 * scale
    assert ref.value - ours.value <= 1e-8 * scale
    if problem.loss == "mse" and problem.bias in ("none", "free"):
        exact = solve(problem, method="closed-form")
        assert abs(ours.value - exact.value) <= 1e-12 * max(1.0, abs(exact.value))


def test_cvxpy_is_refused_for_many_classes() -> None:
    problem = Problem.build(classes=convex.CVXPY_MAX_CLASSES + 1, samples=1, depth=1, width=2)
    with pytest.raises(ValueError, match="cvxpy"):
        solve(problem, method="cvxpy")


def test_hessian_vector_products_match_the_gradient() -> None:
    rng = np.random.default_rng(2)
    for loss, bias, lambda_b in (
        ("ce", "regularised", "0.1"),
        ("mse", "free", None),
        ("ce", "none", None),
    ):
        problem = Problem.build(
            counts="3,1,2", depth=1, width=3, loss=loss, bias=bias, lambda_b=lambda_b
        )
        f = Factorised(problem, 2)
        x = rng.normal(size=f.size)
        v = rng.normal(size=f.size)
        h = 1e-5
        diff = (f.gradient(x + h * v) - f.gradient(x - h * v)) / (2 * h)
        assert np.allclose(f.hvp(x, v), diff, rtol=1e-6, atol=1e-8)
        dense = f.hessian(x)
        assert np.allclose(dense, dense.T)
        assert np.allclose(dense @ v, f.hvp(x, v), atol=1e-12)


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_polish_converges_from_a_perturbed_optimum(loss: str) -> None:
    problem = Problem.build(
        counts="5,3,2,2",
        depth=1,
        width=4,
        loss=loss,
        bias="regularised",
        lambda_b="0.1",
        lambda_w="1e-2",
        lambda_h="1e-2",
    )
    sol = solve(problem)
    f = Factorised(problem, problem.K)
    x0 = f.from_product(sol.product, sol.bias) + 1e-3 * np.random.default_rng(0).normal(size=f.size)
    x, note = polish(f, x0)
    assert "Newton-CG" in note
    assert np.linalg.norm(f.gradient(x)) <= 1e-9 * np.linalg.norm(f.gradient(x0))
    assert abs(f.value(x) - sol.value) <= 1e-12 * abs(sol.value)


# ---- tightness against the balanced closed forms ------------------------------------------------
def mse_balanced_optimum(classes: int, samples: int, lambda_product: Fraction, bias: str):  # noqa: ANN201
    """One layer, balanced MSE, derived by hand: the class-mean targets `sqrt(n) I` (no bias) or
    `sqrt(n) (I - 1 1^T / K)` (free bias) have `K` resp. `K - 1` singular values `sqrt(n)`;
    thresholding them by `N s = K n s` leaves `gamma sqrt(n)` with
    `gamma = 1 - K sqrt(n lambda_W lambda_H)` (the mode dies when `gamma <= 0`), and each live mode
    contributes `(1 - gamma^2) / (2K)` to the optimum, each dead one `1 / (2K)`, so
    `P* = m (1 - max(gamma, 0)^2) / (2K)` with `m = K` resp. `K - 1` modes.  A 200-bit interval."""
    iv = mpmath.iv
    saved, iv.prec = iv.prec, BITS
    try:
        modes = classes if bias == "none" else classes - 1
        if samples * lambda_product * classes**2 >= 1:  # gamma <= 0, decided exactly
            return iv.mpf(modes) / (2 * classes)
        gamma = 1 - classes * iv.sqrt(_iv(samples * lambda_product))
        return iv.mpf(modes) * (1 - gamma * gamma) / (2 * classes)
    finally:
        iv.prec = saved


@given(
    st.integers(2, 40),
    st.integers(1, 30),
    st.sampled_from(LAMBDAS[:4]),
    st.sampled_from(LAMBDAS[:4]),
    st.sampled_from(["none", "free"]),
)
def test_mse_bound_equals_the_balanced_closed_form(
    classes: int, samples: int, lambda_w: Fraction, lambda_h: Fraction, bias: str
) -> None:
    problem = Problem(
        counts=(samples,) * classes,
        depth=1,
        widths=(classes,),
        lambda_w=(lambda_w,),
        lambda_h=lambda_h,
        loss="mse",
        bias=bias,
    )
    optimum = mse_balanced_optimum(classes, samples, lambda_w * lambda_h, bias)
    cert = convex_dual(problem)
    assert cert is not None and cert.rigorous and cert.exact
    with mpmath.workprec(BITS):
        lo, hi = mpmath.mpf(optimum.a), mpmath.mpf(optimum.b)
        assert cert.bound_exact <= hi  # a lower bound, with no tolerance
        assert lo - cert.bound_exact <= 1e-10 * lo  # and tight
        assert cert.primal >= float(lo) * (1 - 1e-15)


@pytest.mark.parametrize("classes", [20, 60])
def test_ce_bound_equals_zhu_closed_form_for_more_classes(classes: int) -> None:
    """The dense spectral check at a size where float64 noise (about `K^2 u`) starts to matter."""
    problem = Problem.build(classes=classes, samples=3, depth=1, width=classes, loss="ce")
    optimum = zhu_optimum(classes, 3, problem.lambda_w[0] * problem.lambda_h)
    cert = convex_dual(problem)
    assert cert is not None
    with mpmath.workprec(BITS):
        lo, hi = mpmath.mpf(optimum.a), mpmath.mpf(optimum.b)
        assert cert.bound_exact <= hi
        assert lo - cert.bound_exact <= 1e-10 * lo


# ---- size limits --------------------------------------------------------------------------------
def _no_work(*args: object, **kwargs: object) -> None:
    raise AssertionError("expensive work started")


class _Reached(Exception):
    pass


def _reached(*args: object, **kwargs: object) -> None:
    raise _Reached


@pytest.mark.parametrize(
    ("loss", "bias", "limit"),
    [
        ("ce", "none", MAX_CLASSES),
        ("mse", "regularised", MAX_CLASSES),
        ("mse", "free", MAX_CLASSES_CLOSED_FORM),
        ("mse", "none", MAX_CLASSES_CLOSED_FORM),
    ],
)
def test_above_the_size_limit_the_step_is_skipped_before_any_work(
    monkeypatch: pytest.MonkeyPatch, loss: str, bias: str, limit: int
) -> None:
    monkeypatch.delenv(FORCE_ENV, raising=False)
    for name in ("solve", "closed_form", "apg", "_solve_apg", "solve_cvxpy", "dual_bound"):
        monkeypatch.setattr(convex, name, _no_work)
    kw = {"lambda_b": "0.1"} if bias == "regularised" else {}
    big = Problem.build(classes=limit + 1, samples=1, depth=1, width=2, loss=loss, bias=bias, **kw)
    with pytest.raises(StepSkipped, match=FORCE_ENV) as info:
        convex_dual(big)
    message = str(info.value)  # one sentence: why, and how to force it
    assert "\n" not in message and f"limit of {limit}" in message and "--force" in message
    # at the limit, and when forced, the work starts
    monkeypatch.setattr(convex, "solve", _reached)
    at = Problem.build(classes=limit, samples=1, depth=1, width=2, loss=loss, bias=bias, **kw)
    with pytest.raises(_Reached):
        convex_dual(at)
    with pytest.raises(_Reached):
        convex_dual(big, force=True)
    with forcing(True), pytest.raises(_Reached):  # check --force (Settings.force)
        convex_dual(big)
    monkeypatch.setenv(FORCE_ENV, "1")
    with pytest.raises(_Reached):
        convex_dual(big)
    monkeypatch.setenv(FORCE_ENV, "0")
    with pytest.raises(StepSkipped):
        convex_dual(big)


def test_a_point_too_large_to_build_is_evaluated_per_class(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = Problem.build(counts="6,4,3,2", depth=1, width=5, loss="ce", bias="free")
    full = convex_dual(problem)
    monkeypatch.setattr(convex, "MAX_POINT_ENTRIES", 0)
    light = convex_dual(problem)
    assert full is not None and light is not None
    assert light.point is None and light.notes
    assert light.bound_exact == full.bound_exact
    assert abs(light.primal - full.primal) <= 1e-12 * abs(full.primal)


# ---- the claims and the verdicts ----------------------------------------------------------------
CONVEX_CLAIMS = sorted(
    cid for cid, c in theorems.registry().items() if "convex-dual" in c.certificates
)


def _instance(claim_id: str, lam_w: Fraction, lam_h: Fraction) -> Problem:
    """A depth-1, K = 4 instance the claim applies to: imbalanced if it allows (two groups of
    sizes for a claim about two groups), else balanced."""
    claim = theorems.get(claim_id)
    for counts in ((6, 4, 3, 2), (6, 6, 2, 2), (4, 4, 4, 4)):
        problem = Problem(
            counts=counts,
            depth=1,
            widths=(5,),
            lambda_w=(lam_w,),
            lambda_h=lam_h,
            loss=claim.loss,
            bias=claim.bias,
            lambda_b=Fraction(1, 10) if claim.bias == "regularised" else None,
            smoothing=claim.default_problem().smoothing,  # label smoothing's alpha, or none
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
