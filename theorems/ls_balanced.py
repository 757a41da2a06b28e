r"""Balanced data, label smoothing: every global minimiser is a simplex ETF at every layer (claimed).

With $K$ classes of $n$ samples each, $M$ linear layers $W_1, \dots, W_M$ on free features and
cross-entropy against the smoothed labels $(1-\alpha) e_y + (\alpha/K)\mathbf 1$ with
$0 < \alpha < 1$ (`--loss ls --smoothing alpha`), every global minimiser has NC1 and, at every
layer, the simplex-ETF geometry of `ce-balanced` (needs $R \ge K - 1$).  The logit margin $m$
solves
$\min_{m \ge 0} \log(1 + (K-1)e^{-m}) + \alpha\frac{K-1}{K} m + (K-1)\frac{M+1}{2} c\, m^q$
with $c = (nP)^{1/(M+1)}$, $q = 2/(M+1)$, the zero solution included: smoothing adds a cost
linear in the margin, so the margin stays bounded as the weight decays vanish, where
cross-entropy's grows like $\log(1/\lambda)$.  Here $P$ is the product of the weight decays,
$R$ the bottleneck and $C = I_K - \mathbf 1\mathbf 1^T/K$, as in `ce-balanced`.

At one layer the claim is the result of Zhou et al. (NeurIPS 2022) for label smoothing; the
theory page derives it for this model from convexity (docs/theory/label-smoothing.md), and the
`convex-dual` certificate, written for smoothed targets too, proves the optimum of each
one-layer instance, and the `two-class-scalar` certificate each two-class instance at any
depth.  At depth it is checked like `ce-balanced`: the claim-agnostic search of the
class-mean problem looks for lower points, and a point below the claimed optimum is certified
in interval arithmetic.

Source: J. Zhou, C. You, X. Li, K. Liu, S. Liu, Q. Qu, Z. Zhu, "Are All Losses Created Equal:
A Neural Collapse Perspective", NeurIPS 2022, arXiv 2210.02192 (one layer); the deep model of
H. Dang et al., ICML 2023, arXiv 2301.00437; docs/theory/label-smoothing.md.
"""

from __future__ import annotations

import math
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
class _Smoothed:
    """`f(m) = log(1 + (K-1) e^{-m}) + a m + b m^q` and `f'` in interval arithmetic, with
    `a = alpha (K-1)/K`, `b = (K-1)(M+1)/2 c`; `m^q` as `exp(q log m)`, which is right on boxes
    that contain 0 too (`log 0 = -inf`)."""

    def __init__(self, k: int, depth: int, n_p: Fraction, alpha: Fraction) -> None:
        iv = mpmath.iv
        self.k, self.depth = k, depth
        self.q = iv.mpf(2) / iv.mpf(depth + 1)
        c = iv.exp(iv.log(iv.mpf(n_p.numerator) / iv.mpf(n_p.denominator)) / iv.mpf(depth + 1))
        self.a = iv.mpf(alpha.numerator) / iv.mpf(alpha.denominator) * iv.mpf(k - 1) / iv.mpf(k)
        self.b = iv.mpf(k - 1) * iv.mpf(depth + 1) / 2 * c

    def f(self, m: Any) -> Any:
        iv = mpmath.iv
        return iv.log(1 + iv.mpf(self.k - 1) * iv.exp(-m)) + self.a * m + self.b * self._power(m)

    def df(self, m: Any) -> Any:
        iv = mpmath.iv
        # d/dm b m^q = b q m^(q-1), written as an exponential (right where the box holds 0)
        slope = self.b * self.q * iv.exp((self.q - 1) * iv.log(m)) if self.depth > 1 else self.b
        return -iv.mpf(self.k - 1) / (iv.exp(m) + iv.mpf(self.k - 1)) + self.a + slope

    def _power(self, m: Any) -> Any:
        iv = mpmath.iv
        return iv.exp(self.q * iv.log(m)) if self.depth > 1 else m

    def beyond(self) -> mpmath.mpf:
        """A margin beyond which `f > f(0) = log K`: there `a m` alone exceeds `log K`."""
        return mpmath.mpf(ends(mpmath.iv.log(self.k) / self.a)[1]) + 1


@lru_cache(maxsize=1024)
def smoothed_margin_minimum(k: int, depth: int, n_p: Fraction, alpha: Fraction) -> MarginMinimum:
    """The rigorous global minimum of the scalar problem over `m >= 0`, by interval branch and
    bound on `[0, beyond]`: a box on which `f'` is positive (negative) has its minimum at its
    left (right) end; any other is bounded below by the mean-value form
    `f(mid) + f'(box)(box - mid)`, split until its bound is within `TARGET_GAP` of the best value
    found, and dropped once its bound exceeds it.  Zero wins, a positive margin wins, or the
    enclosures cannot separate them (a tie)."""
    with interval_precision(PREC), mpmath.workprec(PREC + 20):
        return scalar_minimum(_Smoothed(k, depth, n_p, alpha))


@lru_cache(maxsize=256)
def critical_smoothed_c(k: int, depth: int, alpha: Fraction) -> float:
    """The `c = (nP)^{1/(M+1)}` beyond which zero wins (informational, located in floats on a
    grid of margins; the verdict never uses it)."""
    a = float(alpha) * (k - 1) / k
    grid = np.geomspace(1e-6, math.log(k) / a + 1, 4000)
    loss = np.log1p((k - 1) * np.exp(-grid)) + a * grid
    return critical_c_on_grid(k, depth, grid, loss, math.log(k))


# ---- derivation identities -----------------------------------------------------------------------
_m, _alpha = sp.symbols("m alpha", positive=True)


