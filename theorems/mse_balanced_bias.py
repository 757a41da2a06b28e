r"""Balanced data, unregularised last-layer bias, MSE: a simplex ETF at every layer.
With $K$ classes of $n$ samples each ($n_k = n$), $M$ linear layers $W_1, \dots, W_M$ on free
features, the MSE loss and a free (unpenalised) bias $b$ on the last layer, the optimal bias is
$b^* = \mathbf 1/K$, the feature means are centred at every layer
($\bar H_m \mathbf 1 = 0$), and the relations of the bias-free claim (`mse-balanced-biasfree`)
hold with $I_K$ replaced by the centring matrix $C = I_K - \mathbf 1 \mathbf 1^T/K$:
$\bar H_m^T \bar H_m \propto C$, $(W_M \cdots W_m)(W_M \cdots W_m)^T \propto C$,
$W_M \cdots W_m \propto \bar H_m^T$ — a simplex ETF (needs $R \ge K-1$).  There are $K-1$ active
modes instead of $K$, so the optimum is $\frac{K-1}{K}$ times the bias-free value, the zero
regime included.  Here $\mathbf 1$ is the all-ones vector, $I_K$ the $K \times K$ identity,
$\bar H_m$ holds the $K$ class means of the features that enter layer $m$ (one column per
class), and $R = \min(K, d, d_1, \dots, d_{M-1})$ is the bottleneck, with $d$ the feature
dimension and $d_m$ the output width of layer $m$.

Source: H. Dang, T. Tran, S. Osher, H. Tran-The, N. Ho, T. Nguyen, "Neural Collapse in Deep
Linear Networks: From Balanced to Imbalanced Data", ICML 2023, arXiv 2301.00437 (the balanced
MSE result with bias); $M = 1$: Zhou et al. 2022 (docs/theory/one-layer.md#zhou-2022);
docs/theory/mse.md#balanced-bias.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from ncverify.backend import Backend
from ncverify.claim import Claim, Prediction, Regime, Step, TruthRegion
from ncverify.model.factorisations import simplex_directions
from ncverify.model.objective import Params
from ncverify.model.problem import Problem
from theorems import _balanced as bal
from theorems._balanced import DANG_2023 as D
from theorems._hypotheses import model_hypotheses


class MSEBalancedBias(Claim):
    id = "mse-balanced-bias"
    title = "Balanced MSE with a free bias: simplex ETF at every layer"
    source = f"{D}: the balanced MSE result with an unregularised bias"
    status = "proven (M = 1: Zhou et al. 2022)"
    loss = "mse"
    bias = "free"
    certificates = ("convex-dual", "separable-reduction")
    truth_region = TruthRegion(
        basis="proven",
        reference="Dang et al. 2023, balanced MSE with bias (docs/theory/mse.md#balanced-bias)",
        biases=("free",),
    )

    def hypotheses(self, problem: Problem) -> list[str]:
        return model_hypotheses(problem, loss="mse", bias="free", balanced=True)

    # ---- the mathematics, in pieces a wrong variant (tests/variants.py) can replace ----------
    geometry_name = "simplex ETF"

    def gain(self, problem: Problem) -> tuple[sp.Expr, Regime]:
        """The mode gain gamma (the non-zero singular value of `W Hbar`) and its regime."""
        return bal.threshold_gain(problem.depth, bal.rho_of(problem, problem.counts[0]))

    def n_modes(self, problem: Problem) -> int:
        """The centred target `sqrt(n) C` has K-1 non-zero singular values."""
        return problem.K - 1

    def frame(self, problem: Problem, r: int) -> tuple[np.ndarray, np.ndarray]:
        """r orthonormal directions orthogonal to the all-ones vector."""
        e = simplex_directions(problem.K)[:, :r]
        return e, e

    def bias_value(self, problem: Problem) -> np.ndarray:
        """The free bias takes the mean target: `b* = 1/K 1`."""
        return np.full(problem.K, 1.0 / problem.K)

    def diagonal_share(self, problem: Problem) -> sp.Expr:
        """`W Hbar = gamma C`, so the class gain `(W Hbar)_kk` is `gamma (K-1)/K`."""
        return sp.Rational(problem.K - 1, problem.K)

    # ---- closed form and predicted point ------------------------------------------------------
    def closed_form(self, problem: Problem) -> Prediction:
        return bal.frame_prediction(
            problem,
            gain=self.gain(problem),
            modes=self.n_modes(problem),
            share=self.diagonal_share(problem),
            bias=list(self.bias_value(problem)),
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
            Step(
                "Given A, the optimal free bias is the mean residual; the mean of the features costs "
                "regularisation and changes no loss, so the features are centred and the target "
                "becomes sqrt(n) C.",
                r"b^* = \tfrac1K\mathbf 1 - \tfrac1K W\bar H\mathbf 1,\quad \bar H\mathbf 1 = 0",
                "test",
                "tests/test_claims.py::test_bias_is_mean_residual",
            ),
            *bal.scalar_steps("K modes, each with target sqrt(n)"),
            Step(
                "The balanced factorisation of A = sqrt(n) gamma C is a simplex ETF at every layer.",
                r"W\bar H = \gamma C,\; \bar H^T\bar H \propto C,\; WW^T \propto C,\; b^*=\tfrac1K"
                r"\mathbf 1",
                "test",
                "tests/test_claims.py::test_predicted_point_is_stationary_with_claimed_value",
            ),
        ]


claim = MSEBalancedBias()
