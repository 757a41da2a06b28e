r"""Balanced data, no bias, MSE: every global minimiser is an orthogonal frame at every layer.
With $K$ classes of $n$ samples each ($n_k = n$), $M$ linear layers $W_1, \dots, W_M$ on free
features, no bias and the MSE loss, every global minimiser has NC1 (the features of each class
collapse to their class mean) and, when it is non-zero and the bottleneck $R \ge K$, for every
layer $m$: $\bar H_m^T \bar H_m \propto I_K$, $(W_M \cdots W_m)(W_M \cdots W_m)^T \propto I_K$
and $W_M \cdots W_m \propto \bar H_m^T$ — an orthogonal frame, not a simplex ETF.  The scale is
the class gain $\gamma = (W \bar H)_{kk}$: for $M = 1$, $\gamma = \max(0, 1 - \sqrt{\rho})$; for
$M \ge 2$ the largest root of $\gamma^{M-1}(1-\gamma)^{M+1} = \rho$ while
$\rho < \mathrm{thr}_M = (M-1)^{M-1}/M^{2M}$, else zero.  If $R < K$ the matrices are multiples
of a rank-$R$ orthogonal projection and the minimiser is not unique.  Here $\bar H_m$ holds the
$K$ class means of the features that enter layer $m$ (one column per class, $\bar H = \bar H_1$),
$W = W_M \cdots W_1$, $I_K$ is the $K \times K$ identity, $\rho = K^{M+1} n P$ with
$P = \lambda_H \prod_m \lambda_{W_m}$ the product of the weight decays of the features and of
the layers, and $R = \min(K, d, d_1, \dots, d_{M-1})$, with $d$ the feature dimension and $d_m$
the output width of layer $m$.

Source: H. Dang, T. Tran, S. Osher, H. Tran-The, N. Ho, T. Nguyen, "Neural Collapse in Deep
Linear Networks: From Balanced to Imbalanced Data", ICML 2023, arXiv 2301.00437 (the balanced
bias-free MSE result); $M = 1$: Tirer & Bruna 2022 (docs/theory/one-layer.md#tirer-bruna-2022);
docs/theory/mse.md#balanced-bias-free.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from ncverify.backend import Backend
from ncverify.claim import Claim, Prediction, Regime, Step, TruthRegion
from ncverify.model.objective import Params
from ncverify.model.problem import Problem
from theorems import _balanced as bal
from theorems._balanced import DANG_2023 as D
from theorems._hypotheses import model_hypotheses


class MSEBalancedBiasFree(Claim):
    id = "mse-balanced-biasfree"
    title = "Balanced MSE without bias: orthogonal frame at every layer"
    source = f"{D}: the balanced bias-free MSE result"
    status = "proven (M = 1: Tirer & Bruna 2022)"
    loss = "mse"
    bias = "none"
    certificates = ("convex-dual", "separable-reduction")
    truth_region = TruthRegion(
        basis="proven",
        reference="Dang et al. 2023, balanced bias-free MSE (docs/theory/mse.md#balanced-bias-free)",
    )

    def hypotheses(self, problem: Problem) -> list[str]:
        return model_hypotheses(problem, loss="mse", bias="none", balanced=True)

    # ---- the mathematics, in pieces a wrong variant (tests/variants.py) can replace ----------
    geometry_name = "orthogonal frame"

    def gain(self, problem: Problem) -> tuple[sp.Expr, Regime]:
        """The mode gain gamma and its regime, by the threshold rule."""
        return bal.threshold_gain(problem.depth, bal.rho_of(problem, problem.counts[0]))

    def n_modes(self, problem: Problem) -> int:
        """Modes of the target `sqrt(n) I_K`: the K classes, of which at most R can be alive."""
        return problem.K

    def frame(self, problem: Problem, r: int) -> tuple[np.ndarray, np.ndarray]:
        """Left and right singular vectors of `W Hbar D` (K x r): the first r classes."""
        e = np.eye(problem.K)[:, :r]
        return e, e

    def bias_value(self, problem: Problem) -> np.ndarray | None:
        return None

    def diagonal_share(self, problem: Problem) -> sp.Expr:
        """`(W Hbar)_kk / gamma`: 1 for the orthogonal frame (`W Hbar = gamma I`)."""
        return sp.Integer(1)

    # ---- closed form and predicted point ------------------------------------------------------
    def closed_form(self, problem: Problem) -> Prediction:
        bias = self.bias_value(problem)
        return bal.frame_prediction(
            problem,
            gain=self.gain(problem),
            modes=self.n_modes(problem),
            share=self.diagonal_share(problem),
            bias=None if bias is None else list(bias),
            geometry=self.geometry_name,
        )

    def minimiser(self, problem: Problem, backend: Backend) -> Params:
        return bal.frame_minimiser(
            problem,
            backend,
            gain=self.gain(problem),
            modes=self.n_modes(problem),
            frame=self.frame,
            bias=self.bias_value(problem),
        )

    def derivation(self) -> list[Step]:
        return [
            *bal.scalar_steps("K modes, each with target sqrt(n)"),
            Step(
                "The balanced factorisation of A = sqrt(n) gamma I_K is an orthogonal frame at every "
                "layer; the predicted point built from it is stationary with the claimed value.",
                r"W\bar H = \gamma I_K,\; \bar H^T\bar H \propto I_K,\; WW^T \propto I_K,\; "
                r"W \propto \bar H^T",
                "test",
                "tests/test_claims.py::test_predicted_point_is_stationary_with_claimed_value",
            ),
        ]


claim = MSEBalancedBiasFree()
