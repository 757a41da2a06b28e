"""The balanced cross-entropy claim (`ce-balanced`), its exact K x K reduction, the reduction
search with lifting, and the high-precision counterexample certificate.

Reference values are computed here from the mathematics (logsumexp, SVD, a dense grid for the
scalar problem, the published one-layer margin), never taken from the code under test.
"""

from __future__ import annotations

import math
import sys
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import scipy.optimize as so
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy.special import logsumexp

from ncverify.app.recheck import recheck_file
from ncverify.backend import Backend
from ncverify.evidence.point_certificate import certify_point
from ncverify.model.exact import enclose_objective
from ncverify.model.objective import Objective, Params, norm
from ncverify.model.problem import Problem
from ncverify.verify import Settings, verify
from theorems import _ce_search as ce_search
from theorems.ce_balanced import claim, critical_c, margin_minimum

NUMPY = Backend.create("numpy")
# a power of ten's worth of lambdas, as exact decimals with two significant digits
LAMBDAS = st.integers(10, 99).flatmap(
    lambda m: st.integers(2, 4).map(lambda e: Fraction(m, 10 ** (e + 1)))
)
BIASES = st.sampled_from(["none", "free", "regularised"])


def ce_problem(
    k: int,
    n: int,
    depth: int,
    lam: Fraction | str,
    *,
    width: int | None = None,
    bias: str = "none",
    lambda_b: str | None = None,
) -> Problem:
    return Problem.build(
        classes=k,
        samples=n,
        depth=depth,
        width=width if width is not None else k,
        lambda_w=lam,
        lambda_h=lam,
        lambda_b=lambda_b if bias == "regularised" else None,
        loss="ce",
        bias=bias,
    )


def reference_reduced(problem: Problem, z: np.ndarray, b: np.ndarray | None) -> float:
    """`(1/K) sum_k CE(z_k + b, k) + ((M+1)/2) c sum_i sigma_i(Z)^q (+ lambda_b/2 ||b||^2)`."""
    m = problem.depth
    c = float(problem.counts[0] * problem.lambda_product) ** (1 / (m + 1))
    zb = z if b is None else z + b[:, None]
    loss = float(np.mean(logsumexp(zb, axis=0) - np.diag(zb)))
    sv = np.linalg.svd(z, compute_uv=False)
    sv = sv[sv > 1e-12 * max(float(sv[0]), 1e-300)]  # rounding-level singular values are 0
    pen = (m + 1) / 2 * c * float(np.sum(sv ** (2 / (m + 1))))
    reg_b = 0.0 if b is None or problem.lambda_b is None else float(problem.lambda_b) / 2 * b @ b
    return loss + pen + reg_b


def scalar_f(alpha: float, k: int, depth: int, c: float) -> float:
    return math.log1p((k - 1) * math.exp(-alpha)) + (k - 1) * (depth + 1) / 2 * c * alpha ** (
        2 / (depth + 1)
    )


def reference_scalar_min(k: int, depth: int, c: float) -> float:
    """`min_{alpha >= 0} f` by a dense grid and a bounded local refinement (floats)."""
    grid = np.linspace(0.0, 80.0, 8001)
    vals = [scalar_f(a, k, depth, c) for a in grid]
    i = int(np.argmin(vals))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    res = so.minimize_scalar(
        lambda a: scalar_f(a, k, depth, c),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-13},
    )
    return min(math.log(k), float(res.fun), vals[i])


def class_level(problem: Problem, point: Params) -> tuple[np.ndarray, np.ndarray]:
    """`(W_M ... W_1, Hbar)` of a host point."""
    w = point.Ws[-1]
    for wm in reversed(point.Ws[:-1]):
        w = w @ wm
    starts = np.cumsum([0, *problem.counts[:-1]])
    hbar = np.stack(
        [point.H[:, s : s + n].mean(axis=1) for s, n in zip(starts, problem.counts, strict=True)],
        axis=1,
    )
    return w, hbar


