r"""Non-negative features: cross-entropy with weight decay, the features constrained to `H >= 0`.

The problem (`Loss.NONNEGATIVE_CE`, one layer, no bias) is that of `"ce"` on the orthant:

$$\min_{W,\ H \ge 0}\ \frac1N \sum_i \mathrm{CE}(W h_i, y_i) + \frac{\lambda_W}{2}\lVert W\rVert^2
  + \frac{\lambda_H}{2}\lVert H\rVert^2,$$

the features as a ReLU leaves them (docs/theory/relu-features.md).  For a fixed `W` each
feature's problem is strictly convex on the convex orthant, so the features of a class meet one
minimiser: an optimum has class-constant features, and the class means `Hbar` (`d x K`, class `k`
weighted by `n_k`) are an exact reduction (`value_grad`).  A feasible point's value is that of
`"ce"`, so its exact enclosure is `ncverify.model.exact.enclose_objective`'s (`enclose`), and a
point with a negative entry is no point of the problem.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ncverify.model.exact import enclose_class_means, enclose_objective
from ncverify.model.objective import Params
from ncverify.model.problem import Problem


def class_weights(problem: Problem) -> np.ndarray:
    """`n_k / N`: the weight of class `k`'s loss in the reduced problem."""
    counts = np.asarray(problem.counts, dtype=np.float64)
    return counts / counts.sum()


def value_grad(
    problem: Problem, w: np.ndarray, hbar: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray, float]:
    """The reduced objective at `(W, Hbar)` (one feature per class), its gradients in `W` and
    `Hbar`, and the sum of the norms of the loss's and the regulariser's gradients (the scale
    against which a stationarity test measures: at a stationary point they cancel)."""
    lam_w, lam_h = float(problem.lambda_w[0]), float(problem.lambda_h)
    counts = np.asarray(problem.counts, dtype=np.float64)
    weights = counts / counts.sum()
    k = problem.K
    z = w @ hbar
    z = z - z.max(axis=0, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=0, keepdims=True)
    own = np.arange(k)
    loss = float(np.sum(weights * -np.log(np.maximum(p[own, own], 1e-300))))
    value = (
        loss + lam_w / 2 * float(np.sum(w * w)) + lam_h / 2 * float(np.sum(counts * hbar * hbar))
    )
    g = p.copy()
    g[own, own] -= 1.0
    g *= weights[None, :]  # d loss / d logits
    loss_w, loss_h = g @ hbar.T, w.T @ g
    reg_w, reg_h = lam_w * w, lam_h * counts[None, :] * hbar
    scale = float(np.linalg.norm(loss_w) + np.linalg.norm(loss_h))
    scale += float(np.linalg.norm(reg_w) + np.linalg.norm(reg_h))
    return value, loss_w + reg_w, loss_h + reg_h, scale


def kkt_residual(problem: Problem, w: np.ndarray, hbar: np.ndarray) -> tuple[float, float]:
    """The norm of the part of the gradient that the constraint does not excuse, and the scale
    of `value_grad`.  At a minimiser on the orthant the gradient in `W` vanishes, and in `Hbar`
    it vanishes where an entry is positive and is non-negative where an entry is zero (moving
    into the orthant cannot descend): what is left is the residual of those conditions."""
    _, gw, gh, scale = value_grad(problem, w, hbar)
    free = np.where(hbar > 0, gh, np.minimum(gh, 0.0))
    return float(np.hypot(np.linalg.norm(gw), np.linalg.norm(free))), scale


def enclose(problem: Problem, point: Params) -> Any | None:
    """A rigorous interval containing `F(point)`, or None where the point is not one of the
    problem (a negative or non-finite entry) or its features are not class-constant.  One
    feature per class (`d x K`) stands for its class's samples."""
    h = np.asarray(point.H, dtype=np.float64)
    if not np.all(np.isfinite(h)) or np.any(h < 0):
        return None
    ce = problem.with_(loss="ce")
    ws = tuple(np.asarray(w) for w in point.Ws)
    if h.shape[1] == problem.K:  # the class means: never the N columns
        return enclose_class_means(ce, Params(ws, h))
    return enclose_objective(ce, Params(ws, h))
