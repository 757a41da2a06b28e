"""Label smoothing (`--loss ls --smoothing alpha`): cross-entropy against the targets
`(1 - alpha) e_y + (alpha / K) 1`, evaluated by the engine's objective, batched objective and
exact enclosure, each against an implementation written here from the definition."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy.special import log_softmax

from ncverify.backend import Backend
from ncverify.model.batched import BatchedObjective
from ncverify.model.exact import enclose_objective
from ncverify.model.objective import Objective, Params
from ncverify.model.problem import Problem, ProblemError

NUMPY = Backend.create("numpy")


def problem(alpha: str = "0.1", **changes: object) -> Problem:
    given = dict(counts="3,2,4", depth=2, width=4, lambda_w="1e-2", lambda_h="2e-2", loss="ls")
    return Problem.build(**{**given, **changes, "smoothing": alpha})


def random_point(pr: Problem, rng: np.random.Generator, columns: int) -> Params:
    ws = tuple(rng.standard_normal(shape) for shape in pr.layer_shapes)
    return Params(ws, rng.standard_normal((pr.widths[0], columns)), None)


def by_definition(pr: Problem, p: Params) -> float:
    """`F` of the full problem: mean of `-sum_k q_k log softmax(z)_k` plus the weight decays."""
    z = p.H
    for w in p.Ws:
        z = w @ z
    alpha, k = float(pr.smoothing), pr.K
    labels = [c for c, n in enumerate(pr.counts) for _ in range(n)]
    q = np.full((k, pr.N), alpha / k)
    q[labels, range(pr.N)] += 1 - alpha
    loss = -np.sum(q * log_softmax(z, axis=0)) / pr.N
    decay = float(pr.lambda_h) / 2 * np.sum(p.H**2)
    decay += sum(float(lam) / 2 * np.sum(w**2) for lam, w in zip(pr.lambda_w, p.Ws, strict=True))
    return loss + decay


def test_the_value_is_cross_entropy_against_the_smoothed_labels() -> None:
    pr = problem()
    p = random_point(pr, np.random.default_rng(0), pr.N)
    obj = Objective(pr, np)
    assert abs(obj.value(p) - by_definition(pr, p)) <= 4 * obj.error_bound(p)


def test_it_differs_from_cross_entropy_by_alpha_times_the_centred_true_logit() -> None:
    # l_LS(z) = l_CE(z) + alpha (z_y - mean_k z_k): an identity of the definitions
    pr = problem("0.3")
    p = random_point(pr, np.random.default_rng(1), pr.N)
    ce = Objective(pr.with_(loss="ce", smoothing=None), np)
    z = ce.logits(p)
    labels = [c for c, n in enumerate(pr.counts) for _ in range(n)]
    shift = 0.3 * np.mean(z[labels, range(pr.N)] - z.mean(axis=0))
    obj = Objective(pr, np)
    assert abs(obj.value(p) - ce.value(p) - shift) <= 4 * (obj.error_bound(p) + ce.error_bound(p))


def test_gradient_and_curvature_match_finite_differences() -> None:
    pr = problem("0.2")
    rng = np.random.default_rng(2)
    p, v = random_point(pr, rng, pr.N), random_point(pr, rng, pr.N)
    obj = Objective(pr, np)

    def along(t: float) -> Params:
        return p.zip_map(v, lambda a, b: a + t * b)

    h = 1e-4
    slope = (obj.value(along(h)) - obj.value(along(-h))) / (2 * h)
    _, grad = obj.value_and_grad(p)
    directional = sum(float(np.sum(g * b)) for g, b in zip(grad.arrays(), v.arrays(), strict=True))
    assert math.isclose(slope, directional, rel_tol=1e-6)
    # the Hessian-vector product against the change of the gradient
    plus, minus = obj.value_and_grad(along(h))[1], obj.value_and_grad(along(-h))[1]
    hv = obj.hvp(p, v)
    for a, b, c in zip(plus.arrays(), minus.arrays(), hv.arrays(), strict=True):
        assert np.allclose((a - b) / (2 * h), c, rtol=1e-5, atol=1e-6 * np.abs(c).max())


def test_the_batched_objective_agrees_on_the_class_means() -> None:
    pr = problem("0.15", width=3)  # widths at most K: the batched layout keeps them
    rng = np.random.default_rng(3)
    points = [random_point(pr, rng, pr.K) for _ in range(3)]
    single = Objective(pr, np, parameterisation="class-means")
    batched = BatchedObjective(pr, np)
    rows = np.stack([batched.layout.pack([*(w[None] for w in p.Ws), p.H[None]], None, np)[0]
                     for p in points])  # fmt: skip
    values, grads = batched.value_and_grad(rows)
    for p, value, grad in zip(points, values, grads, strict=True):
        assert abs(value - single.value(p)) <= 4 * single.error_bound(p)
        _, g = single.value_and_grad(p)
        flat = np.concatenate([a.ravel() for a in g.arrays()])
        assert np.allclose(grad, flat, rtol=1e-10, atol=1e-12)


def test_the_exact_enclosure_contains_the_value() -> None:
    pr = problem("0.25")
    rng = np.random.default_rng(4)
    means = random_point(pr, rng, pr.K)
    full = Params(means.Ws, np.repeat(means.H, pr.counts, axis=1), None)
    enclosure = enclose_objective(pr, full)
    value = by_definition(pr, full)
    assert enclosure.a <= value + 1e-12 and value - 1e-12 <= enclosure.b
    assert float(enclosure.b - enclosure.a) < 1e-30


@pytest.mark.parametrize("backend", ["numpy", "torch", "array-api-strict"])
def test_every_backend_gives_the_same_value(backend: str) -> None:
    pytest.importorskip("torch" if backend == "torch" else "array_api_strict")
    be = Backend.create(backend)
    pr = problem("0.4")
    p = random_point(pr, np.random.default_rng(5), pr.N)
    obj = Objective(pr, be.xp, dtype=be.dtype, device=be.device)
    value = obj.value(p.map(be.asarray))
    assert abs(value - by_definition(pr, p)) <= 4 * Objective(pr, np).error_bound(p)


@pytest.mark.parametrize(
    ("alpha", "loss"), [("0", "ls"), ("1", "ls"), ("1.5", "ls"), ("0.1", "ce")]
)
def test_a_smoothing_outside_its_range_or_without_label_smoothing_is_bad_input(
    alpha: str, loss: str
) -> None:
    with pytest.raises(ProblemError):
        problem(alpha, loss=loss)
    with pytest.raises(ProblemError, match="alpha"):
        Problem.build(counts="2,2", depth=1, width=2, loss="ls")


def test_the_smoothing_is_read_exactly() -> None:
    assert problem("0.1").smoothing == Fraction(1, 10)
