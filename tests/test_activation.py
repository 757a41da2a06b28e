"""A ReLU between the layers (`Problem(activation="relu")`): the objective, its gradient and its
Hessian-vector products against finite differences and against an independent forward pass, and
what the linear parts of the engine do with such an instance.

Finite differences are taken only where no pre-activation lies within reach of the step (the
objective is smooth there: each ReLU is linear on its piece); at a kink a gradient is not
defined, and these tests make no claim about one.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from test_objective import derivative, flatten, random_vector, tiny_problems, unflatten

from ncverify.backend import Backend
from ncverify.model.objective import Objective, Params
from ncverify.model.problem import Problem
from ncverify.model.reduction import default_parameterisation

NUMPY = Backend.create("numpy")
seeds = st.integers(0, 2**32 - 1)
H = 1e-5  # the finite-difference step


def relu_problems() -> st.SearchStrategy[Problem]:
    """The objective tests' tiny instances, two layers or more, with a ReLU between them."""
    deep = tiny_problems.filter(lambda p: p.depth >= 2)
    return deep.map(lambda p: p.with_(activation="relu"))


def targets(problem: Problem, y: np.ndarray) -> np.ndarray:
    """The one-hot labels `y`, smoothed for label smoothing: `(1 - alpha) y + alpha / K`."""
    if problem.loss != "ls":
        return y
    return (1 - float(problem.smoothing)) * y + float(problem.smoothing) / problem.K


def column_losses(problem: Problem, z: np.ndarray) -> np.ndarray:
    """The loss of each column of the logits `z` (samples in label order), from the definitions."""
    y = targets(problem, np.eye(problem.K)[:, problem.labels()])
    if problem.loss == "mse":
        return np.sum((z - y) ** 2, axis=0) / 2
    top = z.max(axis=0)
    lse = np.log(np.exp(z - top).sum(axis=0)) + top
    per_sample = lse - np.sum(z * y, axis=0)  # -log p_y, or the smoothed cross-entropy
    if problem.loss == "focal":  # -(1 - p_y)^gamma log p_y, 1 - p_y the others' share
        others = np.sum(np.exp(z - lse) * (1 - y), axis=0)
        per_sample = others ** float(problem.focusing) * per_sample
    return per_sample


def reference_value(problem: Problem, p: Params) -> float:
    """F written out directly, layer by layer (`np.maximum` for a ReLU), independently of
    `Objective`."""
    h = p.H
    for w in p.Ws[:-1]:
        h = np.maximum(w @ h, 0.0) if problem.activation == "relu" else w @ h
    z = p.Ws[-1] @ h + (0.0 if p.b is None else p.b[:, None])
    loss = float(np.sum(column_losses(problem, z))) / problem.N
    reg = sum(
        float(lam) / 2 * float(np.sum(w * w)) for lam, w in zip(problem.lambda_w, p.Ws, strict=True)
    )
    reg += float(problem.lambda_h) / 2 * float(np.sum(p.H * p.H))
    if p.b is not None and problem.lambda_b is not None:
        reg += float(problem.lambda_b) / 2 * float(np.sum(p.b * p.b))
    return loss + reg


def pre_activations(p: Params) -> list[np.ndarray]:
    out, h = [], p.H
    for w in p.Ws[:-1]:
        pre = w @ h
        out.append(pre)
        h = np.maximum(pre, 0.0)
    return out


def away_from_kinks(p: Params, v: Params, reach: float) -> bool:
    """No pre-activation along `p + t v`, `|t| <= reach`, changes sign (first order, with room)."""
    for pre, dpre in zip(pre_activations(p), _tangents(p, v), strict=True):
        if np.any(np.abs(pre) <= 100 * reach * (1 + np.abs(dpre))):
            return False
    return True


def _tangents(p: Params, v: Params) -> list[np.ndarray]:
    out, h, dh = [], p.H, v.H
    for w, dw in zip(p.Ws[:-1], v.Ws[:-1], strict=True):
        pre, dpre = w @ h, dw @ h + w @ dh
        out.append(dpre)
        active = (pre > 0).astype(float)
        h, dh = np.maximum(pre, 0.0), dpre * active
    return out


@given(relu_problems(), seeds)
def test_the_value_is_the_relu_network_written_out(problem: Problem, seed: int) -> None:
    obj = Objective(problem, np)
    p = unflatten(problem, random_vector(problem, np.random.default_rng(seed), 1.0))
    value = reference_value(problem, p)
    assert abs(obj.value(p) - value) <= obj.error_bound(p) + 1e-14 * abs(value)


