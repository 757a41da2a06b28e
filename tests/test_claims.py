"""The two balanced MSE claims (docs/theory/mse.md#balanced-bias-free, #balanced-bias) on random instances.

The claims' derivations cite `test_predicted_point_is_stationary_with_claimed_value` and
`test_bias_is_mean_residual` by name.  Instances include the zero regime (large lambdas) and
the bottleneck `R < K`; expected values are computed here independently of the claims (a dense
grid search of the per-mode problem, hand-computed values of the zero solution).
"""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from test_symbolic import brute_force_minimum

import theorems
from ncverify.backend import Backend
from ncverify.claim import Claim
from ncverify.evidence.metrics import nc_metrics
from ncverify.model.objective import Objective, Params, norm
from ncverify.model.problem import Problem
from ncverify.testing import assert_predicted_point_is_stationary, failure_reason, problems
from ncverify.verify import Settings, verify

NUMPY = Backend.create()
FREE = theorems.get("mse-balanced-biasfree")
BIAS = theorems.get("mse-balanced-bias")
CLAIMS = {"none": FREE, "free": BIAS}
seeds = st.integers(0, 2**32 - 1)


def balanced(bias: str, **kw: object) -> st.SearchStrategy[Problem]:
    """Balanced MSE instances for the claim with this bias mode: lambdas up to 1 reach the zero
    regime, widths down to 1 reach the bottleneck."""
    opts = {
        "max_classes": 4,
        "max_depth": 3,
        "max_width": 6,
        "max_samples": 6,
        "min_lambda": "1e-3",
        "max_lambda": "1",
        "allow_bottleneck": True,
    }
    opts.update(kw)
    return problems(loss="mse", bias=bias, balanced=True, **opts)


any_balanced = st.one_of(balanced("none"), balanced("free"))


def build(counts: tuple[int, ...], depth: int, width: int, lam: str, bias: str) -> Problem:
    return Problem.build(
        counts=list(counts), depth=depth, width=width, lambda_w=lam, lambda_h=lam, bias=bias
    )


# Explicit corners every run covers: the zero regime, the bottleneck, both at once, M = 1.
ZERO = build((4, 4, 4), 2, 4, "3e-1", "none")
ZERO_BIAS = build((4, 4, 4), 3, 4, "3e-1", "free")
BOTTLENECK = build((5, 5, 5, 5), 2, 2, "1e-2", "none")
BOTTLENECK_BIAS = build((5, 5, 5, 5), 2, 2, "1e-2", "free")
ONE_LAYER = build((3, 3), 1, 2, "5e-2", "free")


def within_class_spread(problem: Problem, h: np.ndarray) -> float:
    labels = np.asarray(problem.labels())
    return max(
        float(np.max(np.abs(h[:, labels == k] - h[:, labels == k].mean(axis=1, keepdims=True))))
        for k in range(problem.K)
    )


# ---- the predicted point --------------------------------------------------------------------------
@given(any_balanced)
@example(ZERO)
@example(ZERO_BIAS)
@example(BOTTLENECK)
@example(BOTTLENECK_BIAS)
@example(ONE_LAYER)
def test_predicted_point_is_stationary_with_claimed_value(problem: Problem) -> None:
    """The claim's minimiser (the balanced factorisation of `A = sqrt(n) gamma I_K` or
    `sqrt(n) gamma C`) has the claimed optimal value and a vanishing gradient, with NC1."""
    claim = CLAIMS[problem.bias]
    assert claim.hypotheses(problem) == []
    pred = claim.closed_form(problem)
    point = assert_predicted_point_is_stationary(claim, problem)
    assert within_class_spread(problem, np.asarray(point.H)) <= 1e-14 * (
        1 + float(np.max(np.abs(point.H)))
    )
    # the regimes say what the gains say
    for c in pred.classes:
        assert (c.gain_float > 0) == (c.regime in ("alive", "tie"))


@given(any_balanced)
@example(ZERO)
@example(ZERO_BIAS)
@example(BOTTLENECK)
@example(BOTTLENECK_BIAS)
def test_claimed_value_matches_a_brute_force_search(problem: Problem) -> None:
    """The claimed optimum equals (alive modes) x (per-mode minimum found by a dense grid search)
    plus n/(2N) for every mode that cannot be fitted: K modes without bias, K-1 with a free bias,
    at most R of them active."""
    claim = CLAIMS[problem.bias]
    n, k, m = problem.counts[0], problem.K, problem.depth
    modes = k if problem.bias == "none" else k - 1
    rho = Fraction(k) ** (m + 1) * n * problem.lambda_product  # N^{M+1} P / n^M with N = K n
    _, psi_min = brute_force_minimum(m, rho)
    active = min(modes, problem.bottleneck)
    with mpmath.workdps(30):
        expected = (active * psi_min + (k - active) * mpmath.mpf(1) / 2) / k
        if problem.bias == "free":
            expected -= mpmath.mpf(1) / (2 * k)  # the all-ones mode is fitted by the bias for free
        claimed = claim.closed_form(problem).objective
        assert abs(claimed - expected) <= 1e-10 * expected


