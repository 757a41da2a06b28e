"""The optimiser: L-BFGS (compact representation), the product-first gradient, multistart.

Facts checked, each of which fails if the code is wrong:
- on a strictly convex quadratic L-BFGS reaches the unique minimiser to rounding, on numpy and on
  array-api-strict (which refuses any hidden conversion to numpy);
- the compact representation gives the same direction as the classical two-loop recursion,
  before and after the history wraps around;
- the product-first gradient equals the layer-by-layer gradient (and finite differences);
- on a real instance a run reaches the exact optimum of the separable reduction to ~1e-12;
- runs are determined by the seed, and worker processes return bit-identical runs;
- without continuation a run is the single descent from its random start, bit for bit, and with
  it a run's point is what replaying its recorded descents gives (what `nc_trace` relies on);
- near a collapse threshold the continuation in lambda reaches the exact optimum where the
  single descent mostly stops at the zero point or with modes missing, and beyond it (the
  optimum the zero point, or some classes collapsed) it still reaches the optimum.
"""

from __future__ import annotations

import numpy as np
import pytest

import theorems
from ncverify.backend import Backend
from ncverify.evidence import lbfgs
from ncverify.evidence.certificates import separable_reduction
from ncverify.evidence.optimize import (
    DEFAULT_CONTINUATION,
    Continuation,
    Flattener,
    Objectives,
    descend,
    multistart,
    random_start,
    replay,
    run_scales,
    scaled_problem,
)
from ncverify.model.objective import Objective, Params
from ncverify.model.problem import Problem

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
        and r.continuation == s.continuation
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
    assert [r.index for r in parallel] == [0, 1, 2, 3]


def test_parallel_runs_with_continuation_equal_serial_runs() -> None:
    """On an instance where runs keep candidates from different descents (after the descent at
    lambda / 8 alone, or after a rung of raised lambdas too), so both kinds are compared."""
    problem = Problem.build(
        counts="40,20,10,10", depth=3, width=8, lambda_w="0.025", lambda_h="0.025"
    )
    be = Backend.create()
    serial = multistart(problem, be, restarts=6, seed=3, jobs=1)
    parallel = multistart(problem, be, restarts=6, seed=3, jobs=2)
    assert _same_runs(serial, parallel)
    assert all(r.continuation[:1] == DEFAULT_CONTINUATION.down for r in serial)
    assert len({len(r.continuation) for r in serial}) > 1


def test_without_continuation_a_run_is_one_descent_from_its_random_start() -> None:
    problem = Problem.build(counts="6,4,3", depth=3, width=5, lambda_w="1/50")
    be = Backend.create()
    runs = multistart(problem, be, restarts=4, seed=7, jobs=1, continuation=None)
    objective = Objective(problem, be.xp)
    for i, (run, scale) in enumerate(zip(runs, run_scales((0.5, 1.0, 2.0), 4), strict=True)):
        start = random_start(problem, np.random.default_rng([7, i]), scale)
        end, info = descend(objective, start)
        assert run.continuation == () and run.scale == scale
        assert run.objective == info["objective"] and run.iterations == info["iterations"]
        for a, b in zip(run.point.arrays(), end.arrays(), strict=True):
            assert np.array_equal(a, b)


def test_a_run_with_continuation_is_its_recorded_descents_replayed() -> None:
    """`replay` of `Run.continuation` from the run's start ends at the run's point, bit for bit,
    and its last descent is on the true problem (so `Run.objective` is the true objective)."""
    problem = Problem.build(
        classes=4, samples=100, depth=3, width=16, lambda_w="0.03", lambda_h="0.03"
    )
    be = Backend.create()
    runs = multistart(problem, be, restarts=3, seed=1, jobs=1)
    objectives = Objectives(problem, be)
    for i, run in enumerate(runs):
        start = random_start(problem, np.random.default_rng([1, i]), run.scale)
        factors: list[float] = []

        def seen(factor: float, it: int, value: float, p: Params, into: list = factors) -> None:
            into.append(factor)

        end, info = replay(objectives, start, run.continuation, DEFAULT_CONTINUATION, callback=seen)
        assert info["objective"] == run.objective == objectives(1.0).value(run.point)
        pairs = zip(end.arrays(), run.point.arrays(), strict=True)
        assert all(np.array_equal(a, b) for a, b in pairs)
        assert run.iterations >= info["iterations"] > 0
        assert factors[-1] == 1.0 and set(factors) <= {*run.continuation, 1.0}


