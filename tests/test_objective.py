"""The objective `F`: analytic gradient and Hessian-vector products against finite differences,
and the rounding-error bound against an exact evaluation.

Instances cover both losses, every bias mode, depths 1-4 and uneven widths (bottlenecks
included).  Finite differences use the fourth-order central formula
`(8(f(x+h) - f(x-h)) - (f(x+2h) - f(x-2h))) / (12 h)`, whose truncation error is `O(h^4)`, so
a tolerance far below any plausible bug is safe.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import mpmath
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from ncverify.backend import Backend
from ncverify.model.objective import Objective, Params
from ncverify.model.problem import Problem
from ncverify.testing import problems

NUMPY = Backend.create("numpy")

tiny_problems = problems(
    loss=None,
    bias=None,
    max_classes=3,
    max_depth=4,
    max_width=4,
    max_samples=3,
    min_lambda="1e-3",
    max_lambda="1",
    allow_bottleneck=True,
)
seeds = st.integers(0, 2**32 - 1)


# ---- points as flat vectors (written here, independent of the engine's flattener) ---------------
def shapes(problem: Problem) -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = [*problem.layer_shapes, (problem.widths[0], problem.N)]
    if problem.bias != "none":
        out.append((problem.K,))
    return out


def unflatten(problem: Problem, x: np.ndarray) -> Params:
    parts, start = [], 0
    for shape in shapes(problem):
        size = math.prod(shape)
        parts.append(x[start : start + size].reshape(shape))
        start += size
    m = problem.depth
    return Params(tuple(parts[:m]), parts[m], parts[m + 1] if problem.bias != "none" else None)


def flatten(p: Params) -> np.ndarray:
    return np.concatenate([np.asarray(a).ravel() for a in p.arrays()])


def random_vector(problem: Problem, rng: np.random.Generator, scale: float) -> np.ndarray:
    size = sum(math.prod(s) for s in shapes(problem))
    return scale * rng.standard_normal(size)


def derivative(f: Callable[[float], np.ndarray | float], h: float) -> np.ndarray | float:
    """Fourth-order central difference of `f` at 0."""
    return (8 * (f(h) - f(-h)) - (f(2 * h) - f(-2 * h))) / (12 * h)


# ---- gradient --------------------------------------------------------------------------------
@given(tiny_problems, seeds, st.floats(0.3, 1.5))
def test_gradient_matches_finite_differences(problem: Problem, seed: int, scale: float) -> None:
    rng = np.random.default_rng(seed)
    obj = Objective(problem, NUMPY.xp)
    x = random_vector(problem, rng, scale)
    value, grad = obj.value_and_grad(unflatten(problem, x))
    g = flatten(grad)
    # value_and_grad may associate the products differently from value: equal up to rounding
    assert abs(float(value) - obj.value(unflatten(problem, x))) <= 2 * obj.error_bound(
        unflatten(problem, x)
    )
    h = 1e-4
    fd = np.empty_like(x)
    for i in range(x.size):  # every coordinate: a wrong entry anywhere is caught
        e = np.zeros_like(x)
        e[i] = 1.0
        fd[i] = derivative(lambda t, e=e: obj.value(unflatten(problem, x + t * e)), h)
    # rounding in the differences is ~ eps |F| / h ~ 1e-12 |F|; truncation is O(h^4)
    tol = 1e-7 * (1 + abs(float(value)))
    assert np.max(np.abs(fd - g)) <= tol + 1e-6 * np.max(np.abs(g)), fd - g


@given(tiny_problems, seeds)
def test_gradient_parts_sum_to_the_gradient(problem: Problem, seed: int) -> None:
    rng = np.random.default_rng(seed)
    obj = Objective(problem, NUMPY.xp)
    p = unflatten(problem, random_vector(problem, rng, 1.0))
    grad_loss, grad_reg = obj.grad_parts(p)
    _, grad = obj.value_and_grad(p)
    np.testing.assert_allclose(
        flatten(grad_loss) + flatten(grad_reg), flatten(grad), rtol=1e-13, atol=1e-15
    )
    # the regulariser's gradient is lambda * parameter, block by block
    lam_b = float(problem.lambda_b) if problem.lambda_b is not None else 0.0
    for lam, w, gw in zip(problem.lambda_w, p.Ws, grad_reg.Ws, strict=True):
        np.testing.assert_allclose(gw, float(lam) * w, rtol=1e-15)
    np.testing.assert_allclose(grad_reg.H, float(problem.lambda_h) * p.H, rtol=1e-15)
    if p.b is not None:
        np.testing.assert_allclose(grad_reg.b, lam_b * p.b, rtol=1e-15)


# ---- Hessian-vector products ---------------------------------------------------------------------
@given(tiny_problems, seeds, st.floats(0.3, 1.5))
def test_hvp_matches_finite_differences_of_the_gradient(
    problem: Problem, seed: int, scale: float
) -> None:
    rng = np.random.default_rng(seed)
    obj = Objective(problem, NUMPY.xp)
    x = random_vector(problem, rng, scale)
    v = random_vector(problem, rng, 1.0)
    v /= np.linalg.norm(v)
    hv = flatten(obj.hvp(unflatten(problem, x), unflatten(problem, v)))

    def grad_at(t: float) -> np.ndarray:
        return flatten(obj.value_and_grad(unflatten(problem, x + t * v))[1])

    fd = derivative(grad_at, 1e-4)
    scale_g = np.linalg.norm(grad_at(0.0))
    assert np.linalg.norm(fd - hv) <= 1e-6 * np.linalg.norm(hv) + 1e-7 * (1 + scale_g)


@given(tiny_problems, seeds)
def test_hvp_is_symmetric(problem: Problem, seed: int) -> None:
    # <u, H v> = <v, H u>: a Hessian is symmetric, a wrong cross term usually is not
    rng = np.random.default_rng(seed)
    obj = Objective(problem, NUMPY.xp)
    p = unflatten(problem, random_vector(problem, rng, 1.0))
    u, v = (random_vector(problem, rng, 1.0) for _ in range(2))
    hu = flatten(obj.hvp(p, unflatten(problem, u)))
    hv = flatten(obj.hvp(p, unflatten(problem, v)))
    a, b = float(u @ hv), float(v @ hu)
    assert abs(a - b) <= 1e-11 * (
        np.linalg.norm(hu) * np.linalg.norm(v) + np.linalg.norm(hv) * np.linalg.norm(u)
    )


# ---- known values ----------------------------------------------------------------------------------
@given(problems(loss=None, bias=None, allow_bottleneck=True, max_depth=4))
def test_value_at_zero(problem: Problem) -> None:
    # at W = 0, H = 0, b = 0: MSE is ||Y||^2/(2N) = 1/2, cross-entropy is log K per sample,
    # focal loss ((K - 1)/K)^gamma log K (p_y = 1/K)
    obj = Objective(problem, NUMPY.xp)
    expected = 0.5 if problem.loss == "mse" else math.log(problem.K)
    if problem.loss == "focal":
        expected *= ((problem.K - 1) / problem.K) ** float(problem.focusing)
    assert math.isclose(obj.value(obj.zeros()), expected, rel_tol=1e-15)
    loss, reg = obj.parts(obj.zeros())
    assert reg == 0.0 and math.isclose(loss, expected, rel_tol=1e-15)


# ---- the rounding-error bound ------------------------------------------------------------------
def exact_objective(problem: Problem, p: Params) -> mpmath.mpf:
    """`F(p)` for the float entries of `p` taken as exact numbers, with the exact rational lambdas:
    Fractions throughout for MSE, 60-digit mpmath for the logarithms of cross-entropy (against
    one-hot or smoothed labels, written here as `-sum_k q_k log softmax(z)_k`)."""

    def frac(a: np.ndarray) -> list[list[Fraction]]:
        a2 = np.atleast_2d(np.asarray(a, dtype=np.float64))
        return [[Fraction(float(x)) for x in row] for row in a2]

    def matmul(a: list[list[Fraction]], b: list[list[Fraction]]) -> list[list[Fraction]]:
        return [
            [sum((a[i][k] * b[k][j] for k in range(len(b))), Fraction(0)) for j in range(len(b[0]))]
            for i in range(len(a))
        ]

    z = frac(p.H)
    for w in p.Ws:
        z = matmul(frac(w), z)
    labels = problem.labels()
    if p.b is not None:
        b = frac(p.b)[0]
        z = [[z[k][i] + b[k] for i in range(problem.N)] for k in range(problem.K)]
    sq = lambda a: sum((x * x for row in frac(a) for x in row), Fraction(0))  # noqa: E731
    reg = problem.lambda_h / 2 * sq(p.H) + sum(
        (lam / 2 * sq(w) for lam, w in zip(problem.lambda_w, p.Ws, strict=True)), Fraction(0)
    )
    if p.b is not None and problem.lambda_b is not None:
        reg += problem.lambda_b / 2 * sq(p.b)
    with mpmath.workdps(60):
        if problem.loss == "mse":
            loss = sum(
                (
                    (z[k][i] - (1 if labels[i] == k else 0)) ** 2
                    for k in range(problem.K)
                    for i in range(problem.N)
                ),
                Fraction(0),
            ) / (2 * problem.N)
            return (
                mpmath.mpf(loss.numerator) / loss.denominator
                + mpmath.mpf(reg.numerator) / reg.denominator
            )
        if problem.loss == "focal":  # -(1 - p_y)^gamma log p_y, 1 - p_y the others' share
            gamma = mpmath.mpf(problem.focusing.numerator) / problem.focusing.denominator
            total = mpmath.mpf(0)
            for i in range(problem.N):
                col = [
                    mpmath.mpf(z[k][i].numerator) / z[k][i].denominator for k in range(problem.K)
                ]
                logp = [c - mpmath.log(mpmath.fsum(mpmath.exp(v) for v in col)) for c in col]
                y = labels[i]
                q = mpmath.fsum(mpmath.exp(lk) for k, lk in enumerate(logp) if k != y)
                total -= q**gamma * logp[y]
            return total / problem.N + mpmath.mpf(reg.numerator) / reg.denominator
        # label smoothing: the cross-entropy of the softmax against the smoothed labels
        smoothing = problem.smoothing or Fraction(0)
        alpha = mpmath.mpf(smoothing.numerator) / smoothing.denominator
        total = mpmath.mpf(0)
        for i in range(problem.N):
            col = [mpmath.mpf(z[k][i].numerator) / z[k][i].denominator for k in range(problem.K)]
            logp = [c - mpmath.log(mpmath.fsum(mpmath.exp(v) for v in col)) for c in col]
            q = [(1 - alpha) * (k == labels[i]) + alpha / problem.K for k in range(problem.K)]
            total -= mpmath.fsum(qk * lk for qk, lk in zip(q, logp, strict=True))
        return total / problem.N + mpmath.mpf(reg.numerator) / reg.denominator


#: Problems small enough for an exact evaluation, any loss and bias, lambdas up to 10; points
#: drawn at three scales.
exact_problems = problems(
    loss=None,
    bias=None,
    max_classes=3,
    max_depth=3,
    max_width=3,
    max_samples=3,
    allow_bottleneck=True,
    min_lambda="1e-3",
    max_lambda="10",
)
point_scales = st.sampled_from([0.1, 1.0, 8.0])


@given(exact_problems, seeds, point_scales, st.sampled_from(["float64", "float32"]))
def test_error_bound_bounds_the_rounding_error(
    problem: Problem, seed: int, scale: float, dtype: str
) -> None:
    backend = Backend.create("numpy", None, dtype)
    obj = Objective(problem, backend.xp, dtype=backend.dtype)
    rng = np.random.default_rng(seed)
    p = unflatten(problem, random_vector(problem, rng, scale)).map(backend.asarray)
    computed = obj.value(p)
    bound = obj.error_bound(p)
    truth = exact_objective(problem, p)
    error = abs(mpmath.mpf(computed) - truth)
    assert error <= bound, (float(error), bound)
    # and the bound is a rounding-error bound, not a vacuous one: a modest multiple of eps |F|
    # (the sum of magnitudes it accumulates can exceed |F|, hence the factor)
    assert bound <= 1e4 * backend.eps * max(1.0, abs(float(truth)))


@given(exact_problems, seeds, point_scales, st.sampled_from([1e-6, 2.0**-53 * 64]))
def test_perturbation_bound_bounds_the_change_of_every_entry_within_it(
    problem: Problem, seed: int, scale: float, relative: float
) -> None:
    """Moving every entry of `p` by at most `relative` of itself (the worst case of rounding a
    point to float64) moves the exact `F` by at most `perturbation_bound(p, relative)`."""
    obj = Objective(problem, NUMPY.xp)
    rng = np.random.default_rng(seed)
    x = random_vector(problem, rng, scale)
    # the extremes of the box as well as its inside: the worst case sits at a corner
    theta = relative * rng.choice([-1.0, 1.0, 0.5, -0.3], size=x.size)
    p, q = unflatten(problem, x), unflatten(problem, x * (1 + theta))
    change = abs(exact_objective(problem, q) - exact_objective(problem, p))
    bound = obj.perturbation_bound(p, relative)
    assert change <= bound, (float(change), bound)
    # not a vacuous bound: a modest multiple of relative |F| (sums of magnitudes, as above)
    assert bound <= 1e4 * relative * max(1.0, float(abs(exact_objective(problem, p))))