@given(balanced("free"))
@example(ZERO_BIAS)
@example(BOTTLENECK_BIAS)
def test_bias_is_mean_residual(problem: Problem) -> None:
    """For the predicted weights and features, the optimal free bias — the mean residual
    `(1/N) (Y - W H) 1` — is the predicted bias `(1/K) 1`; the features are centred at every
    layer and the classifier's rows sum to zero (the simplex ETF lives in the centred space)."""
    point = BIAS.minimiser(problem, NUMPY)
    pred = BIAS.closed_form(problem)
    ws, h = [np.asarray(w) for w in point.Ws], np.asarray(point.H)
    z = h
    features = [h]
    for w in ws:
        z = w @ z
        features.append(z)
    y = np.eye(problem.K)[:, problem.labels()]
    b_opt = (y - z).mean(axis=1)
    scale = 1 + float(np.max(np.abs(z)))
    np.testing.assert_allclose(np.asarray(point.b), b_opt, atol=1e-14 * scale)
    np.testing.assert_allclose(np.asarray(pred.bias), b_opt, atol=1e-14 * scale)
    np.testing.assert_allclose(b_opt, np.full(problem.K, 1 / problem.K), atol=1e-14 * scale)
    for f in features:
        assert float(np.max(np.abs(f.sum(axis=1)))) <= 1e-12 * (1 + float(np.max(np.abs(f))))


@given(balanced("none", allow_bottleneck=False))
@example(ZERO)
def test_bias_optimum_is_k_minus_1_over_k_of_the_biasfree_one(problem: Problem) -> None:
    """Without a bottleneck (R >= K) the bias optimum is exactly (K-1)/K times the bias-free one,
    in every regime: K equal modes without bias, K-1 of them with a free bias."""
    with_bias = problem.with_(bias="free")
    f_free = FREE.closed_form(problem).objective
    f_bias = BIAS.closed_form(with_bias).objective
    with mpmath.workdps(40):
        assert abs(f_bias - f_free * (problem.K - 1) / problem.K) <= mpmath.mpf(10) ** -25


# ---- invariances -------------------------------------------------------------------------------
def permute_classes(problem: Problem, p: Params, perm: list[int]) -> tuple[Problem, Params]:
    """Relabel classes: new class j is old class perm[j]; rows of W_M and b and the class blocks
    of H move with it."""
    labels = np.asarray(problem.labels())
    cols = np.concatenate([np.flatnonzero(labels == old) for old in perm])
    new = problem.with_(counts=tuple(problem.counts[old] for old in perm))
    ws = (*p.Ws[:-1], np.asarray(p.Ws[-1])[perm, :])
    b = None if p.b is None else np.asarray(p.b)[perm]
    return new, Params(ws, np.asarray(p.H)[:, cols], b)


@given(
    problems(
        loss=None,
        bias=None,
        max_classes=4,
        max_depth=3,
        max_width=5,
        max_samples=5,
        allow_bottleneck=True,
    ),
    seeds,
)
def test_objective_is_invariant_under_class_permutation(problem: Problem, seed: int) -> None:
    rng = np.random.default_rng(seed)
    shapes = [*problem.layer_shapes]
    ws = tuple(rng.standard_normal(s) for s in shapes)
    h = rng.standard_normal((problem.widths[0], problem.N))
    b = None if problem.bias == "none" else rng.standard_normal(problem.K)
    p = Params(ws, h, b)
    perm = [int(x) for x in rng.permutation(problem.K)]
    new, q = permute_classes(problem, p, perm)
    f_old, f_new = Objective(problem, NUMPY.xp), Objective(new, NUMPY.xp)
    assert abs(f_old.value(p) - f_new.value(q)) <= f_old.error_bound(p) + f_new.error_bound(q)


@given(any_balanced, seeds)
@example(BOTTLENECK, 0)
def test_prediction_is_invariant_under_class_permutation(problem: Problem, seed: int) -> None:
    """Permuting the (equal) counts permutes the prediction — here every class has the same gain
    and lengths — and the permuted predicted point is again stationary with the claimed value."""
    claim = CLAIMS[problem.bias]
    perm = [int(x) for x in np.random.default_rng(seed).permutation(problem.K)]
    pred = claim.closed_form(problem)
    new, q = permute_classes(problem, claim.minimiser(problem, NUMPY), perm)
    pred_new = claim.closed_form(new)
    assert pred_new.objective == pred.objective
    alive = [c for c in pred.classes if c.regime != "bottleneck"]
    assert (
        len({c.gain_float for c in alive}) <= 1 and len({round(c.length_w, 12) for c in alive}) <= 1
    )
    obj = Objective(new, NUMPY.xp)
    assert abs(obj.value(q) - float(pred.objective)) <= obj.error_bound(q) + 1e-12 * float(
        pred.objective
    )
    gl, gr = obj.grad_parts(q)
    assert norm(gl.zip_map(gr, lambda a, c: a + c)) <= 1e-9 * (norm(gl) + norm(gr)) + 1e-15


