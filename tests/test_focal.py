"""Focal loss (`--loss focal --focusing gamma`): `-(1 - p_y)^gamma log p_y`, evaluated by the
engine's objective, batched objective and exact enclosure, each against an implementation
written here from the definition; its gradient and Hessian-vector products against finite
differences of that definition (torch's automatic differentiation of it, on every backend:
tests/test_losses_autograd.py)."""

from __future__ import annotations

import importlib.util
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import log_softmax
from typer.testing import CliRunner

from ncverify.app.cli import app
from ncverify.backend import Backend
from ncverify.model.batched import BatchedObjective
from ncverify.model.exact import enclose_objective
from ncverify.model.objective import Objective, Params
from ncverify.model.problem import Problem, ProblemError
from ncverify.model.reduction import unavailable

HAS_TORCH = importlib.util.find_spec("torch") is not None
NAMESPACES = ["numpy", "array-api-strict"] + (["torch"] if HAS_TORCH else [])


def problem(gamma: str = "2", **changes: object) -> Problem:
    given = dict(counts="3,2,4", depth=2, width=4, lambda_w="1e-2", lambda_h="2e-2", loss="focal")
    return Problem.build(**{**given, **changes, "focusing": gamma})


def random_point(pr: Problem, rng: np.random.Generator, columns: int, scale: float = 1.0) -> Params:
    ws = tuple(scale * rng.standard_normal(shape) for shape in pr.layer_shapes)
    return Params(ws, scale * rng.standard_normal((pr.widths[0], columns)), None)


def by_definition(pr: Problem, p: Params) -> float:
    """`F` of the full problem: the mean of `-(1 - p_y)^gamma log p_y` plus the weight decays."""
    z = p.H
    for w in p.Ws:
        z = w @ z
    labels = [c for c, n in enumerate(pr.counts) for _ in range(n)]
    log_p = log_softmax(z, axis=0)[labels, range(pr.N)]
    loss = np.mean(-((1 - np.exp(log_p)) ** float(pr.focusing)) * log_p)
    decay = float(pr.lambda_h) / 2 * np.sum(p.H**2)
    decay += sum(float(lam) / 2 * np.sum(w**2) for lam, w in zip(pr.lambda_w, p.Ws, strict=True))
    return float(loss + decay)


def flat(p: Params) -> np.ndarray:
    return np.concatenate([np.asarray(a).ravel() for a in p.arrays()])


def along(p: Params, v: Params, t: float) -> Params:
    return p.zip_map(v, lambda a, b: a + t * b)


# ---- the value ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMESPACES)
def test_the_value_is_the_focal_loss_on_every_backend(name: str) -> None:
    be = Backend.create(name)
    pr = problem("1.5")
    p = random_point(pr, np.random.default_rng(0), pr.N)
    obj = Objective(pr, be.xp, dtype=be.dtype, device=be.device)
    value = obj.value(p.map(be.asarray))
    assert abs(value - by_definition(pr, p)) <= 4 * Objective(pr, np).error_bound(p)


def test_at_gamma_1_it_is_cross_entropy_weighted_by_the_others_share() -> None:
    # -(1 - p_y) log p_y: an identity of the definitions, against cross-entropy's per-sample terms
    pr = problem("1", counts="1,1", depth=1, width=2)
    p = random_point(pr, np.random.default_rng(1), pr.N)
    z = p.Ws[0] @ p.H
    ce = -log_softmax(z, axis=0)[[0, 1], [0, 1]]
    expected = np.mean((1 - np.exp(-ce)) * ce)
    loss, _ = Objective(pr, np).parts(p)
    assert math.isclose(loss, expected, rel_tol=1e-12)


@given(st.integers(0, 2**32 - 1), st.sampled_from([0.3, 1.0, 3.0]))
def test_focal_loss_never_exceeds_cross_entropy(seed: int, scale: float) -> None:
    # (1 - p_y)^gamma <= 1: the focal loss of every point is at most its cross-entropy
    pr = problem("2.5")
    p = random_point(pr, np.random.default_rng(seed), pr.N, scale)
    focal_loss, _ = Objective(pr, np).parts(p)
    ce_loss, _ = Objective(pr.with_(loss="ce", focusing=None), np).parts(p)
    assert focal_loss <= ce_loss * (1 + 1e-12)


# ---- derivatives ----------------------------------------------------------------------------------
@given(st.integers(0, 2**32 - 1), st.sampled_from(["1", "2", "3.5"]))
def test_gradient_and_curvature_match_finite_differences_of_the_definition(
    seed: int, gamma: str
) -> None:
    pr = problem(gamma)
    rng = np.random.default_rng(seed)
    p, v = random_point(pr, rng, pr.N), random_point(pr, rng, pr.N)
    obj = Objective(pr, np)
    h = 1e-4
    f = [by_definition(pr, along(p, v, t)) for t in (-2 * h, -h, h, 2 * h)]
    slope = (8 * (f[2] - f[1]) - (f[3] - f[0])) / (12 * h)
    directional = float(flat(obj.value_and_grad(p)[1]) @ flat(v))
    assert math.isclose(slope, directional, rel_tol=1e-6, abs_tol=1e-9)
    # the Hessian-vector product against the change of the engine's gradient
    plus, minus = (
        flat(obj.value_and_grad(along(p, v, h))[1]),
        flat(obj.value_and_grad(along(p, v, -h))[1]),
    )
    hv = flat(obj.hvp(p, v))
    assert np.allclose((plus - minus) / (2 * h), hv, rtol=1e-5, atol=1e-6 * np.abs(hv).max())


