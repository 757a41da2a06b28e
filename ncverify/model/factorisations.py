"""Concrete points from class-level targets: balanced layers and class means.

Lemma 2 says the cheapest factorisation of `A = W_M ... W_1 Hbar D` (with `D = diag(sqrt(n_k))`)
is the *balanced* one: if `A = U diag(s) V^T`, every layer carries the singular values
`sqrt(tau_i / lambda_{W_m})` and `Hbar D` carries `sqrt(tau_i / lambda_H)`, with
`tau_i = P^{1/(M+1)} s_i^q`.  `balanced_layers` builds that point; every claim's `minimiser`
and the certificates' feasible points go through it.
"""

from __future__ import annotations

import numpy as np

from ncverify.model.objective import Params
from ncverify.model.problem import Problem


def balanced_layers(
    problem: Problem,
    left: np.ndarray,
    singular_values: np.ndarray,
    right: np.ndarray,
    bias: np.ndarray | None = None,
) -> Params:
    """The balanced point whose class-level product is `W Hbar D = left diag(s) right^T`.

    Args:
        problem: the instance (its lambdas fix the balance).
        left: `K x r` orthonormal columns (the classifier side).
        singular_values: the `r` non-negative singular values `s_i` of `A`.
        right: `K x r` orthonormal columns (the class side of `Hbar D`).
        bias: the bias vector, for problems with a bias.

    Returns host (numpy float64) arrays; hidden directions are the first `r` coordinates.
    """
    s = np.asarray(singular_values, dtype=np.float64)
    r = s.size
    if r > problem.bottleneck:
        raise ValueError(f"rank {r} exceeds the bottleneck R = {problem.bottleneck}.")
    m = problem.depth
    p_root = float(problem.lambda_product) ** (1.0 / (m + 1))
    tau = p_root * s ** (2.0 / (m + 1))
    dims = list(problem.widths)
    ws = []
    for layer, (rows, cols) in enumerate(problem.layer_shapes):
        sigma = np.sqrt(tau / float(problem.lambda_w[layer]))
        w = np.zeros((rows, cols))
        if layer == m - 1:
            w[:, :r] = left * sigma[None, :]
        else:
            w[np.arange(r), np.arange(r)] = sigma
        ws.append(w)
    g = np.zeros((dims[0], problem.K))  # G = Hbar D
    g[:r, :] = (np.sqrt(tau / float(problem.lambda_h))[:, None]) * right.T
    means = g / np.sqrt(np.asarray(problem.counts, dtype=np.float64))[None, :]
    h = means[:, problem.labels()]
    b = None
    if problem.bias != "none":
        b = np.zeros(problem.K) if bias is None else np.asarray(bias, dtype=np.float64)
    return Params(tuple(ws), h, b)


def simplex_directions(k: int) -> np.ndarray:
    """`K x (K-1)` orthonormal basis of the complement of the all-ones vector."""
    c = np.eye(k) - np.ones((k, k)) / k
    vals, vecs = np.linalg.eigh(c)
    return vecs[:, vals > 0.5]


def unit_simplex(k: int, d: int) -> np.ndarray:
    """`K x d`: the unit vertices of a centred regular simplex (rows with inner products
    `-1/(K-1)`) in the first `K - 1` coordinates of `R^d`; `ValueError` where `d < K - 1`."""
    if d < k - 1:
        raise ValueError(f"a simplex of {k} vertices needs d >= {k - 1}, not {d}")
    basis = simplex_directions(k)  # K x (K - 1), orthogonal to the all-ones vector
    u = np.zeros((k, d))
    u[:, : k - 1] = basis / np.linalg.norm(basis, axis=1, keepdims=True)
    return u