def random_orthogonal(rng: np.random.Generator, k: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((k, k)))
    return q * np.sign(np.diag(r))[None, :]


def rotate_hidden(problem: Problem, p: Params, rng: np.random.Generator) -> Params:
    """`H -> Q_0 H`, `W_m -> Q_m W_m Q_{m-1}^T`, the output layer only rotated on its input side."""
    qs = [random_orthogonal(rng, d) for d in problem.widths]
    ws = []
    for m, w in enumerate(p.Ws):
        w = np.asarray(w) @ qs[m].T
        if m + 1 < problem.depth:
            w = qs[m + 1] @ w
        ws.append(w)
    return Params(tuple(ws), qs[0] @ np.asarray(p.H), p.b)


@given(any_balanced, seeds)
@example(BOTTLENECK, 1)
def test_invariance_under_orthogonal_changes_of_hidden_basis(problem: Problem, seed: int) -> None:
    """Rotating every hidden space leaves F, the gradient norm and every NC metric unchanged; a
    rotated predicted point is at distance zero from the prediction."""
    claim = CLAIMS[problem.bias]
    obj = Objective(problem, NUMPY.xp)
    rng = np.random.default_rng(seed)
    pred_point = claim.minimiser(problem, NUMPY)
    shapes = problem.layer_shapes
    random_point = Params(
        tuple(rng.standard_normal(s) for s in shapes),
        rng.standard_normal((problem.widths[0], problem.N)),
        None if problem.bias == "none" else rng.standard_normal(problem.K),
    )
    for p in (pred_point, random_point):
        q = rotate_hidden(problem, p, rng)
        assert abs(obj.value(p) - obj.value(q)) <= obj.error_bound(p) + obj.error_bound(q)
        gp, gq = obj.value_and_grad(p)[1], obj.value_and_grad(q)[1]
        assert math.isclose(norm(gp), norm(gq), rel_tol=1e-9, abs_tol=1e-12)
        before, after = nc_metrics(obj, p, pred_point), nc_metrics(obj, q, pred_point)
        for row_b, row_a in zip(before, after, strict=True):
            for key, v in row_b.items():
                if v is None:
                    assert row_a[key] is None, key
                else:
                    assert row_a[key] is not None, key
                    assert math.isclose(v, row_a[key], rel_tol=1e-6, abs_tol=1e-7), key
    # the rotated prediction is the prediction, as far as every metric can tell
    rows = nc_metrics(obj, rotate_hidden(problem, pred_point, rng), pred_point)
    for row in rows:
        for key, v in row.items():
            if key.startswith(("nc_", "rel_")) and v is not None:
                assert v <= 1e-6, (key, v)


# ---- the zero regime ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("claim", "problem"),
    [(FREE, ZERO), (BIAS, ZERO_BIAS), (FREE, build((3, 3), 3, 3, "4e-1", "none"))],
    ids=["biasfree-M2", "bias-M3", "biasfree-M3"],
)
def test_zero_regime_is_certified_at_the_zero_solution(claim: Claim, problem: Problem) -> None:
    """With large lambdas (rho far above thr_M) the optimum is W = 0, H = 0: F* = 1/2 without bias
    (the loss ||Y||^2/(2N)) and (K-1)/(2K) with the free bias b = 1/K (each sample's residual
    e_k - 1/K has squared norm (K-1)/K)."""
    report = verify(claim, problem, settings=Settings(restarts=3))
    assert report.verdict == "certified", failure_reason(report)
    k = problem.K
    expected = 0.5 if problem.bias == "none" else (k - 1) / (2 * k)
    assert report.prediction.geometry == "zero"
    assert all(c.gain_float == 0 and c.regime == "collapsed" for c in report.prediction.classes)
    assert math.isclose(report.prediction.objective_float, expected, rel_tol=1e-15)
    assert math.isclose(report.best_objective, expected, rel_tol=1e-9)
    assert report.certificate is not None
    assert report.certificate.kind == "separable-reduction"  # M >= 2: the only kind that applies
    geometry = [c for c in report.checks if c.name == "E4 geometry"]
    assert geometry and geometry[0].passed is True  # the best run really is the zero solution