def test_focal_loss_is_not_convex_in_the_logits() -> None:
    # gamma = 2, two classes, logits (m, 0) with label 0: the loss of the margin is
    # l(m) = -(1 - s(m))^2 log s(m), s the logistic function, and l''(m) < 0 at m = -3 (a
    # misclassified sample)
    def loss(m: float) -> float:
        return -((1 - 1 / (1 + math.exp(-m))) ** 2) * math.log(1 / (1 + math.exp(-m)))

    h = 1e-3
    second = (loss(-3 + h) - 2 * loss(-3) + loss(-3 - h)) / h**2
    assert second < 0
    # the engine's Hessian says the same: W = I, h_0 = (-3, 0), direction (1, 0) in h_0
    pr = Problem.build(counts="1,1", depth=1, width=2, lambda_w="1e-9", lambda_h="1e-9",
                       loss="focal", focusing="2")  # fmt: skip
    p = Params((np.eye(2),), np.array([[-3.0, 0.0], [0.0, 3.0]]), None)
    v = Params((np.zeros((2, 2)),), np.array([[1.0, 0.0], [0.0, 0.0]]), None)
    curvature = float(flat(Objective(pr, np).hvp(p, v)) @ flat(v))
    assert math.isclose(curvature, second / 2, rel_tol=1e-4)  # the sample's weight is 1/N = 1/2


# ---- the class-mean problem and the exact enclosure -------------------------------------------
def test_the_batched_objective_agrees_on_the_class_means() -> None:
    pr = problem("2", width=3)  # widths at most K: the batched layout keeps them
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
        assert np.allclose(grad, flat(g), rtol=1e-10, atol=1e-12)


def test_the_exact_enclosure_contains_the_value() -> None:
    pr = problem("2.5")
    rng = np.random.default_rng(4)
    means = random_point(pr, rng, pr.K)
    full = Params(means.Ws, np.repeat(means.H, pr.counts, axis=1), None)
    enclosure = enclose_objective(pr, full)
    value = by_definition(pr, full)
    assert enclosure.a <= value + 1e-12 and value - 1e-12 <= enclosure.b
    assert float(enclosure.b - enclosure.a) < 1e-30


@given(st.integers(0, 2**32 - 1), st.sampled_from([0.5, 2.0]))
def test_moving_each_class_onto_its_best_sample_never_raises_f(seed: int, scale: float) -> None:
    """Given the weights, every sample of class k pays `l_k(W h) + lambda_H/2 ||h||^2`, one
    function for the whole class: replacing each sample by the class's best one lowers every
    term to the least, so `F` never rises (the step that keeps the optimal value when the
    samples are collapsed, with no convexity)."""
    pr = problem("2", counts="4,3,5", depth=1)
    p = random_point(pr, np.random.default_rng(seed), pr.N, scale)
    obj = Objective(pr, np)
    z = p.Ws[0] @ p.H
    labels = np.array([c for c, n in enumerate(pr.counts) for _ in range(n)])
    log_p = log_softmax(z, axis=0)[labels, range(pr.N)]
    per_sample = -((1 - np.exp(log_p)) ** 2) * log_p / pr.N
    per_sample += float(pr.lambda_h) / 2 * np.sum(p.H**2, axis=0)
    best = [np.flatnonzero(labels == k)[np.argmin(per_sample[labels == k])] for k in range(pr.K)]
    collapsed = Params(p.Ws, p.H[:, [best[k] for k in labels]], None)
    assert obj.value(collapsed) <= obj.value(p) + obj.error_bound(p) + obj.error_bound(collapsed)


# ---- input --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("gamma", "loss"), [("0.5", "focal"), ("0", "focal"), ("11", "focal"), ("2", "ce")]
)
def test_a_focusing_outside_its_range_or_without_focal_loss_is_bad_input(
    gamma: str, loss: str
) -> None:
    with pytest.raises(ProblemError):
        problem(gamma, loss=loss)
    with pytest.raises(ProblemError, match="gamma"):
        Problem.build(counts="2,2", depth=1, width=2, loss="focal")


def test_the_focusing_is_read_exactly() -> None:
    assert problem("2.5").focusing == Fraction(5, 2)


def test_the_class_mean_parameterisation_is_refused_for_focal_loss() -> None:
    # Jensen's step needs a loss convex in the logits; focal loss is not
    assert unavailable(problem(), "class-means") is not None
    result = CliRunner().invoke(
        app,
        ["check", "focal-balanced", "--classes", "3", "--samples", "2", "--depth", "1",
         "--width", "3", "--parameterisation", "class-means"],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "focal loss is not" in result.output and "Traceback" not in result.output


def test_a_gamma_out_of_range_on_the_command_line_is_one_sentence_and_exit_2() -> None:
    result = CliRunner().invoke(
        app, ["check", "focal-balanced", "--classes", "3", "--samples", "2", "--focusing", "0.5"]
    )
    assert result.exit_code == 2, result.output
    assert "between 1 and 10" in result.output and "Traceback" not in result.output
