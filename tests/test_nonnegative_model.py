"""The problem with non-negative features (`ncverify.model.nonnegative`, `ncverify.kinds.nonnegative`):
facts of the mathematics that would break if its value, gradient, the conditions of a minimum on
the orthant or its exact enclosure were wrong.  The objective is written again here from its
definition, over every sample."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ncverify.model import nonnegative
from ncverify.model.objective import Params
from ncverify.model.problem import Problem, ProblemError


def problem(counts: str = "3,2,4", d: int = 3, lam_w: str = "0.01", lam_h: str = "0.02") -> Problem:
    return Problem.build(
        counts=counts, depth=1, width=d, lambda_w=lam_w, lambda_h=lam_h, loss="nonnegative-ce"
    )


def by_definition(p: Problem, w: np.ndarray, h: np.ndarray) -> float:
    """`(1/N) sum_i CE(W h_i, y_i) + lambda_W/2 |W|^2 + lambda_H/2 |H|^2`, every sample."""
    y = np.repeat(np.arange(p.K), p.counts)
    z = w @ h
    lse = np.log(np.sum(np.exp(z - z.max(axis=0)), axis=0)) + z.max(axis=0)
    loss = np.mean(lse - z[y, np.arange(p.N)])
    return float(
        loss + float(p.lambda_w[0]) / 2 * np.sum(w * w) + float(p.lambda_h) / 2 * np.sum(h * h)
    )


def test_the_problem_has_one_layer_and_no_bias() -> None:
    with pytest.raises(ProblemError, match="one layer, no bias"):
        Problem.build(counts="3,2", depth=2, width=3, loss="nonnegative-ce")
    with pytest.raises(ProblemError, match="one layer, no bias"):
        Problem.build(counts="3,2", depth=1, width=3, loss="nonnegative-ce", bias="free")


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 5))
def test_the_reduced_value_and_gradient_are_those_of_the_definition(seed: int, d: int) -> None:
    """At class-constant features the reduced value is the definition's, and its gradient is
    the slope of central differences along a random direction."""
    p = problem(d=d)
    rng = np.random.default_rng(seed)
    w, hbar = rng.standard_normal((p.K, d)), rng.random((d, p.K))
    value, gw, gh, _ = nonnegative.value_grad(p, w, hbar)
    assert value == pytest.approx(by_definition(p, w, np.repeat(hbar, p.counts, axis=1)), rel=1e-12)
    vw, vh = rng.standard_normal(w.shape), rng.standard_normal(hbar.shape)
    t = 1e-6
    up = nonnegative.value_grad(p, w + t * vw, hbar + t * vh)[0]
    down = nonnegative.value_grad(p, w - t * vw, hbar - t * vh)[0]
    slope = float(np.sum(gw * vw) + np.sum(gh * vh))
    scale = np.linalg.norm(gw) * np.linalg.norm(vw) + np.linalg.norm(gh) * np.linalg.norm(vh)
    assert abs((up - down) / (2 * t) - slope) <= 1e-5 * scale


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_the_residual_is_the_steepest_descent_that_stays_on_the_orthant(seed: int) -> None:
    """At a point with some zero feature entries, the steepest feasible descent direction (the
    negative gradient, with a zero entry allowed only to grow) lowers F at the rate residual^2:
    the residual vanishes exactly where no feasible direction descends to first order."""
    p = problem()
    rng = np.random.default_rng(seed)
    w, hbar = rng.standard_normal((p.K, 3)), rng.random((3, p.K))
    hbar[rng.random(hbar.shape) < 0.5] = 0.0
    _, gw, gh, _ = nonnegative.value_grad(p, w, hbar)
    vw = -gw
    vh = np.where(hbar > 0, -gh, np.maximum(-gh, 0.0))  # a zero entry may only grow
    residual, _ = nonnegative.kkt_residual(p, w, hbar)
    t = 1e-7
    rate = (
        nonnegative.value_grad(p, w + t * vw, hbar + t * vh)[0]
        - nonnegative.value_grad(p, w, hbar)[0]
    ) / t
    assert rate == pytest.approx(-(residual**2), rel=1e-3, abs=1e-9 * (1 + residual**2))


def test_the_enclosure_holds_the_value_and_refuses_a_negative_entry() -> None:
    p = problem()
    rng = np.random.default_rng(3)
    w, hbar = rng.standard_normal((p.K, 3)), rng.random((3, p.K))
    box = nonnegative.enclose(p, Params((w,), hbar))
    value = by_definition(p, w, np.repeat(hbar, p.counts, axis=1))
    assert float(box.a) <= value * (1 + 1e-12) and value * (1 - 1e-12) <= float(box.b)
    hbar[1, 2] = -1e-300
    assert nonnegative.enclose(p, Params((w,), hbar)) is None
