r"""Balanced data, focal loss: every global minimiser is a simplex ETF at every layer (claimed).

With $K$ classes of $n$ samples each, $M$ linear layers $W_1, \dots, W_M$ on free features and
the focal loss $-(1 - p_y)^\gamma \log p_y$, $p = \operatorname{softmax}(z)$, with focusing
$1 \le \gamma \le 10$ (`--loss focal --focusing gamma`), every global minimiser has NC1 and, at
every layer, the simplex-ETF geometry of `ce-balanced` (needs $R \ge K - 1$).  The logit
margin $m$ solves
$\min_{m \ge 0} r(m)^\gamma \log(1 + (K-1)e^{-m}) + (K-1)\frac{M+1}{2} c\, m^q$ with
$r(m) = (K-1)/(e^m + K - 1)$ the probability left to the other classes,
$c = (nP)^{1/(M+1)}$, $q = 2/(M+1)$, the zero solution included.  Here $P$ is the product of
the weight decays, $R$ the bottleneck and $C = I_K - \mathbf 1\mathbf 1^T/K$, as in
`ce-balanced`.

At one layer the claim is the global-solution result of Zhou et al. (NeurIPS 2022) for focal
loss.  Focal loss is not convex in the logits (its curvature along the margin turns negative;
docs/theory/focal.md), so neither the class-mean reduction's Jensen step nor the convex
program's certificate applies: a check of this claim rests on its runs over every sample's
features, E1 at the predicted point and the claim-agnostic search of the class-mean problem
(whose optimum is the full problem's, docs/theory/focal.md#what-is-proven), and says
`consistent` at most where it holds.

Source: J. Zhou, C. You, X. Li, K. Liu, S. Liu, Q. Qu, Z. Zhu, "Are All Losses Created Equal:
A Neural Collapse Perspective", NeurIPS 2022, arXiv 2210.02192 (one layer); the deep model of
H. Dang et al., ICML 2023, arXiv 2301.00437; docs/theory/focal.md.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from typing import Any

import mpmath
import numpy as np
import sympy as sp

from ncverify.claim import Step, TruthRegion
from ncverify.model.intervals import ends, interval_precision
from ncverify.model.problem import Problem
from theorems import _balanced as bal
from theorems._etf import (
    PREC,
    BalancedETF,
    MarginMinimum,
    critical_c_on_grid,
    factorisation_step,
    scalar_minimum,
    spectrum_step,
)
from theorems._hypotheses import model_hypotheses
from theorems.ce_balanced import critical_c, margin_minimum


# ---- the ETF scalar problem ----------------------------------------------------------------------
class _Focal:
    """`f(m) = r^gamma L + b m^q` and `f'` in interval arithmetic, with
    `L = log(1 + (K-1) e^{-m})`, `r = (K-1)/(e^m + K-1)` (so `L' = -r`, `r' = -r (1 - r)`) and
    `b = (K-1)(M+1)/2 c`; powers as `exp(. log .)`, which is right on boxes that hold 0."""

    def __init__(self, k: int, depth: int, n_p: Fraction, gamma: Fraction) -> None:
        iv = mpmath.iv
        self.k, self.depth = k, depth
        self.q = iv.mpf(2) / iv.mpf(depth + 1)
        c = iv.exp(iv.log(iv.mpf(n_p.numerator) / iv.mpf(n_p.denominator)) / iv.mpf(depth + 1))
        self.gamma = iv.mpf(gamma.numerator) / iv.mpf(gamma.denominator)
        self.b = iv.mpf(k - 1) * iv.mpf(depth + 1) / 2 * c

    def _pieces(self, m: Any) -> tuple[Any, Any, Any]:
        iv = mpmath.iv
        others = iv.mpf(self.k - 1)
        r = others / (iv.exp(m) + others)
        return r, iv.exp(self.gamma * iv.log(r)), iv.log(1 + others * iv.exp(-m))

    def f(self, m: Any) -> Any:
        _, r_gamma, big_l = self._pieces(m)
        return r_gamma * big_l + self.b * self._power(m)

    def df(self, m: Any) -> Any:
        iv = mpmath.iv
        r, r_gamma, big_l = self._pieces(m)
        loss = -self.gamma * r_gamma * (1 - r) * big_l - r_gamma * r
        slope = self.b * self.q * iv.exp((self.q - 1) * iv.log(m)) if self.depth > 1 else self.b
        return loss + slope

    def _power(self, m: Any) -> Any:
        iv = mpmath.iv
        return iv.exp(self.q * iv.log(m)) if self.depth > 1 else m

    def beyond(self) -> mpmath.mpf:
        """A margin beyond which `f > f(0)`: there `b m^q` alone exceeds `f(0)` (the loss is
        never negative)."""
        iv = mpmath.iv
        f0 = ends(self.f(iv.mpf(0)))[1]
        return mpmath.mpf(ends(iv.exp(iv.log(iv.mpf(f0) / self.b) / self.q))[1]) + 1


@lru_cache(maxsize=1024)
def focal_margin_minimum(k: int, depth: int, n_p: Fraction, gamma: Fraction) -> MarginMinimum:
    """The rigorous global minimum of focal loss's ETF scalar problem over `m >= 0`
    (`theorems._etf.scalar_minimum`)."""
    with interval_precision(PREC), mpmath.workprec(PREC + 20):
        return scalar_minimum(_Focal(k, depth, n_p, gamma))


def focal_etf_loss(k: int, gamma: float, m: np.ndarray) -> np.ndarray:
    """`r(m)^gamma log(1 + (K-1) e^{-m})`, the focal loss of each class at the ETF (floats)."""
    r = (k - 1) / (np.exp(m) + k - 1)
    return r**gamma * np.log1p((k - 1) * np.exp(-m))


@lru_cache(maxsize=256)
def critical_focal_c(k: int, depth: int, gamma: Fraction) -> float:
    """The `c = (nP)^{1/(M+1)}` beyond which zero wins (informational, located in floats on a
    grid of margins; the verdict never uses it)."""
    grid = np.geomspace(1e-6, 60.0, 4000)
    loss = focal_etf_loss(k, float(gamma), grid)
    return critical_c_on_grid(k, depth, grid, loss, float(focal_etf_loss(k, float(gamma), 0.0)))


# ---- derivation identities -----------------------------------------------------------------------
_m = sp.symbols("m", positive=True)


def _focal_etf_loss_identity() -> sp.Expr:
    """At the ETF logits `m (e_k - 1/K)`, `1 - p_k = r = (K-1)/(e^m + K-1)` and
    `1/p_k = 1 + (K-1) e^{-m}`, K = 2..8: so `-(1 - p_k)^gamma log p_k = r^gamma log(1 +
    (K-1) e^{-m})` (both sides are functions of these two)."""
    total = sp.Integer(0)
    for k in range(2, 9):
        z_own, z_other = _m * sp.Rational(k - 1, k), -_m / k
        p_own = sp.exp(z_own) / (sp.exp(z_own) + (k - 1) * sp.exp(z_other))
        r = (k - 1) / (sp.exp(_m) + k - 1)
        total += sp.simplify(1 - p_own - r) + sp.simplify(1 / p_own - (1 + (k - 1) * sp.exp(-_m)))
    return sp.simplify(total)


# ---- the claim -----------------------------------------------------------------------------------
class FocalBalanced(BalancedETF):
    id = "focal-balanced"
    title = "Balanced focal loss: simplex ETF at every layer (claimed)"
    source = (
        'Zhou, You, Li, Liu, Liu, Qu, Zhu, "Are All Losses Created Equal: A Neural Collapse '
        f'Perspective", NeurIPS 2022, arXiv 2210.02192 (one layer); the deep model: {bal.DANG_2023}'
    )
    status = (
        "true for M = 1 (Zhou et al. 2022); no certificate: focal loss is not convex in the "
        "logits; checked at depth (docs/theory/focal.md)"
    )
    loss = "focal"
    bias = "none"
    certificates = ()
    truth_region = TruthRegion(
        basis="proven",
        reference="Zhou et al. 2022, one layer (docs/theory/focal.md#one-layer)",
        loss="focal",
        depth=(1, 1),
        wide=True,
        samples=(1, 6),
        focusing=("1", "3"),
    )

    def hypotheses(self, problem: Problem) -> list[str]:
        return model_hypotheses(problem, loss="focal", balanced=True, bottleneck=1)

    def default_problem(self) -> Problem:
        return Problem.build(
            classes=4, samples=10, depth=1, width=8, lambda_w="5e-3", lambda_h="5e-3",
            loss="focal", focusing="2",
        )  # fmt: skip

    def margin(self, problem: Problem) -> MarginMinimum:
        n_p = Fraction(problem.counts[0]) * problem.lambda_product
        if problem.focusing is None:  # a probe of another loss: gamma = 0 is cross-entropy
            return margin_minimum(problem.K, problem.depth, n_p)
        return focal_margin_minimum(problem.K, problem.depth, n_p, problem.focusing)

    def critical(self, problem: Problem) -> float:
        if problem.focusing is None:
            return critical_c(problem.K, problem.depth)
        return critical_focal_c(problem.K, problem.depth, problem.focusing)

    def _objective_form(self, problem: Problem, alpha: mpmath.mpf) -> str:
        k, m = problem.K, problem.depth
        gamma = problem.focusing or 0
        return (
            f"min(f(0), f(m)) with f(m) = r^{gamma} log(1 + {k - 1} e^-m) + "
            f"{k - 1}*{m + 1}/2 c m^(2/{m + 1}), r = {k - 1}/(e^m + {k - 1}), "
            f"c = (nP)^(1/{m + 1}); m = {mpmath.nstr(alpha, 20)}"
        )

    def _limit_notes(self, problem: Problem) -> list[str]:
        return [
            "focal loss is not convex in the logits: no certificate covers this claim, and its "
            "runs optimise every sample's features"
        ]

    def derivation(self) -> list[Step]:
        return _derivation()


def _derivation() -> list[Step]:
    return [
        Step(
            "Given the weights, F is a sum over samples of one and the same function of each "
            "feature for all samples of a class: moving every sample of a class onto the best "
            "of them never raises F, so some minimiser is collapsed (the loss is not convex: "
            "this does not show that every minimiser is).",
            r"F(W, H) \ge F(W, H_\star),\; h_{\star,k,i} = \operatorname{argmin}_{h_{k,j}} "
            r"\ell(W h_{k,j}) + \tfrac{\lambda_H}{2}\lVert h_{k,j}\rVert^2",
            "test",
            "tests/test_focal.py::test_moving_each_class_onto_its_best_sample_never_raises_f",
        ),
        factorisation_step(),
        Step(
            "Within ETF configurations Z = m C every class has 1 - p_k = r = (K-1)/(e^m + K-1) "
            "and 1/p_k = 1 + (K-1) e^{-m}, so its focal loss is r^gamma log(1 + (K-1) e^{-m}) ...",
            r"1 - p_k = \tfrac{K-1}{e^m + K - 1} = r,\; \tfrac1{p_k} = 1 + (K-1)e^{-m}",
            "sympy",
            "theorems/focal_balanced.py::_focal_etf_loss_identity",
            _focal_etf_loss_identity,
        ),
        spectrum_step(r"f(m) = r^\gamma\log(1 + (K-1)e^{-m}) + (K-1)\tfrac{M+1}{2}c\,m^q"),
        Step(
            "f is minimised over [0, (f(0)/b)^{1/q} + 1] (beyond it the penalty alone exceeds "
            "f(0)) by interval branch and bound; the enclosure contains the minimum.",
            r"\min_{m\ge0} f \in [\underline F, \overline F]",
            "test",
            "tests/test_focal_balanced.py::test_the_enclosure_contains_the_scalar_minimum",
        ),
        Step(
            "The balanced factorisation of A = sqrt(n) m C is a simplex ETF at every layer with "
            "the claimed value.",
            r"W\bar H = m C,\; \bar H^T\bar H \propto C,\; WW^T \propto C",
            "test",
            "tests/test_focal_balanced.py::test_predicted_point_has_the_claimed_value",
        ),
    ]


claim = FocalBalanced()
