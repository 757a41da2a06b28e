"""Feature elimination for the squared loss: the class-mean features and the bias at their exact
minimiser for given weights (docs/theory/model.md#the-class-mean-reduction).

For fixed layers, with `P = W_M ... W_1`, `s = (sqrt(n_k))_k`, `D = diag(s)` and
`M_P = P P^T + N lambda_H I`, the class-mean objective is a ridge problem in `(G, b)` whose
unique minimiser is

    b* = lambda_H (lambda_H N I + lambda_b M_P)^{-1} n      (free bias: n / N; none: 0)
    G* = P^T M_P^{-1} (D - b* s^T)  =  (P^T P + N lambda_H I)^{-1} P^T (D - b* s^T).

The optimiser then works on the weights alone (variable projection): by the envelope theorem the
gradient of `W -> F(W, G*(W), b*(W))` is the weight part of the gradient at that point.
"""

from __future__ import annotations

from typing import Any

from ncverify.model.objective import Objective, Params

Array = Any


def eliminable(objective: Objective) -> bool:
    """Whether the features and the bias have a closed-form minimiser: the squared loss, linear
    layers, in the class-mean coordinates."""
    pr = objective.problem
    return pr.loss == "mse" and pr.activation == "linear" and objective.columns == pr.K


def end_to_end(ws: tuple[Array, ...]) -> Array:
    """`P = W_M ... W_1` (`K x d`)."""
    prod = ws[-1]
    for w in reversed(ws[:-1]):
        prod = prod @ w
    return prod


def _inverse_on(xp: Any, gram: Array, shift: Array | float, scale: float = 1.0) -> Any:
    """`(scale * gram + shift I)^{-1} @ rhs` as a function of `rhs`, for a symmetric positive
    semi-definite `gram` and `shift > 0`, through the eigendecomposition: it never fails on a
    finite matrix (a solve can report a numerically singular matrix at the far ends of a line
    search), and the eigenvalues are clipped at 0 so that the shift keeps it positive."""
    values, vectors = xp.linalg.eigh(gram)
    inverse = 1.0 / (scale * xp.clip(values, 0.0, None) + shift)

    def apply(rhs: Array) -> Array:
        return vectors @ (inverse[:, None] * (vectors.T @ rhs))

    return apply


def optimal_features(objective: Objective, ws: tuple[Array, ...]) -> Params:
    """`(W, G*(W), b*(W))`: the class-mean features and the bias that minimise the squared-loss
    objective for the layers `ws` (the smaller of the `K x K` and `d x d` systems is solved).

    Where `W_M ... W_1` overflows, `G*` is infinite and so is the objective there: the line
    search then steps back, as it does wherever `F` is not finite."""
    if not eliminable(objective):
        raise ValueError("features have a closed-form minimiser only for the squared loss.")
    xp, pr = objective.xp, objective.problem
    dtype, device = objective.dtype, objective.device
    prod = end_to_end(ws)
    k, d = prod.shape
    n_total = float(pr.N)
    counts = xp.asarray([float(c) for c in pr.counts], dtype=dtype, device=device)
    s = xp.sqrt(counts)
    ridge = n_total * objective.lambda_h
    eye_k = xp.eye(k, dtype=dtype, device=device)
    gram = prod @ prod.T if k <= d or pr.bias == "regularised" else prod.T @ prod
    if not bool(xp.all(xp.isfinite(gram))):
        g = xp.full((d, k), xp.inf, dtype=dtype, device=device)
        b = None if pr.bias == "none" else xp.zeros((k,), dtype=dtype, device=device)
        return Params(tuple(ws), g, b)
    b = None
    if pr.bias == "none":
        targets = eye_k * s[None, :]  # D
    else:
        if pr.bias == "free":
            b = counts / n_total
        else:  # (lambda_H N I + lambda_b (P P^T + N lambda_H I)) b = lambda_H n
            shift = objective.lambda_h * n_total + objective.lambda_b * ridge
            solve_b = _inverse_on(xp, gram, shift, objective.lambda_b)
            b = solve_b(objective.lambda_h * counts[:, None])[:, 0]
        targets = (eye_k - b[:, None]) * s[None, :]  # D - b s^T
    if k <= d:
        g = prod.T @ _inverse_on(xp, gram, ridge)(targets)
    else:
        small = gram if gram.shape[0] == d else prod.T @ prod
        g = _inverse_on(xp, small, ridge)(prod.T @ targets)
    return Params(tuple(ws), g, b)
