"""Each loss's gradient and Hessian-vector products, on every array namespace, against torch's
automatic differentiation of the loss written here from its definition: cross-entropy, label
smoothing (cross-entropy against `(1 - alpha) e_y + alpha / K`) and focal loss
(`-(1 - p_y)^gamma log p_y`), with a regularised bias so that every part of `F` is exercised."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from ncverify.backend import Backend
from ncverify.model.objective import Objective, Params
from ncverify.model.problem import Problem

HAS_TORCH = importlib.util.find_spec("torch") is not None
NAMESPACES = ["numpy", "array-api-strict"] + (["torch"] if HAS_TORCH else [])
LOSSES = {
    "ce": {},
    "ls": {"smoothing": "0.15"},
    "focal": {"focusing": "2.5"},
}


def by_definition(problem: Problem):  # noqa: ANN201 - a torch function of the parameters
    import torch

    labels = torch.tensor(problem.labels())
    columns = torch.arange(problem.N)

    def loss_of(z: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(z, dim=0)
        if problem.loss == "ls":
            alpha = float(problem.smoothing)
            targets = torch.full_like(z, alpha / problem.K)
            targets[labels, columns] += 1 - alpha
            return torch.mean(-(targets * log_p).sum(dim=0))
        own = log_p[labels, columns]
        if problem.loss == "focal":
            return torch.mean(-((1 - torch.exp(own)) ** float(problem.focusing)) * own)
        return torch.mean(-own)

    def f(*xs: torch.Tensor) -> torch.Tensor:
        *ws, h, b = xs
        z = h
        for w in ws:
            z = w @ z
        decay = float(problem.lambda_h) / 2 * (h**2).sum()
        decay = decay + float(problem.lambda_b) / 2 * (b**2).sum()
        for lam, w in zip(problem.lambda_w, ws, strict=True):
            decay = decay + float(lam) / 2 * (w**2).sum()
        return loss_of(z + b[:, None]) + decay

    return f


def random_point(problem: Problem, rng: np.random.Generator) -> Params:
    ws = tuple(rng.standard_normal(shape) for shape in problem.layer_shapes)
    return Params(
        ws, rng.standard_normal((problem.widths[0], problem.N)), rng.standard_normal(problem.K)
    )


@pytest.mark.skipif(not HAS_TORCH, reason="torch is the independent differentiator")
@pytest.mark.parametrize("name", NAMESPACES)
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_gradient_and_hvp_match_torch_autograd_of_the_definition(name: str, loss: str) -> None:
    import torch

    problem = Problem.build(
        counts="3,2,4", depth=2, width=4, lambda_w="1e-2", lambda_h="2e-2", lambda_b="3e-2",
        loss=loss, **LOSSES[loss],
    )  # fmt: skip
    rng = np.random.default_rng(2)
    p, v = random_point(problem, rng), random_point(problem, rng)
    xs = tuple(torch.tensor(a, dtype=torch.float64) for a in p.arrays())
    vs = tuple(torch.tensor(a, dtype=torch.float64) for a in v.arrays())
    f = by_definition(problem)
    grad = torch.autograd.functional.vjp(f, xs, torch.tensor(1.0, dtype=torch.float64))[1]
    hvp = torch.autograd.functional.hvp(f, xs, vs)[1]
    be = Backend.create(name)
    obj = Objective(problem, be.xp, dtype=be.dtype, device=be.device)
    value, g = obj.value_and_grad(p.map(be.asarray))
    hv = obj.hvp(p.map(be.asarray), v.map(be.asarray))
    assert abs(float(value) - float(f(*xs))) <= 4 * Objective(problem, np).error_bound(p)
    for mine, theirs in ((g, grad), (hv, hvp)):
        ours = np.concatenate([be.to_numpy(a).ravel() for a in mine.arrays()])
        ref = np.concatenate([t.numpy().ravel() for t in theirs])
        np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())
