"""The weight decay on the features that a trained point behaves as if it had.

A trained network's backbone is regularised by its own weight decay, not by the model's
`lambda_H ||H||^2 / 2`, so a trained point has no `lambda_H` of its own.  At a stationary point
of the model the gradient in every feature column vanishes,

$$\\nabla_{h_i} L + \\lambda_H h_i = W_1^T \\cdots W_M^T g_i + \\lambda_H h_i = 0,$$

(`g_i` the loss gradient in sample `i`'s logits), so the *effective* `lambda_H` is the
least-squares fit of that condition.  It is fitted on the class means, weighted by the counts,
and on their part in the range of `P^T = (W_M \\cdots W_1)^T`: a component of `H` outside that
range does not enter the loss, the model's stationarity sends it to zero, and a backbone need not
(fitting it too would bias the estimate towards zero).

$$\\hat\\lambda_H = -\\frac{\\sum_k n_k \\langle \\bar a_k, \\Pi \\bar h_k\\rangle}
                        {\\sum_k n_k \\lVert \\Pi \\bar h_k\\rVert^2},\\qquad
  \\text{residual} = \\frac{\\lVert \\bar A + \\hat\\lambda_H \\Pi \\bar H\\rVert_n}
                         {\\lVert \\bar A\\rVert_n},$$

with `abar_k` the class mean of `grad_{h_i} L`, `Pi` the projector onto the range of `P^T` and
`||.||_n` the count-weighted norm.  A small residual says the point is stationary for one scalar
`lambda_H`; a large one, that no single `lambda_H` describes it (not converged, or not the model).
Every minimiser is balanced (`lambda_{W_m} ||W_m||^2 = lambda_H ||H||^2`, lemma 2), so
`lambda_{W_1} ||W_1||^2 / ||H||^2` is a second, independent estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ncverify.backend import to_host
from ncverify.model.objective import Objective, Params


@dataclass(frozen=True)
class FeatureDecayFit:
    """The effective `lambda_H` of a point, how well one scalar explains it, and the balance
    estimate."""

    value: float  # the least-squares lambda_H (may be <= 0: then it describes no minimiser)
    residual: float  # ||abar + lambda Pi hbar||_n / ||abar||_n
    balance: float  # lambda_{W_1} ||W_1||^2 / ||H||^2

    @property
    def usable(self) -> bool:
        return bool(np.isfinite(self.value) and self.value > 0)


def effective_lambda_h(objective: Objective, point: Params) -> FeatureDecayFit:
    """Fit `lambda_H` to the stationarity of `point` in `H` (full parameterisation).

    `objective` supplies the loss and the layer decays; its own `lambda_H` is not used.
    """
    if objective.parameterisation != "full":
        raise ValueError("the fit needs every sample's features (the full parameterisation).")
    _, grad = objective.loss_and_grad(point)
    counts = np.asarray(objective.problem.counts, dtype=np.float64)
    y = to_host(objective.Y)
    h, a = to_host(point.H), to_host(grad.H)
    hbar, abar = h @ y.T / counts, a @ y.T / counts  # class means, d x K
    prod = to_host(point.Ws[-1])
    for w in reversed(point.Ws[:-1]):
        prod = prod @ to_host(w)
    _, sv, vt = np.linalg.svd(prod, full_matrices=False)
    keep = sv > sv[0] * 1e-10 if sv.size and sv[0] > 0 else np.zeros(sv.shape, dtype=bool)
    basis = vt[keep].T  # orthonormal basis of the range of P^T
    projected = basis @ (basis.T @ hbar)
    weights = np.sqrt(counts)[None, :]
    pw, aw = projected * weights, abar * weights
    denominator = float(np.sum(pw * pw))
    value = -float(np.sum(aw * pw)) / denominator if denominator > 0 else float("nan")
    size = float(np.linalg.norm(aw))
    residual = float(np.linalg.norm(aw + value * pw)) / size if size > 0 else float("nan")
    w1 = to_host(point.Ws[0])
    h_norm = float(np.sum(h * h))
    balance = objective.lambda_w[0] * float(np.sum(w1 * w1)) / h_norm if h_norm > 0 else math.nan
    return FeatureDecayFit(value, residual, balance)
