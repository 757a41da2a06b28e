"""Second-order check: the most negative curvature of `F` at a point, by Lanczos on `Hv`.

Lanczos with full reorthogonalisation, written against the array API.  Ritz values lie inside
the spectrum, so a negative Ritz value is *proof* (up to the rounding of `Hv`) of a direction of
negative curvature; a non-negative one only says that none was found in `steps` iterations.
The report words it that way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ncverify.model.flatten import Flattener
from ncverify.model.objective import Objective, Params


@dataclass(frozen=True)
class Curvature:
    smallest: float  # smallest Ritz value (an upper bound on the smallest eigenvalue)
    largest: float  # largest Ritz value (a lower bound on the largest eigenvalue)
    steps: int
    direction: Params | None  # Ritz vector of the smallest value


def extreme_curvature(
    objective: Objective, p: Params, *, steps: int = 60, seed: int = 0
) -> Curvature:
    xp = objective.xp
    flat = Flattener(objective.problem, xp, objective.columns)
    n = flat.size
    steps = min(steps, n)
    rng = np.random.default_rng(seed)
    v = xp.asarray(rng.normal(size=n), dtype=objective.dtype, device=objective.device)
    v = v / xp.linalg.vector_norm(v)
    basis = [v]
    alphas, betas = [], []
    for j in range(steps):
        w = flat.flatten(objective.hvp(p, flat.unflatten(basis[j])))
        alpha = float(xp.vecdot(w, basis[j]))
        alphas.append(alpha)
        for q in basis:  # full reorthogonalisation (twice is enough)
            w = w - xp.vecdot(w, q) * q
        for q in basis:
            w = w - xp.vecdot(w, q) * q
        beta = float(xp.linalg.vector_norm(w))
        if j == steps - 1 or beta <= 1e-12 * max(1.0, abs(alpha)):
            break
        betas.append(beta)
        basis.append(w / beta)
    k = len(alphas)
    t = np.diag(alphas) + np.diag(betas[: k - 1], 1) + np.diag(betas[: k - 1], -1)
    vals, vecs = np.linalg.eigh(t)
    coeffs = vecs[:, 0]
    ritz = basis[0] * float(coeffs[0])
    for c, q in zip(coeffs[1:], basis[1:k], strict=False):
        ritz = ritz + float(c) * q
    return Curvature(float(vals[0]), float(vals[-1]), k, flat.unflatten(ritz))
