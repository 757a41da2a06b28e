"""The optimiser: L-BFGS (compact representation), the product-first gradient, multistart.

Facts checked, each of which fails if the code is wrong:
- on a strictly convex quadratic L-BFGS reaches the unique minimiser to rounding, on numpy and on
  array-api-strict (which refuses any hidden conversion to numpy);
- the compact representation gives the same direction as the classical two-loop recursion,
  before and after the history wraps around;
- the product-first gradient equals the layer-by-layer gradient (and finite differences);
- on a real instance a run reaches the exact optimum of the separable reduction to ~1e-12;
- runs are determined by the seed, and worker processes return bit-identical runs.
"""

from __future__ import annotations

import numpy as np
import pytest

from ncverify import lbfgs
from ncverify.backend import Backend
from ncverify.certify import separable_reduction
from ncverify.objective import Objective, Params
from ncverify.optimize import Flattener, descend, multistart, random_start
from ncverify.problem import Problem

NAMESPACES = ["numpy", "array-api-strict"]


def _spd(rng: np.random.Generator, n: int, cond: float) -> np.ndarray:
    """A symmetric positive definite matrix with eigenvalues spread over [1, cond]."""
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return (q * np.geomspace(1.0, cond, n)) @ q.T


@pytest.mark.parametrize("name", NAMESPACES)
def test_lbfgs_reaches_the_minimiser_of_a_strictly_convex_quadratic(name: str) -> None:
    be = Backend.create(name)
    rng = np.random.default_rng(3)
    n = 60
    a_host = _spd(rng, n, 1e3)
    b_host = rng.normal(size=n)
    exact = np.linalg.solve(a_host, b_host)
    a, b = be.asarray(a_host), be.asarray(b_host)
    xp = be.xp

    def fun_grad(x):  # noqa: ANN001, ANN202
        ax = a @ x
        return float(xp.vecdot(x, ax) / 2 - xp.vecdot(b, x)), ax - b

    optimum = -0.5 * float(b_host @ exact)
    res = lbfgs.minimise(fun_grad, be.asarray(rng.normal(size=n)), xp, memory=5)
    x = be.to_numpy(res.x)
    # It stops when F no longer decreases in floating point: F is then accurate to rounding,
    # the point to about sqrt(eps * cond) (what the verifier's tolerances are built on).
    assert abs(res.f - optimum) <= 1e-13 * abs(optimum)
    assert np.linalg.norm(x - exact) <= 1e-6 * np.linalg.norm(exact)
    assert res.grad_norm <= 1e-5 * np.linalg.norm(b_host)
    assert res.evaluations >= res.iterations > 5  # it had to iterate, and counted honestly


@pytest.mark.parametrize("name", NAMESPACES)
@pytest.mark.parametrize("pairs", [3, 9])
@pytest.mark.parametrize("gradient_change", [False, True])
def test_compact_direction_equals_two_loop_recursion(
    name: str, pairs: int, gradient_change: bool
) -> None:
    """With memory 4, 3 pairs fill the buffer partly and 9 wrap it around twice.

    `gradient_change`: each `y` is the difference of the gradients of consecutive `direction`
    calls, so the history derives its inner products from the cached `[S; Y] g` (the path
    `minimise` takes); otherwise the gradients are unrelated and it computes them directly.
    """
    be = Backend.create(name)
    rng = np.random.default_rng(pairs)
    n, memory = 40, 4
    a = _spd(rng, n, 50.0)
    hist = lbfgs.CompactHistory(be.xp, memory)
    stored = []
    g = rng.normal(size=n)
    assert np.array_equal(be.to_numpy(hist.direction(be.asarray(g))[0]), -g)  # empty: steepest
    for _ in range(pairs):
        s = rng.normal(size=n)
        y = a @ s + 0.1 * rng.normal(size=n)  # perturbed, so not one exact quadratic
        assert s @ y > 0
        if gradient_change:
            previous, g = g, g + y
            y = g - previous  # exactly what the optimiser stores: new gradient minus old
        else:
            g = rng.normal(size=n)
        hist.push(be.asarray(s), be.asarray(y), float(s @ y), gradient_change=gradient_change)
        stored.append((be.asarray(s), be.asarray(y)))
        direction, gg = hist.direction(be.asarray(g))
        assert abs(gg - g @ g) <= 1e-13 * (g @ g)
        compact = be.to_numpy(direction)
        reference = be.to_numpy(lbfgs.two_loop_direction(be.xp, be.asarray(g), stored[-memory:]))
        assert np.linalg.norm(compact - reference) <= 1e-10 * np.linalg.norm(reference)
    hist.clear()
    assert np.array_equal(be.to_numpy(hist.direction(be.asarray(g))[0]), -g)


class _LayerByLayer(Objective):
    product_first = False  # type: ignore[assignment]