@given(relu_problems(), seeds)
def test_gradient_and_hvp_match_finite_differences_on_a_smooth_piece(
    problem: Problem, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    obj = Objective(problem, np)
    x = random_vector(problem, rng, 1.0)
    v = random_vector(problem, rng, 1.0)
    v /= np.linalg.norm(v)
    p, dv = unflatten(problem, x), unflatten(problem, v)
    assume(away_from_kinks(p, dv, 2 * H))
    _, grad = obj.value_and_grad(p)
    directional = derivative(lambda t: obj.value(unflatten(problem, x + t * v)), H)
    scale = 1 + abs(obj.value(p))
    assert abs(directional - float(flatten(grad) @ v)) <= 1e-6 * scale

    def grad_at(t: float) -> np.ndarray:
        return flatten(obj.value_and_grad(unflatten(problem, x + t * v))[1])

    hv = flatten(obj.hvp(p, dv))
    fd = derivative(grad_at, H)
    assert np.linalg.norm(fd - hv) <= 1e-5 * (np.linalg.norm(hv) + np.linalg.norm(grad_at(0.0)) + 1)


def test_with_positive_features_and_weights_relu_is_the_linear_network() -> None:
    """Where every pre-activation is positive the ReLU is the identity: same value and gradient."""
    rng = np.random.default_rng(0)
    linear = Problem.build(counts="3,2", depth=3, width=3, loss="ce", lambda_h="1e-2")
    relu = linear.with_(activation="relu")
    p = Params(
        tuple(np.abs(rng.normal(size=s)) for s in linear.layer_shapes),
        np.abs(rng.normal(size=(3, linear.N))),
    )
    a, b = Objective(linear, np), Objective(relu, np)
    assert abs(a.value(p) - b.value(p)) <= 1e-14
    for ga, gb in zip(
        a.value_and_grad(p)[1].arrays(), b.value_and_grad(p)[1].arrays(), strict=True
    ):
        np.testing.assert_allclose(ga, gb, rtol=1e-12, atol=1e-15)


def test_a_relu_head_is_checked_on_every_samples_features() -> None:
    """The class-mean reduction's correspondence of stationary points needs linear layers."""
    relu = Problem.build(counts="3,2", depth=2, width=3, activation="relu")
    assert default_parameterisation(relu) == "full"
    assert default_parameterisation(relu.with_(activation="linear")) == "weights"


# ---- what the linear parts of the engine do with a ReLU instance ----------------------------------
def test_the_linear_claims_do_not_apply_and_say_why() -> None:
    import theorems

    relu = Problem.build(counts="3,3", depth=2, width=3, activation="relu")
    linear_claims = [
        c for c in theorems.registry().values() if c.default_problem().activation == "linear"
    ]
    assert len(linear_claims) >= 6  # the claims about linear heads, every one of them
    for claim in linear_claims:
        assert "the layers must be linear (no activation between them)" in claim.hypotheses(relu)
    # at depth 1 there is no layer to put an activation between: nothing changes
    one = Problem.build(counts="3,3", depth=1, width=3, activation="relu")
    assert not theorems.get("mse-balanced-biasfree").hypotheses(one)


def test_the_separable_certificate_declines_a_relu_head_beyond_one_layer() -> None:
    from ncverify.evidence.certificates import separable_reduction

    relu = Problem.build(counts="3,3", depth=2, width=3, activation="relu")
    assert separable_reduction(relu) is None
    assert separable_reduction(relu.with_(activation="linear")) is not None


def test_the_exact_evaluation_applies_the_relu() -> None:
    """A class-constant point with negative pre-activations: the rigorous enclosure contains the
    float value of the ReLU network, not that of the linear one."""
    from ncverify.model.exact import enclose_objective
    from ncverify.model.reduction import lift

    relu = Problem.build(counts="2,1", depth=2, width=2, activation="relu", lambda_h="1/4")
    g = np.array([[1.0, -0.5], [0.25, 2.0]])
    p = lift(relu.counts, Params((np.array([[1.0, -1.0], [0.5, 1.0]]), np.eye(2)), g), np)
    value = reference_value(relu, p)
    linear = reference_value(relu.with_(activation="linear"), p)
    assert abs(value - linear) > 1e-3  # the ReLU changes something here
    box = enclose_objective(relu, p)
    assert float(box.a) <= value + 1e-12 and value - 1e-12 <= float(box.b)


def test_a_probe_on_a_relu_head_says_what_it_cannot_decide(tmp_path) -> None:  # noqa: ANN001
    """The linear claim's predicted point has exact zeros among its pre-activations: E1 judges
    stationarity by one-sided derivatives there, E4 is skipped, and a verdict without a
    certificate claims no geometry."""
    import json
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "ncverify.app.cli", "check", "mse-balanced-biasfree"]
        + ["--classes", "3", "--samples", "4", "--depth", "2", "--width", "3"]
        + ["--activation", "relu", "--probe", "--restarts", "4", "--json", "-"],
        capture_output=True,
        text=True,
        check=False,
    )
    data = json.loads(r.stdout)
    assert data["problem"]["activation"] == "relu"
    stationarity = next(c for c in data["checks"] if c["name"] == "E1 stationarity")
    # judged by one-sided derivatives at the kink, never by a relu'(0) = 0 gradient
    assert "kink" in stationarity["detail"] and "one-sided" in stationarity["detail"]
    assert stationarity["passed"] == (stationarity["value"] >= stationarity["tolerance"])
    assert not any(c["name"] == "E4 geometry" for c in data["checks"])
    assert data["certificate"] is None and data["geometry_evidence"] is None
    assert data["numerical"]["parameterisation"] == "full"