# ---- the derivation ------------------------------------------------------------------------------
def test_derivation_identities_hold_and_cited_tests_exist() -> None:
    steps = claim.derivation()
    assert steps
    here = sys.modules[__name__]
    for step in steps:
        if step.check == "sympy":
            assert step.identity is not None and step.verify_identity(), step.reference
        if step.reference.startswith("tests/test_ce.py::"):
            assert callable(getattr(here, step.reference.split("::")[1], None)), step.reference


# ---- the exact reduction -------------------------------------------------------------------------
@given(
    k=st.integers(2, 6),
    depth=st.integers(1, 4),
    n=st.integers(1, 4),
    lam=LAMBDAS,
    seed=st.integers(0, 2**32 - 1),
)
def test_reduction_equals_full_objective(
    k: int, depth: int, n: int, lam: Fraction, seed: int
) -> None:
    """At any class-constant point (balanced or not), F is the class average of CE at the
    class-level logits plus the layers' decay and `(lambda_H/2) n ||Hbar||^2`."""
    problem = ce_problem(k, n, depth, lam, width=k + 1)
    rng = np.random.default_rng(seed)
    ws = tuple(rng.normal(size=s) for s in problem.layer_shapes)
    hbar = rng.normal(size=(problem.widths[0], k)) * 2
    point = Params(ws, hbar[:, problem.labels()])
    w, _ = class_level(problem, point)
    z = w @ hbar
    expected = float(np.mean(logsumexp(z, axis=0) - np.diag(z)))
    expected += sum(
        float(lm) / 2 * np.sum(wm * wm) for lm, wm in zip(problem.lambda_w, ws, strict=True)
    )
    expected += float(problem.lambda_h) / 2 * n * float(np.sum(hbar * hbar))
    obj = Objective(problem, NUMPY.xp)
    assert obj.value(point) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def _random_reduced_point(
    problem: Problem, rng: np.random.Generator, rank: int, scale: float
) -> ce_search.ReducedPoint:
    k = problem.K
    u, _ = np.linalg.qr(rng.normal(size=(k, k)))
    v, _ = np.linalg.qr(rng.normal(size=(k, k)))
    s = np.sort(rng.uniform(0.1, 1.0, size=rank) * scale)[::-1]
    b = None if problem.bias == "none" else rng.normal(size=k)
    return ce_search.ReducedPoint(u[:, :rank], s, v[:, :rank], b, float("nan"), "random")