def _smoothed_etf_loss_identity() -> sp.Expr:
    """Label smoothing at the ETF logits `m (e_k - 1/K)`: `log(1 + (K-1) e^{-m}) +
    alpha (K-1) m / K`, K = 2..8 (the targets' logit `q^T z` is `(1 - alpha)(K-1) m / K`)."""
    total = sp.Integer(0)
    for k in range(2, 9):
        z_own, z_other = _m * sp.Rational(k - 1, k), -_m / k
        lse = z_own + sp.log(1 + (k - 1) * sp.exp(z_other - z_own))
        target = (1 - _alpha) * z_own + _alpha / k * (z_own + (k - 1) * z_other)
        claimed = sp.log(1 + (k - 1) * sp.exp(-_m)) + _alpha * sp.Rational(k - 1, k) * _m
        total += sp.simplify(lse - target - claimed)
    return sp.simplify(total)


# ---- the claim -----------------------------------------------------------------------------------
class LSBalanced(BalancedETF):
    id = "ls-balanced"
    title = "Balanced label smoothing: simplex ETF at every layer (claimed)"
    source = (
        'Zhou, You, Li, Liu, Liu, Qu, Zhu, "Are All Losses Created Equal: A Neural Collapse '
        f'Perspective", NeurIPS 2022, arXiv 2210.02192 (one layer); the deep model: {bal.DANG_2023}'
    )
    status = (
        "true for M = 1 (Zhou et al. 2022) and for K = 2 at every depth (two-class-scalar); "
        "checked at depth (docs/theory/label-smoothing.md)"
    )
    loss = "ls"
    bias = "none"
    certificates = ("convex-dual", "two-class-scalar", "gram-branch-and-bound")
    truth_region = TruthRegion(
        basis="proven",
        reference="Zhou et al. 2022, one layer (docs/theory/label-smoothing.md#one-layer)",
        loss="ls",
        depth=(1, 1),
        wide=True,
        smoothing=("0.01", "0.5"),
    )

    def hypotheses(self, problem: Problem) -> list[str]:
        return model_hypotheses(problem, loss="ls", balanced=True, bottleneck=1)

    def default_problem(self) -> Problem:
        return Problem.build(
            classes=4, samples=100, depth=3, width=64, lambda_w="5e-4", lambda_h="5e-4",
            loss="ls", smoothing="0.1",
        )  # fmt: skip

    def margin(self, problem: Problem) -> MarginMinimum:
        n_p = Fraction(problem.counts[0]) * problem.lambda_product
        if problem.smoothing is None:  # a probe of another loss: alpha = 0 is cross-entropy
            return margin_minimum(problem.K, problem.depth, n_p)
        return smoothed_margin_minimum(problem.K, problem.depth, n_p, problem.smoothing)

    def critical(self, problem: Problem) -> float:
        if problem.smoothing is None:
            return critical_c(problem.K, problem.depth)
        return critical_smoothed_c(problem.K, problem.depth, problem.smoothing)

    def _objective_form(self, problem: Problem, alpha: mpmath.mpf) -> str:
        k, m = problem.K, problem.depth
        smoothing = problem.smoothing or 0
        return (
            f"min(log K, f(m)) with f(m) = log(1 + {k - 1} e^-m) + {smoothing}*{k - 1}/{k} m + "
            f"{k - 1}*{m + 1}/2 c m^(2/{m + 1}), c = (nP)^(1/{m + 1}); m = {mpmath.nstr(alpha, 20)}"
        )

    def _limit_notes(self, problem: Problem) -> list[str]:
        return [
            "smoothing keeps the margin bounded as the lambdas vanish: the max-margin limit of "
            "cross-entropy (docs/theory/ce.md#max-margin) says nothing about this claim"
        ]

    def derivation(self) -> list[Step]:
        return _derivation()


def _derivation() -> list[Step]:
    return [
        Step(
            "At a minimiser all samples of a class share one feature vector (NC1): label smoothing "
            "is convex in the logits, so given the weights F is strictly convex in H.",
            r"h_{k,i} = \bar h_k \quad \forall i",
            "lemma",
            "tests/test_lemmas.py::test_lemma1_nc1",
        ),
        factorisation_step(),
        Step(
            "Within ETF configurations Z = m C the smoothed loss of every class is "
            "log(1 + (K-1) e^{-m}) plus alpha (K-1) m / K ...",
            r"\ell_\alpha(m(e_k - \tfrac1K\mathbf 1), k) = \log(1 + (K-1)e^{-m}) + "
            r"\alpha\tfrac{K-1}{K} m",
            "sympy",
            "theorems/ls_balanced.py::_smoothed_etf_loss_identity",
            _smoothed_etf_loss_identity,
        ),
        spectrum_step(
            r"f(m) = \log(1 + (K-1)e^{-m}) + \alpha\tfrac{K-1}{K} m + (K-1)\tfrac{M+1}{2}c\,m^q"
        ),
        Step(
            "f is minimised over [0, log K / (alpha (K-1)/K)] (beyond it the linear term alone "
            "exceeds f(0) = log K) by interval branch and bound; the enclosure contains the "
            "minimum.",
            r"\min_{m\ge0} f \in [\underline F, \overline F]",
            "test",
            "tests/test_ls_balanced.py::test_the_enclosure_contains_the_scalar_minimum",
        ),
        Step(
            "The balanced factorisation of A = sqrt(n) m C is a simplex ETF at every layer with "
            "the claimed value.",
            r"W\bar H = m C,\; \bar H^T\bar H \propto C,\; WW^T \propto C",
            "test",
            "tests/test_ls_balanced.py::test_predicted_point_has_the_claimed_value",
        ),
    ]


claim = LSBalanced()