# ---- one-sided derivatives, at kinks too --------------------------------------------------------
@given(relu_problems(), seeds)
def test_away_from_kinks_the_one_sided_derivative_is_the_gradient_along_v(
    problem: Problem, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    obj = Objective(problem, np)
    x, v = random_vector(problem, rng, 1.0), random_vector(problem, rng, 1.0)
    p = unflatten(problem, x)
    # a pre-activation is exactly 0 only behind a unit that is off for every input of a sample
    assume(obj.kinks(p) == 0)
    _, grad = obj.value_and_grad(p)
    slope = obj.one_sided_derivative(p, unflatten(problem, v))
    assert abs(slope - float(flatten(grad) @ v)) <= 1e-10 * (1 + np.linalg.norm(flatten(grad)))


@given(seeds, st.sampled_from(["mse", "ce"]))
def test_at_a_kink_the_one_sided_derivative_is_the_forward_difference(seed: int, loss: str) -> None:
    """A unit whose pre-activation is exactly 0 (W_1 kills the feature direction [1, 1]): the
    one-sided derivative along `v` and along `-v` differ (the objective has a kink), and each is
    the limit of the forward difference `(F(p + t v) - F(p)) / t`."""
    problem = Problem.build(counts="2,1", depth=2, width=2, loss=loss, activation="relu")
    rng = np.random.default_rng(seed)
    w1 = np.array([[1.0, -1.0], [0.5, 0.25]])
    p = Params((w1, rng.normal(size=(2, 2))), np.ones((2, 3)))
    obj = Objective(problem, np)
    assert obj.kinks(p) == 3  # the first unit, at every sample
    v = unflatten(problem, random_vector(problem, rng, 1.0))
    minus = v.map(lambda a: -a)
    t = 1e-7
    for d in (v, minus):
        slope = obj.one_sided_derivative(p, d)
        forward = (obj.value(p.zip_map(d, lambda a, c: a + t * c)) - obj.value(p)) / t
        assert abs(slope - forward) <= 1e-5 * (1 + abs(slope))
    # a kink, not a smooth point: the two one-sided slopes do not cancel (their sum's sign says
    # whether the kink bends up or down along v)
    assert abs(obj.one_sided_derivative(p, v) + obj.one_sided_derivative(p, minus)) > 1e-8


# ---- what the class-mean problem still gives with a ReLU (docs/theory/dnc.md#model) ----------------
@given(relu_problems(), seeds)
def test_given_the_weights_each_class_is_best_served_by_its_best_column(
    problem: Problem, seed: int
) -> None:
    """Given the weights, `F` is a sum of one term per feature column (the ReLU acts column by
    column) plus the weights' decay.  So putting every sample of a class at the class's best
    column never raises `F`: the class-mean problem has the global value of the full one, and a
    search over class means loses nothing (its minimisers lift)."""
    rng = np.random.default_rng(seed)
    p = unflatten(problem, random_vector(problem, rng, 1.0))
    labels = np.asarray(problem.labels())

    def column_terms(h: np.ndarray) -> np.ndarray:
        z = h
        for w in p.Ws[:-1]:
            z = np.maximum(w @ z, 0.0)
        z = p.Ws[-1] @ z + (0.0 if p.b is None else p.b[:, None])
        loss = column_losses(problem, z) / problem.N
        return loss + float(problem.lambda_h) / 2 * np.sum(h * h, axis=0)

    terms = column_terms(p.H)
    collapsed = p.H.copy()
    for k in range(problem.K):
        members = np.flatnonzero(labels == k)
        collapsed[:, members] = p.H[:, [members[np.argmin(terms[members])]]]
    q = Params(p.Ws, collapsed, p.b)
    assert reference_value(problem, q) <= reference_value(problem, p) + 1e-12
    rest = reference_value(problem, p) - float(np.sum(terms))  # the weights' decay alone
    weights = sum(
        float(lam) / 2 * float(np.sum(w * w)) for lam, w in zip(problem.lambda_w, p.Ws, strict=True)
    )
    if p.b is not None and problem.lambda_b is not None:
        weights += float(problem.lambda_b) / 2 * float(np.sum(p.b * p.b))
    assert rest == pytest.approx(weights, rel=1e-9, abs=1e-12)
