"""The class-mean reduction (`ncverify.model.reduction`, docs/theory/model.md#the-class-mean-reduction).

Each mathematical fact the verifier relies on is tested on random instances (both losses, every
bias mode, any counts, depths 1-3), with the full objective as the reference:
- the lift `G -> G D^{-1} Y` is an isometry, and `to_class_means` inverts it;
- value: `F_red(W, G, b) = F(W, lift(G), b)`;
- Jensen: `F(W, H, b) >= F_red(W, G(H), b)` for any features `H`;
- gradient: at a lift the full gradient is itself collapsed and equals the lifted reduced one,
  so stationary points correspond and gradient norms agree;
- Hessian: at a lift it is block-diagonal, the reduced Hessian on the collapsed subspace and a
  within-class block `>= lambda_H I` on its complement;
- the reduced rounding-error bound bounds the error against an exact evaluation;
- optimiser runs in the two parameterisations reach the same values, and reduced end points
  lift to stationary points of the full problem;
- feature elimination (squared loss): the closed-form `(G*, b*)` minimises for given layers, the
  projected gradient is the derivative of the projected objective, and runs over the weights
  alone reach the values of full runs.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_objective import exact_objective

from ncverify.backend import Backend
from ncverify.evidence.optimize import ProjectedObjective, multistart
from ncverify.model.elimination import optimal_features
from ncverify.model.objective import Objective, Params, inner, norm
from ncverify.model.problem import Problem
from ncverify.model.reduction import class_mean_coordinates, is_lift, lift, to_class_means
from ncverify.testing import problems

NUMPY = Backend.create("numpy")
seeds = st.integers(0, 2**32 - 1)


def small(loss: str | None) -> st.SearchStrategy[Problem]:
    """Instances of every bias mode, bottlenecks included, small enough for many examples."""
    return problems(
        loss=loss,
        bias=None,
        max_classes=4,
        max_depth=3,
        max_width=5,
        max_samples=6,
        min_lambda="1e-3",
        max_lambda="1",
        allow_bottleneck=True,
    )


small_problems = small(None)


def objectives(problem: Problem) -> tuple[Objective, Objective]:
    full = Objective(problem, np)
    reduced = Objective(problem, np, parameterisation="class-means")
    return full, reduced


def random_point(problem: Problem, rng: np.random.Generator, columns: int) -> Params:
    ws = tuple(rng.normal(size=shape) for shape in problem.layer_shapes)
    h = rng.normal(size=(problem.widths[0], columns))
    b = None if problem.bias == "none" else rng.normal(size=problem.K)
    return Params(ws, h, b)


def within_class(problem: Problem, h: np.ndarray) -> np.ndarray:
    """`h` minus its class means: a direction orthogonal to every collapsed feature matrix."""
    return h - lift(problem.counts, Params((), class_mean_coordinates(problem.counts, h, np)), np).H


def close(a: float, b: float, scale: float) -> bool:
    return abs(a - b) <= 1e-10 * max(1.0, scale)


@given(small_problems, seeds)
def test_the_lift_is_an_isometry_and_the_reduction_inverts_it(problem: Problem, seed: int) -> None:
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(problem.widths[0], problem.K))
    h = lift(problem.counts, Params((), g), np).H
    assert h.shape == (problem.widths[0], problem.N) and is_lift(problem.counts, h, np)
    assert close(float(np.sum(h * h)), float(np.sum(g * g)), float(np.sum(g * g)))
    np.testing.assert_allclose(class_mean_coordinates(problem.counts, h, np), g, atol=1e-12)


@given(small_problems, seeds)
def test_the_reduced_value_is_the_value_at_the_lift(problem: Problem, seed: int) -> None:
    full, reduced = objectives(problem)
    p = random_point(problem, np.random.default_rng(seed), problem.K)
    value = full.value(lift(problem.counts, p, np))
    assert close(reduced.value(p), value, abs(value))


@given(small_problems, seeds)
def test_jensen_collapsing_the_features_never_increases_the_objective(
    problem: Problem, seed: int
) -> None:
    full, reduced = objectives(problem)
    p = random_point(problem, np.random.default_rng(seed), problem.N)
    value = full.value(p)
    collapsed = reduced.value(to_class_means(problem.counts, p, np))
    assert collapsed <= value + 1e-12 * max(1.0, abs(value))


@given(small_problems, seeds)
def test_at_a_lift_the_full_gradient_is_the_lifted_reduced_gradient(
    problem: Problem, seed: int
) -> None:
    full, reduced = objectives(problem)
    p = random_point(problem, np.random.default_rng(seed), problem.K)
    _, g_full = full.value_and_grad(lift(problem.counts, p, np))
    _, g_red = reduced.value_and_grad(p)
    scale = norm(g_full)
    # collapsed: the full gradient in H has no within-class part ...
    assert float(np.max(np.abs(within_class(problem, g_full.H)))) <= 1e-12 * max(1.0, scale)
    # ... and it is the lift of the reduced gradient (so the norms agree)
    lifted = lift(problem.counts, g_red, np)
    for a, c in zip(g_full.arrays(), lifted.arrays(), strict=True):
        np.testing.assert_allclose(a, c, atol=1e-12 * max(1.0, scale))
    assert close(norm(g_full), norm(g_red), scale)


@given(small_problems, seeds)
def test_at_a_lift_the_full_hessian_is_block_diagonal(problem: Problem, seed: int) -> None:
    full, reduced = objectives(problem)
    rng = np.random.default_rng(seed)
    p = random_point(problem, rng, problem.K)
    at = lift(problem.counts, p, np)
    u = random_point(problem, rng, problem.K)  # a direction in the collapsed subspace
    hu_full = full.hvp(at, lift(problem.counts, u, np))
    hu_red = reduced.hvp(p, u)
    scale = max(1.0, norm(hu_full))
    # the collapsed subspace is invariant, and the Hessian on it is the reduced one
    assert float(np.max(np.abs(within_class(problem, hu_full.H)))) <= 1e-11 * scale
    for a, c in zip(hu_full.arrays(), lift(problem.counts, hu_red, np).arrays(), strict=True):
        np.testing.assert_allclose(a, c, atol=1e-11 * scale)
    # a within-class direction (zero weights and bias) has curvature >= lambda_H
    v_h = within_class(problem, rng.normal(size=(problem.widths[0], problem.N)))
    v = Params(
        tuple(np.zeros(s) for s in problem.layer_shapes),
        v_h,
        None if problem.bias == "none" else np.zeros(problem.K),
    )
    curvature = float(inner(v, full.hvp(at, v)))
    assert curvature >= float(problem.lambda_h) * float(np.sum(v_h * v_h)) * (1 - 1e-10) - 1e-12
    # and no cross term with the collapsed directions
    assert abs(float(inner(v, hu_full))) <= 1e-10 * scale * math.sqrt(float(np.sum(v_h * v_h)))


# counts that are powers of four: 1 / sqrt(n) is a power of two, so the lift of float class-mean
# coordinates is exact and the full point's exact value is the reduced point's exact value
@given(
    st.lists(st.sampled_from([1, 4, 16]), min_size=2, max_size=3),
    st.sampled_from(["mse", "ce"]),
    st.sampled_from(["none", "free", "regularised"]),
    st.integers(1, 3),
    seeds,
    st.sampled_from(["float64", "float32"]),
)
@settings(max_examples=30)
def test_the_reduced_error_bound_bounds_the_rounding_error(
    counts: list[int], loss: str, bias: str, depth: int, seed: int, dtype: str
) -> None:
    problem = Problem.build(
        counts=counts,
        depth=depth,
        width=3,
        loss=loss,
        bias=bias,
        lambda_b="1/3" if bias == "regularised" else None,
        lambda_w="1e-2",
        lambda_h="3e-3",
    )
    backend = Backend.create("numpy", None, dtype)
    reduced = Objective(problem, backend.xp, dtype=backend.dtype, parameterisation="class-means")
    p = random_point(problem, np.random.default_rng(seed), problem.K).map(backend.asarray)
    computed, bound = reduced.value(p), reduced.error_bound(p)
    exact_lift = lift(problem.counts, p.map(lambda a: np.asarray(a, dtype=np.float64)), np)
    truth = exact_objective(problem, exact_lift)
    assert abs(mpmath.mpf(computed) - truth) <= bound
    assert bound <= 1e4 * backend.eps * max(1.0, abs(float(truth)))


INSTANCES = [
    Problem.build(counts="30,20,10,5", depth=2, width=6, lambda_w="1e-2", lambda_h="1e-2"),
    Problem.build(
        counts="12,7,3", depth=1, width=4, loss="ce", lambda_w="5e-3", lambda_h="5e-3", bias="free"
    ),
    Problem.build(
        counts="8,8,8", depth=3, width=5, lambda_w="2e-2", lambda_h="1e-2", lambda_b="1e-2"
    ),
    Problem.build(counts="9,4,2", depth=2, width=3, bias="free", lambda_h="1e-2"),
]


@pytest.mark.parametrize("parameterisation", ["class-means", "weights"])
def test_reduced_runs_reach_the_values_of_full_runs_and_lift_to_stationary_points(
    parameterisation: str,
) -> None:
    for problem in INSTANCES:
        if parameterisation == "weights" and problem.loss != "mse":
            continue  # features have a closed-form minimiser only for the squared loss
        full, _ = objectives(problem)
        best = {}
        for param in ("full", parameterisation):
            runs = multistart(problem, NUMPY, restarts=4, seed=1, jobs=1, parameterisation=param)
            best[param] = min(r.objective for r in runs)
        for run in runs:  # the reduced runs: one feature column per class, lifting to F's
            assert run.point.H.shape == (problem.widths[0], problem.K)
            lifted = lift(problem.counts, run.point, np)
            grad_loss, grad_reg = full.grad_parts(lifted)
            total = norm(grad_loss.zip_map(grad_reg, lambda a, c: a + c))
            assert total <= 1e-6 * (norm(grad_loss) + norm(grad_reg)) + 1e-12, problem
        assert abs(best["full"] - best[parameterisation]) <= 1e-9 * abs(best["full"]), problem


# ---- feature elimination (squared loss) -------------------------------------------------------
mse_problems = small("mse")


@given(mse_problems, seeds, st.floats(0.2, 3.0))
def test_eliminated_features_and_bias_are_the_minimiser_for_the_layers(
    problem: Problem, seed: int, scale: float
) -> None:
    """The closed form zeroes the gradient in `(G, b)`, and the objective there is below that of
    any other `(G, b)` (it is a strictly convex quadratic in them)."""
    reduced = Objective(problem, np, parameterisation="weights")
    rng = np.random.default_rng(seed)
    ws = tuple(scale * rng.normal(size=shape) for shape in problem.layer_shapes)
    p = optimal_features(reduced, ws)
    grad_loss, grad_reg = reduced.grad_parts(p)
    size = norm(grad_loss) + norm(grad_reg)
    assert float(np.max(np.abs(grad_loss.H + grad_reg.H))) <= 1e-10 * max(1.0, size)
    if p.b is not None:
        assert float(np.max(np.abs(grad_loss.b + grad_reg.b))) <= 1e-10 * max(1.0, size)
    else:
        assert problem.bias == "none"
    other = Params(ws, p.H + 1e-3 * rng.normal(size=p.H.shape), p.b)
    assert reduced.value(other) > reduced.value(p)


@given(mse_problems, seeds)
@settings(max_examples=25)
def test_the_projected_gradient_is_the_derivative_of_the_projected_objective(
    problem: Problem, seed: int
) -> None:
    """Envelope theorem: central differences of `W -> F(W, G*(W), b*(W))` along a random
    direction match the inner product with the projected gradient."""
    reduced = Objective(problem, np, parameterisation="weights")
    projected = ProjectedObjective(reduced)
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(size=r * c) for r, c in problem.layer_shapes])
    v = rng.normal(size=x.size)
    _, grad = projected(x)
    h = 1e-5
    fd = (projected(x + h * v)[0] - projected(x - h * v)[0]) / (2 * h)
    assert abs(fd - float(grad @ v)) <= 1e-6 * max(1.0, abs(fd), float(np.linalg.norm(grad)))


def test_feature_elimination_is_finite_where_a_plain_solve_fails_and_inf_where_p_overflows() -> (
    None
):
    """The ridge system `P P^T + N lambda_H I` is positive definite, but at the far end of a line
    search `P P^T` can swamp the shift in float64 (a solve then reports a singular matrix: seen on
    a random instance) or overflow.  The first must still give finite features, the second an
    infinite objective for the line search to step back from, neither an exception."""
    problem = Problem.build(counts="3,2", depth=1, width=2, lambda_w="1e-3", lambda_h="2e-4")
    reduced = Objective(problem, np, parameterisation="weights")
    big = (1e10 * np.ones((2, 2)),)  # rank one: P P^T + 1e-3 I is singular in float64
    gram = big[0] @ big[0].T + problem.N * float(problem.lambda_h) * np.eye(2)
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.solve(gram, np.eye(2))
    p = optimal_features(reduced, big)
    assert np.all(np.isfinite(p.H)) and np.isfinite(reduced.value(p))
    projected = ProjectedObjective(reduced)
    with np.errstate(over="ignore", invalid="ignore"):  # the overflow is the point here
        value, _ = projected(np.full(4, 1e200))
    assert value == np.inf