@given(
    k=st.integers(2, 6),
    depth=st.integers(1, 4),
    n=st.integers(1, 4),
    lam=LAMBDAS,
    bias=BIASES,
    extra_width=st.integers(0, 3),
    scale=st.floats(0.1, 20.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_lifted_point_has_the_reduced_value(
    k: int,
    depth: int,
    n: int,
    lam: Fraction,
    bias: str,
    extra_width: int,
    scale: float,
    seed: int,
) -> None:
    """Lemma 2 at balance: the balanced lift of `Z = U diag(s) V^T` has full objective equal to
    the reduced objective, for every bias mode and any width at least the rank."""
    rng = np.random.default_rng(seed)
    rank = int(rng.integers(1, k)) if k > 1 else 1
    problem = ce_problem(k, n, depth, lam, width=rank + extra_width, bias=bias, lambda_b="3e-2")
    rp = _random_reduced_point(problem, rng, min(rank, problem.bottleneck), scale)
    point = ce_search.lift(problem, rp)
    expected = reference_reduced(problem, rp.Z, rp.b)
    assert Objective(problem, NUMPY.xp).value(point) == pytest.approx(expected, rel=1e-10)
    red = ce_search.Reduced.of(problem)
    assert red.value(rp.s, rp.Z, rp.b) == pytest.approx(expected, rel=1e-12)
    w, hbar = class_level(problem, point)
    np.testing.assert_allclose(w @ hbar, rp.Z, atol=1e-10 * (1 + scale))


@given(
    k=st.integers(2, 6),
    depth=st.integers(1, 5),
    r=st.integers(1, 6),
    c=st.floats(1e-3, 1.0),
    scale=st.floats(0.01, 10.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_factor_penalty_bounds_schatten(
    k: int, depth: int, r: int, c: float, scale: float, seed: int
) -> None:
    """Lemma 2 with equal weights (the search's parametrisation): `(c/2) sum_j ||F_j||^2 >=
    ((M+1)/2) c sum_i sigma_i(F_M ... F_0)^q`, with equality for balanced factors."""
    rng = np.random.default_rng(seed)
    q = 2 / (depth + 1)
    shapes = [(r, k)] + [(r, r)] * (depth - 1) + [(k, r)]
    fs = [scale * rng.normal(size=s) for s in shapes]
    z = fs[0]
    for f in fs[1:]:
        z = f @ z
    sv = np.linalg.svd(z, compute_uv=False)
    sv = sv[sv > 1e-12 * max(float(sv[0]), 1e-300)]  # rounding-level singular values are 0
    schatten = (depth + 1) / 2 * c * float(np.sum(sv**q))
    penalty = c / 2 * sum(float(np.sum(f * f)) for f in fs)
    assert penalty >= schatten * (1 - 1e-10)
    balanced = ce_search.balanced_factors(z, min(r, k), depth)
    again = balanced[0]
    for f in balanced[1:]:
        again = f @ again
    np.testing.assert_allclose(again, z, atol=1e-9 * max(1.0, float(np.abs(z).max())))
    pen_b = c / 2 * sum(float(np.sum(f * f)) for f in balanced)
    assert pen_b == pytest.approx(schatten, rel=1e-9, abs=1e-300)


# ---- the ETF scalar problem ----------------------------------------------------------------------
@given(k=st.integers(2, 10), depth=st.integers(1, 6), log_c=st.floats(-7.0, 0.0))
def test_enclosure_contains_the_scalar_minimum(k: int, depth: int, log_c: float) -> None:
    """The rigorous enclosure brackets the minimum found by a dense grid and local refinement,
    is tight, and its margin attains the value."""
    n_p = Fraction(math.exp(log_c * (depth + 1))).limit_denominator(10**15)
    c = float(n_p) ** (1 / (depth + 1))
    mm = margin_minimum(k, depth, n_p)
    lo, hi = float(mm.value[0]), float(mm.value[1])
    ref = reference_scalar_min(k, depth, c)
    assert lo <= ref + 1e-13
    assert hi >= ref - 1e-11 * max(1.0, ref)
    assert float(mm.value[1] - mm.value[0]) < 1e-25
    alpha = float(mm.alpha_mid)
    attained = math.log(k) if mm.regime == "collapsed" else scalar_f(alpha, k, depth, c)
    assert attained == pytest.approx((lo + hi) / 2, rel=1e-12, abs=1e-15)
    if abs(ref - math.log(k)) > 1e-9:
        assert (mm.regime == "collapsed") == (ref >= math.log(k) - 1e-12)


@given(k=st.integers(2, 10), depth=st.integers(2, 6), log_c=st.floats(0.0, 70.0))
def test_large_decays_collapse_to_zero(k: int, depth: int, log_c: float) -> None:
    """Up to c = e^70 (lambda ~ 1e30): where a dense grid finds nothing below f(0) = log K,
    the rule says collapsed, with the value log K enclosed.  At such c the peak of `g` lies so
    close to 0 that a rule resting on it alone once called it a tie, and the check refuted its
    own claim."""
    n_p = Fraction(math.exp(log_c * (depth + 1))).limit_denominator(10**15)
    c = float(n_p) ** (1 / (depth + 1))
    ref = reference_scalar_min(k, depth, c)
    assume(ref >= math.log(k) - 1e-12)
    mm = margin_minimum(k, depth, n_p)
    assert mm.regime == "collapsed" and float(mm.alpha_mid) == 0.0
    assert float(mm.value[0]) <= math.log(k) <= float(mm.value[1])


def test_a_huge_decay_is_not_a_refutation() -> None:
    """lambda = 1e30 at M = 3: zero is the minimiser, the claim says so, and the check does not
    refute it (it once did, from a predicted point with a positive margin)."""
    problem = Problem.build(
        classes=4, samples=1, depth=3, width=4, lambda_w="1e30", lambda_h="1e30", loss="ce"
    )
    report = verify(claim, problem, settings=Settings(restarts=2))
    assert report.prediction.zero and report.verdict != "refuted", report.notes


@given(k=st.integers(2, 10), n=st.integers(1, 500), lam_w=LAMBDAS, lam_h=LAMBDAS)
def test_one_layer_margin_matches_zhu(k: int, n: int, lam_w: Fraction, lam_h: Fraction) -> None:
    """M = 1 (Zhu et al. 2021): `alpha = log((1 - (K-1) s)/s)`, `s = sqrt(n lambda_W lambda_H)`,
    while `K s < 1`, else zero."""
    s = math.sqrt(n * float(lam_w) * float(lam_h))
    assume(abs(k * s - 1) > 1e-9)
    mm = margin_minimum(k, 1, n * lam_w * lam_h)
    if k * s < 1:
        assert mm.regime == "alive"
        assert float(mm.alpha_mid) == pytest.approx(math.log((1 - (k - 1) * s) / s), rel=1e-12)
    else:
        assert mm.regime == "collapsed" and float(mm.alpha_mid) == 0.0
    assert critical_c(k, 1) == pytest.approx(1 / k)


@given(
    k=st.integers(3, 6),
    depth=st.integers(1, 4),
    n=st.integers(1, 5),
    lam=LAMBDAS,
    bias=BIASES,
)
def test_predicted_point_has_the_claimed_value(
    k: int, depth: int, n: int, lam: Fraction, bias: str
) -> None:
    """The minimiser is a simplex ETF (`W Hbar ∝ C`, zero bias), stationary, with an objective
    inside the claimed enclosure up to its evaluation error."""
    problem = ce_problem(k, n, depth, lam, width=k, bias=bias, lambda_b="1e-2")
    pred = claim.closed_form(problem)
    point = claim.minimiser(problem, NUMPY)
    obj = Objective(problem, NUMPY.xp)
    value, err = obj.value(point), obj.error_bound(point)
    lo, hi = (float(x) for x in pred.objective_enclosure)
    assert lo - err - 1e-15 <= value <= hi + err + 1e-15
    gl, gr = obj.grad_parts(point)
    grad = gl.zip_map(gr, lambda a, b: a + b)
    assert norm(grad) <= 1e-8 * (norm(gl) + norm(gr)) + 1e-13
    w, hbar = class_level(problem, point)
    z = w @ hbar
    cmat = np.eye(k) - 1.0 / k
    scale = float(np.trace(z)) / (k - 1)
    np.testing.assert_allclose(z, scale * cmat, atol=1e-9 * max(1.0, abs(scale)))
    if pred.geometry == "zero":
        assert scale == 0.0
    else:
        assert scale > 0  # the ETF margin
        assert scalar_f(
            scale, k, depth, float(n * problem.lambda_product) ** (1 / (depth + 1))
        ) == (pytest.approx((lo + hi) / 2, rel=1e-12))
    if bias != "none":
        assert point.b is not None and np.all(point.b == 0)


# ---- the high-precision evaluation ---------------------------------------------------------------
@given(
    k=st.integers(2, 5),
    depth=st.integers(1, 3),
    n=st.integers(1, 4),
    lam=LAMBDAS,
    bias=BIASES,
    loss=st.sampled_from(["ce", "mse"]),
    scale=st.floats(0.1, 5.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_high_precision_enclosure_contains_the_float_value(
    k: int,
    depth: int,
    n: int,
    lam: Fraction,
    bias: str,
    loss: str,
    scale: float,
    seed: int,
) -> None:
    """At a class-constant point the exact/interval evaluation encloses F tightly (the float value
    lies within its error bound of it); any other point gets no enclosure."""
    problem = Problem.build(
        counts=[n + i for i in range(k)],
        depth=depth,
        width=k + 1,
        lambda_w=lam,
        lambda_h=lam,
        lambda_b="2e-2" if bias == "regularised" else None,
        loss=loss,
        bias=bias,
    )
    rng = np.random.default_rng(seed)
    ws = tuple(scale * rng.normal(size=s) for s in problem.layer_shapes)
    hbar = scale * rng.normal(size=(problem.widths[0], k))
    b = None if bias == "none" else scale * rng.normal(size=k)
    point = Params(ws, hbar[:, problem.labels()], b)
    obj = Objective(problem, NUMPY.xp)
    value, err = obj.value(point), obj.error_bound(point)
    enc = enclose_objective(problem, point)
    assert enc is not None
    with mpmath.workprec(200):
        lo, hi = mpmath.mpf(enc.a), mpmath.mpf(enc.b)
        assert hi - lo < mpmath.mpf(10) ** -40 * (1 + abs(hi))
        assert lo - err <= value <= hi + err
    h = point.H.copy()
    h[0, -1] = np.nextafter(h[0, -1], np.inf)  # one ulp off: no longer class-constant
    assert enclose_objective(problem, Params(ws, h, b)) is None


@pytest.mark.parametrize(("loss", "exact"), [("mse", 0.5), ("ce", None)])
def test_zero_point_is_evaluated_exactly(loss: str, exact: float | None) -> None:
    """At zero, F = 1/2 (MSE) and log K (CE), exactly; the enclosures contain these numbers."""
    problem = Problem.build(counts="3,1,2", depth=2, width=3, loss=loss)
    zero = Params(tuple(np.zeros(s) for s in problem.layer_shapes), np.zeros((3, problem.N)), None)
    enc = enclose_objective(problem, zero)
    with mpmath.workprec(200):
        target = mpmath.mpf(exact) if exact is not None else mpmath.log(3)
        assert enc.a <= target <= enc.b
        assert mpmath.mpf(enc.b) - mpmath.mpf(enc.a) < mpmath.mpf(10) ** -50


# ---- search, certificate and verdicts ------------------------------------------------------------
def _window_instance(lam: str) -> Problem:
    return Problem.build(
        classes=4, samples=100, depth=2, width=4, lambda_w=lam, lambda_h=lam, loss="ce"
    )


def test_lambda_window_at_depth_two() -> None:
    """K = 4, M = 2, n = 100: the search finds a certified counterexample at lambda = 1e-2, and
    nothing below the claimed enclosure at lambda = 1e-3 (docs/theory/ce.md#balanced-ce)."""
    for lam, refuted in (("1e-2", True), ("1e-3", False)):
        problem = _window_instance(lam)
        pred = claim.closed_form(problem)
        result = ce_search.search(problem, seed=0, random_starts=2)
        point = ce_search.lift(problem, result.best)
        obj = Objective(problem, NUMPY.xp)
        cert = certify_point(problem, pred, point, obj.value(point), obj.error_bound(point))
        assert cert.exact
        assert cert.certified is refuted
        if not refuted:  # the search does reach the prediction
            assert result.best.value == pytest.approx(float(pred.objective), rel=1e-9)


def test_search_is_seeded() -> None:
    problem = ce_problem(5, 10, 3, "1e-3")
    a = ce_search.search(problem, seed=3, random_starts=2)
    b = ce_search.search(problem, seed=3, random_starts=2)
    assert a.best.value == b.best.value and a.best.origin == b.best.origin
    assert a.values == b.values


FAST = Settings(restarts=1, max_iter=200, curvature_steps=10)


@given(
    k=st.integers(4, 8),
    depth=st.integers(3, 5),
    n=st.integers(2, 6),
    decades=st.floats(0.05, 3.0),
)
def test_refuted_where_proven_false(k: int, depth: int, n: int, decades: float) -> None:
    """K >= 4, M >= 3 (Garrod & Keating 2025), lambdas below the ETF's own collapse (so the ETF
    optimum is not zero): the verdict is `refuted`, certified in exact/interval arithmetic."""
    lam_star = critical_c(k, depth) / n ** (1 / (depth + 1))
    lam = Fraction(lam_star * 10.0**-decades).limit_denominator(10**9)
    problem = ce_problem(k, n, depth, lam)
    assert claim.closed_form(problem).geometry == "simplex ETF"
    report = verify(claim, problem, NUMPY, FAST)
    assert report.verdict == "refuted"
    cert = report.counterexample.certificate
    assert cert.certified and cert.exact and cert.gap > cert.bound


@given(k=st.integers(2, 8), n=st.integers(1, 6), lam_w=LAMBDAS, lam_h=LAMBDAS)
def test_depth_one_is_never_refuted(k: int, n: int, lam_w: Fraction, lam_h: Fraction) -> None:
    """M = 1 (Zhu et al. 2021): nothing beats the ETF."""
    problem = Problem.build(
        classes=k, samples=n, depth=1, width=k, lambda_w=lam_w, lambda_h=lam_h, loss="ce"
    )
    settings = Settings(restarts=1, max_iter=300, curvature_steps=10, certificate=False)
    report = verify(claim, problem, NUMPY, settings)
    assert report.verdict != "refuted"
    assert report.counterexample is None


def test_depth_one_is_certified_with_the_convex_dual() -> None:
    problem = ce_problem(4, 5, 1, "5e-3")
    report = verify(claim, problem, NUMPY, Settings(restarts=2))
    assert report.certificate is not None and report.certificate.kind == "convex-dual"
    assert report.verdict == "certified"


def test_consistent_reports_starts_and_structures() -> None:
    report = verify(claim, _window_instance("1e-3"), NUMPY, Settings(restarts=2))
    assert report.verdict == "consistent"
    assert any("structured patterns" in n and "random starts" in n for n in report.notes)


def test_saved_counterexample_rechecks(tmp_path) -> None:  # noqa: ANN001
    problem = ce_problem(4, 3, 3, "5e-4", width=5)
    settings = Settings(restarts=1, max_iter=200, curvature_steps=10, save_dir=str(tmp_path))
    report = verify(claim, problem, NUMPY, settings)
    assert report.verdict == "refuted" and report.counterexample.path is not None
    again = recheck_file(report.counterexample.path)
    assert again["verdict"] == "refuted"
    assert again["certificate"]["exact"] and again["certificate"]["certified"]
    assert again["certificate"]["gap"] == pytest.approx(report.counterexample.certificate.gap)


def test_random_partitions_are_uniform_without_listing_them() -> None:
    from collections import Counter

    from theorems._ce_search import partition_count, partitions, random_partition

    assert partition_count(100, 100) == 190_569_292  # p(100), Hardy and Ramanujan's example
    rng = np.random.default_rng(1)
    draws = Counter(random_partition(6, rng) for _ in range(11_000))
    assert set(draws) == set(partitions(6))  # p(6) = 11, every one drawn
    assert all(abs(c - 1000) < 150 for c in draws.values()), draws  # about 5 sigma


def test_the_structured_search_declines_large_instances() -> None:
    from ncverify.limits import StepSkipped
    from theorems._ce_search import MAX_SEARCH_CLASSES

    k = MAX_SEARCH_CLASSES + 1
    problem = Problem.build(
        classes=k, samples=1, depth=2, width=k, lambda_w="1e-3", lambda_h="1e-3", loss="ce"
    )
    with pytest.raises(StepSkipped, match="--force"):
        ce_search.search(problem)