@pytest.mark.parametrize(("loss", "bias"), [("mse", "none"), ("mse", "free"), ("ce", "free")])
@pytest.mark.parametrize("depth", [2, 3, 5])
def test_product_first_derivatives_equal_layer_by_layer(loss: str, bias: str, depth: int) -> None:
    problem = Problem.build(
        counts="7,5,3", depth=depth, width=6, bias=bias, loss=loss, lambda_w="1/50"
    )
    xp = Backend.create().xp
    fast, slow = Objective(problem, xp), _LayerByLayer(problem, xp)
    assert fast.product_first and not slow.product_first
    rng = np.random.default_rng(depth)
    p = random_start(problem, rng, 1.0)
    if p.b is not None:
        p = Params(p.Ws, p.H, rng.normal(size=problem.K))
    f1, g1 = fast.value_and_grad(p)
    f2, g2 = slow.value_and_grad(p)
    assert abs(float(f1) - float(f2)) <= 1e-14 * abs(float(f2))
    for x, y in zip(g1.arrays(), g2.arrays(), strict=True):
        assert np.allclose(x, y, rtol=1e-12, atol=1e-14 * np.abs(y).max())
    # and both are the derivative: a central difference along a random direction
    v = random_start(problem, rng, 1.0)
    if v.b is not None:
        v = Params(v.Ws, v.H, rng.normal(size=problem.K))
    h = 1e-6
    plus = fast.value(p.zip_map(v, lambda a, d: a + h * d))
    minus = fast.value(p.zip_map(v, lambda a, d: a - h * d))
    directional = sum(float(np.sum(a * d)) for a, d in zip(g1.arrays(), v.arrays(), strict=True))
    assert abs((plus - minus) / (2 * h) - directional) <= 1e-6 * max(1.0, abs(directional))
    # Hessian-vector products: equal to each other and to the difference of gradients
    hv1, hv2 = fast.hvp(p, v), slow.hvp(p, v)
    for x, y in zip(hv1.arrays(), hv2.arrays(), strict=True):
        assert np.allclose(x, y, rtol=1e-12, atol=1e-13 * np.abs(y).max())
    _, gp = fast.value_and_grad(p.zip_map(v, lambda a, d: a + h * d))
    _, gm = fast.value_and_grad(p.zip_map(v, lambda a, d: a - h * d))
    for x, a, c in zip(hv1.arrays(), gp.arrays(), gm.arrays(), strict=True):
        assert np.allclose(x, (a - c) / (2 * h), rtol=1e-5, atol=1e-6 * np.abs(x).max())


@pytest.mark.parametrize("counts", ["30,30,30", "40,20,10"])
def test_a_run_reaches_the_exact_optimum_to_machine_precision(counts: str) -> None:
    """E2 needs relative accuracy ~1e-12: compare with the separable reduction's exact optimum."""
    problem = Problem.build(counts=counts, depth=3, width=8)
    exact = separable_reduction(problem)
    assert exact is not None
    objective = Objective(problem, Backend.create().xp)
    best = np.inf
    for i in range(3):
        start = random_start(problem, np.random.default_rng([11, i]), 1.0)
        end, info = descend(objective, start)
        assert info["objective"] == objective.value(end)  # what error_bound bounds
        best = min(best, info["objective"])
    assert abs(best - exact.bound) <= 1e-12 * exact.bound


def _same_runs(a: list, b: list) -> bool:
    return all(
        r.objective == s.objective
        and r.error_bound == s.error_bound > 0
        and r.iterations == s.iterations
        and r.scale == s.scale
        and all(
            np.array_equal(x, y) for x, y in zip(r.point.arrays(), s.point.arrays(), strict=True)
        )
        for r, s in zip(a, b, strict=True)
    )


def test_runs_are_determined_by_the_seed() -> None:
    problem = Problem.build(counts="6,4,3", depth=2, width=5)
    be = Backend.create()
    first = multistart(problem, be, restarts=3, seed=5, max_iter=200, jobs=1)
    again = multistart(problem, be, restarts=3, seed=5, max_iter=200, jobs=1)
    other = multistart(problem, be, restarts=3, seed=6, max_iter=200, jobs=1)
    assert _same_runs(first, again)
    assert not any(np.array_equal(r.point.H, s.point.H) for r, s in zip(first, other, strict=True))
    # run i starts from default_rng([seed, i]) whatever the other runs do
    flat = Flattener(problem, be.xp)
    s0 = random_start(problem, np.random.default_rng([5, 1]), first[1].scale)
    s1 = random_start(problem, np.random.default_rng([5, 1]), first[1].scale)
    assert np.array_equal(flat.flatten(s0), flat.flatten(s1))


def test_parallel_runs_equal_serial_runs() -> None:
    problem = Problem.build(counts="20,10,5,5", depth=3, width=8)
    be = Backend.create()
    serial = multistart(problem, be, restarts=4, seed=2, max_iter=400, jobs=1)
    parallel = multistart(problem, be, restarts=4, seed=2, max_iter=400, jobs=2)
    assert _same_runs(serial, parallel)
    assert [r.seed for r in parallel] == [0, 1, 2, 3]