def test_scaled_problem_scales_every_lambda_exactly() -> None:
    problem = Problem.build(
        classes=3,
        samples=2,
        depth=2,
        width=3,
        lambda_w="1/50,3/100",
        lambda_h="1e-3",
        lambda_b="0.1",
    )
    half = scaled_problem(problem, 0.125)
    assert half.lambda_w == tuple(lam / 8 for lam in problem.lambda_w)
    assert half.lambda_h == problem.lambda_h / 8 and half.lambda_b == problem.lambda_b / 8
    assert half.counts == problem.counts and half.widths == problem.widths
    assert scaled_problem(problem, 1.0) is problem
    with pytest.raises(ValueError):
        Continuation(down=(2.0,))
    with pytest.raises(ValueError):
        Continuation(up=(0.5,))


def _hits(runs: list, optimum: float) -> int:
    """Runs at the exact optimum (to 1e-10 relative on top of their rounding-error bound)."""
    return sum(abs(r.objective - optimum) <= 1e-10 * optimum + r.error_bound for r in runs)


def test_continuation_reaches_the_optimum_just_below_the_collapse_threshold() -> None:
    """Balanced, K = 4, n = 100, depth 3, width 16, lambda 0.02 (the threshold is 0.02152):
    from most random starts a single descent ends at the zero point, whose basin grows near the
    threshold; descending at lambda / 8 first reaches the alive optimum from most of them."""
    problem = Problem.build(
        classes=4, samples=100, depth=3, width=16, lambda_w="0.02", lambda_h="0.02"
    )
    exact = separable_reduction(problem)
    assert exact is not None and exact.bound < 0.5  # alive: below the zero point's F = 1/2
    be = Backend.create()
    with_it = multistart(problem, be, restarts=16, seed=0, jobs=1)
    without = multistart(problem, be, restarts=16, seed=0, jobs=1, continuation=None)
    assert all(r.objective >= exact.bound - 1e-12 for r in with_it + without)
    assert _hits(with_it, exact.bound) >= 12
    assert _hits(without, exact.bound) < 12  # the instance is hard for a single descent


@pytest.mark.parametrize(
    ("counts", "lam"),
    [
        ("100,100,100,100", "0.03"),  # beyond the threshold: the optimum is the zero point
        ("40,20,10,10", "0.025"),  # the two small classes collapse, the others stay alive
    ],
)
def test_continuation_still_reaches_optima_with_collapsed_classes(counts: str, lam: str) -> None:
    """Descending at lambda / 8 keeps alive modes that are only local minima at the true lambda
    (between the threshold and the fold); the rungs at raised lambdas collapse them."""
    problem = Problem.build(counts=counts, depth=3, width=8, lambda_w=lam, lambda_h=lam)
    exact = separable_reduction(problem)
    assert exact is not None
    be = Backend.create()
    runs = multistart(problem, be, restarts=8, seed=0, jobs=1)
    assert all(r.objective >= exact.bound - 1e-12 for r in runs)
    assert _hits(runs, exact.bound) >= 6
    # and the best run keeps the classes the claim says survive (logits of the class means)
    best = min(runs, key=lambda r: r.objective)
    w = best.point.Ws[2] @ best.point.Ws[1] @ best.point.Ws[0]
    ends = np.cumsum(problem.counts)
    means = [
        w @ best.point.H[:, e - n : e].mean(axis=1)
        for e, n in zip(ends, problem.counts, strict=True)
    ]
    alive = [k for k, m in enumerate(means) if np.linalg.norm(m) > 1e-6]
    predicted = theorems.get("mse-imbalanced-biasfree").closed_form(problem)
    assert alive == [k for k, c in enumerate(predicted.classes) if c.regime.value == "alive"]
