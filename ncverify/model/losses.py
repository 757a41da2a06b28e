"""The losses of the model, column by column: the one home of the numerically stable softmax and
log-sum-exp that the objective, the class-level programs of the certificates and the claims'
reduced searches evaluate (exact and interval evaluation lives in `ncverify.model.exact`).

For logits `z` (one column per sample or class) and one-hot targets, MSE is
`l(z) = ||z - y||^2 / 2` and cross-entropy `l(z) = logsumexp(z) - z_y`; label smoothing is
cross-entropy against the targets `q = (1 - alpha) y + (alpha / K) 1`, `l(z) = logsumexp(z) -
q^T z` (its gradient `softmax(z) - q`, its Hessian that of cross-entropy).  Focal loss with
focusing `gamma` is `l(z) = -(1 - p_y)^gamma log p_y`, `p = softmax(z)` (`focal`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

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


class FocalTerms(NamedTuple):
    """Focal loss on a stack of logit columns, with what its derivatives need.

    With `p = p_y`, `q = 1 - p` and `w(p) = q^gamma - gamma q^(gamma-1) p log p`, the gradient
    in the logits is `w (softmax - y)` and the Hessian
    `w (diag(s) - s s^T) - w'(p) p (s - y)(s - y)^T`, where
    `w'(p) = -gamma q^(gamma-1) (2 + log p) + gamma (gamma-1) q^(gamma-1) p (log p / q)`.
    Shapes: `value`, `weight`, `curvature` (`w'(p) p`), `q` and `log_p` are `(..., 1, columns)`.
    """

    value: Array
    weight: Array
    curvature: Array
    prob: Array
    q: Array
    log_p: Array

    def gradient(self, y: Array) -> Array:
        return self.weight * (self.prob - y)

    def tangent(self, xp: Any, y: Array, dz: Array) -> Array:
        """The derivative of the gradient along `dz` (the Hessian applied to `dz`)."""
        s, r = self.prob, self.prob - y
        softmax_part = s * dz - s * xp.sum(s * dz, axis=-2, keepdims=True)
        return self.weight * softmax_part - self.curvature * r * xp.sum(
            r * dz, axis=-2, keepdims=True
        )


def focal(xp: Any, z: Array, y: Array, gamma: float) -> FocalTerms:
    """Focal loss `-(1 - p_y)^gamma log p_y` of each column of `z` (one-hot `y`).

    Why not `1 - p_y`: near a perfect fit it cancels to nothing, so `q = 1 - p_y` is the sum of
    the other classes' probabilities, and `log p_y = log1p(-q)` while `q < 1/2` (accurate
    there), else `z_y - logsumexp(z)` (no cancellation once `p_y <= 1/2`)."""
    prob, lse = softmax_and_lse(xp, z)
    p = xp.sum(prob * y, axis=-2, keepdims=True)
    q = xp.sum(prob * (1 - y), axis=-2, keepdims=True)
    zy = xp.sum(z * y, axis=-2, keepdims=True)
    small = q < 0.5
    logp = xp.where(small, xp.log1p(-xp.where(small, q, 0.0)), zy - lse)
    qg1 = q ** (gamma - 1)
    value = -(qg1 * q) * logp
    weight = qg1 * q - gamma * qg1 * p * logp
    # log p / q -> -1 as q -> 0 (the limit where q underflows)
    ratio = xp.where(q > 0, logp / xp.where(q > 0, q, 1.0), -1.0)
    slope = -gamma * qg1 * (2 + logp) + gamma * (gamma - 1) * qg1 * p * ratio
    return FocalTerms(value, weight, slope * p, prob, q, logp)
