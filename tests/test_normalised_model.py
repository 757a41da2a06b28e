"""The normalised problem's engine parts (`ncverify.model.normalised`, `ncverify.evidence.sphere`):
facts of the mathematics that would break if the value, its gradient, its exact enclosure or the
runs were wrong."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ncverify.evidence.sphere import sphere_runs
from ncverify.model import normalised
from ncverify.model.objective import Params
from ncverify.model.problem import Problem, ProblemError


def problem(k: int = 3, n: int = 2, d: int = 3, r_w: str = "1", r_h: str = "3") -> Problem:
    return Problem.build(
        classes=k, samples=n, depth=1, width=d, loss="normalised-ce", radius_w=r_w, radius_h=r_h
    )


def jensen_bound(k: int, c: float) -> float:
    """The project's own lower bound for balanced classes (docs/theory/normalised.md): Jensen on
    the exponentials, then on the convex increasing `log(1 + (K-1) e^t)`, then Cauchy-Schwarz on
    `sum_k ||K w_k - sum_j w_j||`, which is at most `K^2 r_W`: the value is at least
    `log(1 + (K - 1) exp(-c K / (K - 1)))` with `c = r_W r_H`."""
    return math.log1p((k - 1) * math.exp(-c * k / (k - 1)))


def test_the_problem_needs_its_radii_and_nothing_else_has_them() -> None:
    with pytest.raises(ProblemError, match="both radii"):
        Problem.build(classes=3, samples=2, depth=1, width=3, loss="normalised-ce")
    with pytest.raises(ProblemError, match="radii belong"):
        Problem.build(classes=3, samples=2, depth=1, width=3, loss="ce", radius_w=1, radius_h=1)
    with pytest.raises(ProblemError, match="one layer"):
        problem().with_(depth=2, widths=(3, 3), lambda_w=problem().lambda_w * 2)
    assert problem().radius_h == Fraction(3)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 5), st.integers(1, 4))
def test_the_gradient_is_that_of_the_value(seed: int, k: int, d: int) -> None:
    """Central differences of the value along a random direction equal the gradient's slope."""
    p = problem(k, 2, d)
    rng = np.random.default_rng(seed)
    w, h = rng.standard_normal((k, d)), rng.standard_normal((d, p.N))
    weights = np.full(p.N, 1 / p.N)
    _, gw, gh = normalised.value_and_grad(p, w, h, weights)
    vw, vh = rng.standard_normal((k, d)), rng.standard_normal((d, p.N))
    t = 1e-6
    up = normalised.value_and_grad(p, w + t * vw, h + t * vh, weights)[0]
    down = normalised.value_and_grad(p, w - t * vw, h - t * vh, weights)[0]
    slope = float(np.sum(gw * vw) + np.sum(gh * vh))
    scale = float(np.linalg.norm(gw) * np.linalg.norm(vw) + np.linalg.norm(gh) * np.linalg.norm(vh))
    assert abs((up - down) / (2 * t) - slope) <= 1e-5 * (scale + 1e-12)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.1, 10.0))
def test_the_value_is_that_of_the_projection(seed: int, factor: float) -> None:
    """Rescaling a row or a column leaves the value unchanged, and the gradient is tangent:
    orthogonal to the rows of W and to the columns of H."""
    p = problem()
    rng = np.random.default_rng(seed)
    w, h = rng.standard_normal((p.K, 3)), rng.standard_normal((3, p.N))
    weights = np.full(p.N, 1 / p.N)
    value, gw, gh = normalised.value_and_grad(p, w, h, weights)
    w2, h2 = w.copy(), h.copy()
    w2[0] *= factor
    h2[:, 1] *= factor
    assert normalised.value_and_grad(p, w2, h2, weights)[0] == pytest.approx(value, rel=1e-12)
    assert np.abs(np.sum(gw * w, axis=1)).max() <= 1e-12 * np.abs(gw).sum() * np.abs(w).sum()
    assert np.abs(np.sum(gh * h, axis=0)).max() <= 1e-12 * np.abs(gh).sum() * np.abs(h).sum()


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_the_exact_enclosure_contains_the_float_value(seed: int) -> None:
    p = problem()
    rng = np.random.default_rng(seed)
    point = Params((rng.standard_normal((p.K, 3)),), rng.standard_normal((3, p.N)))
    value = normalised.value_and_grad(p, point.Ws[0], point.H, np.full(p.N, 1 / p.N))[0]
    box = normalised.enclose(p, point)
    slack = 64 * np.finfo(float).eps * (1 + abs(value))
    assert float(box.a) - slack <= value <= float(box.b) + slack
    assert float(box.b) - float(box.a) <= 1e-40 * (1 + abs(value))


def test_one_feature_per_class_has_the_value_of_its_lift() -> None:
    """The samples of a class meet the same loss: repeated features cost what one does, with the
    class's weight."""
    p = Problem.build(
        counts="3,1,2", depth=1, width=3, loss="normalised-ce", radius_w=2, radius_h="0.5"
    )
    rng = np.random.default_rng(0)
    w, g = rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    reduced = normalised.value_and_grad(p, w, g, normalised.class_weights(p))[0]
    full = np.repeat(g, p.counts, axis=1)
    lifted = normalised.value_and_grad(p, w, full, np.full(p.N, 1 / p.N))[0]
    assert reduced == pytest.approx(lifted, rel=1e-13)
    exact = normalised.enclose(p, Params((w,), full))
    assert float(exact.a) <= lifted * (1 + 1e-12) and lifted * (1 - 1e-12) <= float(exact.b)


@pytest.mark.parametrize(("k", "r_h"), [(2, "2"), (3, "4"), (4, "1"), (5, "10")])
def test_no_run_goes_below_the_bound_and_every_run_reaches_it(k: int, r_h: str) -> None:
    """Balanced classes, width K - 1 (enough for a simplex; 2 at least: a sphere in one
    dimension is two points, where no descent can move): the bound is attained, by the simplex
    ETF; every run ends on it, none below (it is a lower bound for every point)."""
    p = problem(k, 2, max(2, k - 1), "1", r_h)
    bound = jensen_bound(k, float(r_h))
    for run in sphere_runs(p, restarts=4, seed=1):
        exact = normalised.enclose(p, Params((run.w,), run.g))
        assert float(exact.b) >= bound * (1 - 1e-12)
        assert float(exact.a) <= bound * (1 + 1e-6)
