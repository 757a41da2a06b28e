"""The losses of the model, column by column: the one home of the numerically stable softmax and
log-sum-exp that the objective, the class-level programs of the certificates and the claims'
reduced searches evaluate (exact and interval evaluation lives in `ncverify.model.exact`).

For logits `z` (one column per sample or class) and one-hot targets, MSE is
`l(z) = ||z - y||^2 / 2` and cross-entropy `l(z) = logsumexp(z) - z_y`.
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
