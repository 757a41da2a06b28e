"""The contrastive problem's engine parts (`ncverify.model.supcon`, `ncverify.kinds.supcon`):
facts of the mathematics that would break if the value, its gradient, its exact enclosure or the
runs were wrong.  The loss is written again here from its definition, in 60-digit arithmetic and
through torch's automatic differentiation, as the independent implementations."""

from __future__ import annotations

import importlib.util
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ncverify.backend import Backend
from ncverify.model import supcon
from ncverify.model.objective import Params
from ncverify.model.problem import Problem, ProblemError

HAS_TORCH = importlib.util.find_spec("torch") is not None
NAMESPACES = ["numpy", "array-api-strict"] + (["torch"] if HAS_TORCH else [])


def problem(
    k: int = 3, n: int = 2, d: int = 3, tau: str = "0.5", counts: str | None = None
) -> Problem:
    if counts is not None:
        return Problem.build(counts=counts, depth=1, width=d, loss="supcon", temperature=tau)
    return Problem.build(classes=k, samples=n, depth=1, width=d, loss="supcon", temperature=tau)


def by_definition(p: Problem, h: np.ndarray) -> mpmath.mpf:
    """The mean over anchors of `-1/|P(i)| sum_p log(e^{s_ip} / sum_{a != i} e^{s_ia})`, with
    `s = <h_i, h_a> / (|h_i| |h_a| tau)`, in 60 digits."""
    y = [k for k, n in enumerate(p.counts) for _ in range(n)]
    with mpmath.workdps(60):
        cols = [[mpmath.mpf(float(x)) for x in h[:, i]] for i in range(h.shape[1])]
        norms = [mpmath.sqrt(mpmath.fsum(x * x for x in c)) for c in cols]
        tau = mpmath.mpf(p.temperature.numerator) / p.temperature.denominator

        def s(i: int, a: int) -> mpmath.mpf:
            dot = mpmath.fsum(x * z for x, z in zip(cols[i], cols[a], strict=True))
            return dot / (norms[i] * norms[a] * tau)

        total = mpmath.mpf(0)
        n = len(cols)
        for i in range(n):
            denominator = mpmath.fsum(mpmath.exp(s(i, a)) for a in range(n) if a != i)
            mine = [a for a in range(n) if a != i and y[a] == y[i]]
            total += -mpmath.fsum(
                mpmath.log(mpmath.exp(s(i, a)) / denominator) for a in mine
            ) / len(mine)
        return total / n


def test_the_problem_needs_its_temperature_and_nothing_else_has_one() -> None:
    with pytest.raises(ProblemError, match="needs its temperature"):
        Problem.build(classes=3, samples=2, depth=1, width=3, loss="supcon")
    with pytest.raises(ProblemError, match="belongs to the contrastive"):
        Problem.build(classes=3, samples=2, depth=1, width=3, loss="ce", temperature="1")
    with pytest.raises(ProblemError, match="at least 2 samples"):
        problem(counts="3,1,2")
    with pytest.raises(ProblemError, match="between 1/100 and 100"):
        problem(tau="1000")
    with pytest.raises(ProblemError, match="one layer"):
        Problem.build(classes=3, samples=2, depth=2, width=3, loss="supcon", temperature="1")
    assert problem().layer_shapes == []  # no classifier: the features are the point


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 4), st.integers(2, 3), st.integers(1, 4))
def test_the_value_is_the_definition_and_the_enclosure_holds_it(
    seed: int, k: int, n: int, d: int
) -> None:
    """Float value, exact enclosure and the definition's 60-digit value agree: the enclosure
    contains the latter, and the float value is within a few roundings of it."""
    p = problem(k, n, d, tau="0.3")
    h = np.random.default_rng(seed).standard_normal((d, p.N))
    want = by_definition(p, h)
    value, _, _ = supcon.value_grad_scale(p, h)
    box = supcon.enclose(p, Params((), h))
    assert box.a <= want <= box.b
    assert float(box.b - box.a) <= 1e-40 * max(1.0, abs(float(want)))
    assert abs(value - float(want)) <= 1e-12 * max(1.0, abs(float(want)))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 4), st.integers(2, 4))
