"""The losses of the model, column by column: the one home of the numerically stable softmax and
log-sum-exp that the objective, the class-level programs of the certificates and the claims'
reduced searches evaluate (exact and interval evaluation lives in `ncverify.model.exact`).

For logits `z` (one column per sample or class) and one-hot targets, MSE is
`l(z) = ||z - y||^2 / 2` and cross-entropy `l(z) = logsumexp(z) - z_y`; label smoothing is
cross-entropy against the targets `q = (1 - alpha) y + (alpha / K) 1`, `l(z) = logsumexp(z) -
q^T z` (its gradient `softmax(z) - q`, its Hessian that of cross-entropy).
"""

from __future__ import annotations

from typing import Any

Array = Any


def softmax_and_lse(xp: Any, z: Array) -> tuple[Array, Array]:
    """Column-wise softmax of `z` and its log-sum-exp (shape `(1, columns)`), computed after
    subtracting each column's maximum so that no exponential overflows.  The classes are the
    second-to-last axis, so a stack of logit matrices `(B, K, columns)` is a batch of them."""
    zmax = xp.max(z, axis=-2, keepdims=True)
    e = xp.exp(z - zmax)
    s = xp.sum(e, axis=-2, keepdims=True)
    return e / s, xp.log(s) + zmax


def targets(problem: Any, y: Array) -> Array:
    """The targets of `problem`'s loss at the one-hot labels `y` (classes on the first axis):
    `y` itself, or for label smoothing `(1 - alpha) y + alpha / K` (rounded once a term)."""
    if problem.loss != "ls":
        return y
    alpha = float(problem.smoothing)
    return (1 - alpha) * y + alpha / problem.K