def test_the_gradient_is_that_of_the_value_and_tangent(seed: int, k: int, d: int) -> None:
    """Central differences of the value along a random direction equal the gradient's slope,
    and each column of the gradient is orthogonal to its feature (the value is invariant to
    every feature's scale)."""
    p = problem(k, 3, d, counts="3,2,4" if k == 3 else None)
    rng = np.random.default_rng(seed)
    h, v = rng.standard_normal((d, p.N)), rng.standard_normal((d, p.N))
    _, g, _ = supcon.value_grad_scale(p, h)
    t = 1e-6
    up, down = (supcon.value_grad_scale(p, h + s * t * v)[0] for s in (1, -1))
    slope = float(np.sum(g * v))
    assert abs((up - down) / (2 * t) - slope) <= 1e-5 * (
        np.linalg.norm(g) * np.linalg.norm(v) + 1e-12
    )
    radial = np.abs(np.sum(g * h, axis=0))
    assert np.all(radial <= 1e-12 * np.linalg.norm(g, axis=0) * np.linalg.norm(h, axis=0) + 1e-300)
    scaled = h * rng.uniform(0.5, 3.0, size=p.N)
    assert supcon.value_grad_scale(p, scaled)[0] == pytest.approx(
        supcon.value_grad_scale(p, h)[0], rel=1e-13
    )


@pytest.mark.skipif(not HAS_TORCH, reason="torch is the independent differentiator")
@pytest.mark.parametrize("name", NAMESPACES)
def test_the_gradient_is_torchs_automatic_derivative_of_the_definition(name: str) -> None:
    """On every array namespace: the value and gradient of the module against torch's automatic
    differentiation of the loss written here.  (The kind has no curvature check, so the loss has
    no Hessian-vector product to test: its runs are L-BFGS and its E1 is first-order.)"""
    import torch

    p = problem(counts="3,2,4", d=3, tau="0.7")
    rng = np.random.default_rng(5)
    h = rng.standard_normal((3, p.N))
    y = torch.tensor([k for k, n in enumerate(p.counts) for _ in range(n)])
    x = torch.tensor(h, requires_grad=True)
    u = x / x.norm(dim=0, keepdim=True)
    s = u.T @ u / 0.7
    eye = torch.eye(p.N, dtype=torch.bool)
    log_prob = s - torch.logsumexp(s.masked_fill(eye, -torch.inf), dim=1, keepdim=True)
    same = (y[:, None] == y[None, :]) & ~eye
    loss = -((log_prob * same).sum(dim=1) / same.sum(dim=1)).mean()
    loss.backward()
    be = Backend.create(name)
    value, g, _ = supcon.value_grad_scale(p, be.asarray(h))
    assert value == pytest.approx(loss.item(), rel=1e-13)
    ref = x.grad.numpy()
    np.testing.assert_allclose(be.to_numpy(g), ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())


def test_the_enclosure_refuses_what_is_not_a_point() -> None:
    p = problem()
    h = np.ones((3, p.N))
    h[:, 2] = 0.0
    assert supcon.enclose(p, Params((), h)) is None
    h[:, 2] = np.nan
    assert supcon.enclose(p, Params((), h)) is None


def test_collapse_onto_a_simplex_gives_the_bound_and_random_points_cost_more() -> None:
    """The project's bound (docs/theory/supcon.md#bound), computed here from its formula: the
    collapsed simplex attains it and 200 random points do not go below it."""
    k, n, tau = 3, 3, Fraction(2, 5)
    p = problem(k, n, 2, tau=str(tau))
    bound = float(mpmath.log(n - 1 + n * (k - 1) * mpmath.exp(-k / ((k - 1) * float(tau)))))
    angles = 2 * np.pi * np.arange(k) / k
    vertices = np.stack([np.cos(angles), np.sin(angles)])  # three unit vectors at 120 degrees
    at = supcon.value_grad_scale(p, np.repeat(vertices, n, axis=1))[0]
    assert at == pytest.approx(bound, rel=1e-13)
    rng = np.random.default_rng(0)
    for _ in range(200):
        assert supcon.value_grad_scale(p, rng.standard_normal((2, p.N)))[0] >= bound * (1 - 1e-13)


def test_a_collapsed_point_is_enclosed_class_by_class_as_the_definition_says() -> None:
    """Class-constant features (any size) are enclosed from one column per class: the interval
    holds the definition's 60-digit value over every sample."""
    p = problem(counts="4,2,3", d=3, tau="0.4")
    rng = np.random.default_rng(9)
    h = np.repeat(rng.standard_normal((3, p.K)), p.counts, axis=1)
    box = supcon.enclose(p, Params((), h))
    want = by_definition(p, h)
    assert box.a <= want <= box.b and float(box.b - box.a) <= 1e-40
