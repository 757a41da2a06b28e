"""Deliberately wrong variants of the two balanced MSE claims, for the verifier-power tests.

Each variant is the true claim with one small method overridden, the way a plausible mistake in a
paper or in its reference code would look: a wrong exponent in the stationarity polynomial, a
collapse threshold off by a few percent, the zero solution never compared with the positive root
(the published reference code's "largest root" rule), the orthogonal frame and the simplex ETF
swapped, a wrong bias, a scale off by 1%.  `tests/test_verifier_power.py` shows that the pipeline
refutes every one of them on an instance where it is wrong, while the true claims stay certified.

`instance(...)` builds balanced problems with an exactly prescribed
`rho = K^{M+1} n P` (`P = lambda_H prod_m lambda_{W_m}`), so that an instance can be placed
exactly between a true and a wrong threshold.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import mpmath
import numpy as np
import sympy as sp

from ncverify.claim import Prediction
from ncverify.model.factorisations import simplex_directions
from ncverify.model.problem import Problem
from ncverify.model.scalar import GAMMA, collapse_threshold, largest_root_in, to_rational
from theorems import _balanced as bal
from theorems.mse_balanced_bias import MSEBalancedBias
from theorems.mse_balanced_biasfree import MSEBalancedBiasFree


def instance(
    classes: int,
    samples: int,
    depth: int,
    width: int,
    rho: Fraction,
    *,
    bias: str = "none",
    lambda_w: Fraction = Fraction(1, 10),
) -> Problem:
    """A balanced MSE problem with `rho = K^{M+1} n P` exactly equal to `rho`.

    Every `lambda_{W_m}` is `lambda_w`; `lambda_H` absorbs the rest of `P`, exactly.
    """
    p = Fraction(rho) / (Fraction(classes) ** (depth + 1) * samples)
    lambda_h = p / lambda_w**depth
    problem = Problem(
        counts=(samples,) * classes,
        depth=depth,
        widths=(width,) * depth,
        lambda_w=(lambda_w,) * depth,
        lambda_h=lambda_h,
        loss="mse",
        bias=bias,
    )
    assert bal.rho_of(problem, samples) == rho  # the construction is exact
    return problem


def positive_root_range(depth: int) -> Fraction:
    """`max_{0<g<1} g^{M-1}(1-g)^{M+1}`, attained at `g = (M-1)/(2M)`: for `rho` below it a
    positive stationary gain exists (for `M >= 2`), whether or not it beats zero."""
    g = Fraction(depth - 1, 2 * depth)
    return g ** (depth - 1) * (1 - g) ** (depth + 1)


# ---- wrong variants of mse-balanced-biasfree -------------------------------------------------
class WrongExponent(MSEBalancedBiasFree):
    """Stationarity polynomial with `(1-gamma)^M` instead of `(1-gamma)^{M+1}` (as if `q` were
    `2/M`): the claimed gain is not a stationary point of the true per-mode problem."""

    id = "wrong-exponent"

    def gain(self, problem: Problem) -> tuple[sp.Expr, str]:
        m = problem.depth
        rho = bal.rho_of(problem, problem.counts[0])
        if rho >= collapse_threshold(m):
            return sp.Integer(0), "collapsed"
        poly = sp.Poly(GAMMA ** (m - 1) * (1 - GAMMA) ** m - to_rational(rho), GAMMA)
        lo = sp.Rational(m - 1, 2 * m)
        roots = [r for r in sp.real_roots(poly) if lo < r < 1]
        return max(roots, key=lambda r: sp.N(r, 30)), "alive"


class ThresholdTooHigh(MSEBalancedBiasFree):
    """Collapse threshold 4% too high: classes with `thr_M < rho < 1.04 thr_M` are claimed
    alive at the larger stationary root, where zero is in fact strictly better."""

    id = "threshold-too-high"
    factor = Fraction(104, 100)

    def gain(self, problem: Problem) -> tuple[sp.Expr, str]:
        m = problem.depth
        rho = bal.rho_of(problem, problem.counts[0])
        if rho >= self.factor * collapse_threshold(m):
            return sp.Integer(0), "collapsed"
        return largest_root_in(m, rho, Fraction(m - 1, 2 * m), Fraction(1)), "alive"


class ThresholdTooLow(MSEBalancedBiasFree):
    """Collapse threshold 4% too low: classes with `0.96 thr_M < rho < thr_M` are claimed
    collapsed, where the positive root is in fact strictly better than zero."""

    id = "threshold-too-low"
    factor = Fraction(96, 100)

    def gain(self, problem: Problem) -> tuple[sp.Expr, str]:
        m = problem.depth
        rho = bal.rho_of(problem, problem.counts[0])
        if rho >= self.factor * collapse_threshold(m):
            return sp.Integer(0), "collapsed"
        return largest_root_in(m, rho, Fraction(m - 1, 2 * m), Fraction(1)), "alive"


class ZeroIgnored(MSEBalancedBiasFree):
    """The published reference code's rule: the largest stationary root whenever one exists,
    never compared with the zero solution."""

    id = "zero-ignored"

    def gain(self, problem: Problem) -> tuple[sp.Expr, str]:
        m = problem.depth
        rho = bal.rho_of(problem, problem.counts[0])
        root = largest_root_in(m, rho, Fraction(0), Fraction(1))
        return (sp.Integer(0), "collapsed") if root is None else (root, "alive")


class ScaleOff(MSEBalancedBiasFree):
    """The right gain times 1.01: a scale off by 1%."""

    id = "scale-off"

    def gain(self, problem: Problem) -> tuple[sp.Expr, str]:
        g, regime = super().gain(problem)
        return g * sp.Rational(101, 100), regime


class BiasFreeWithETF(MSEBalancedBiasFree):
    """The bias-free claim with the simplex ETF of the bias claim: `K-1` modes along the centred
    directions, the all-ones mode left at zero."""

    id = "biasfree-with-etf"
    geometry_name = "simplex ETF"

    def n_modes(self, problem: Problem) -> int:
        return problem.K - 1

    def frame(self, problem: Problem, r: int) -> tuple[np.ndarray, np.ndarray]:
        e = simplex_directions(problem.K)[:, :r]
        return e, e

    def closed_form(self, problem: Problem) -> Prediction:
        # K-1 alive modes plus the all-ones mode left at its zero value n/(2N)
        pred = super().closed_form(problem)
        n = problem.counts[0]
        return _with_objective(pred, pred.objective + mpmath.mpf(n) / (2 * problem.N))


# ---- wrong variants of mse-balanced-bias -----------------------------------------------------
class BiasWithOrthogonalFrame(MSEBalancedBias):
    """The bias claim with the orthogonal frame of the bias-free claim: `K` modes along the
    class axes, value `K` times the per-mode optimum."""

    id = "bias-with-orthogonal-frame"
    geometry_name = "orthogonal frame"

    def n_modes(self, problem: Problem) -> int:
        return problem.K

    def frame(self, problem: Problem, r: int) -> tuple[np.ndarray, np.ndarray]:
        e = np.eye(problem.K)[:, :r]
        return e, e


class WrongBias(MSEBalancedBias):
    """`b* = 1/(K+1) 1` instead of `1/K 1` (a plausible slip), everything else right."""

    id = "wrong-bias"

    def bias_value(self, problem: Problem) -> np.ndarray:
        return np.full(problem.K, 1.0 / (problem.K + 1))


def _with_objective(pred: Prediction, objective: mpmath.mpf) -> Prediction:
    return replace(pred, objective=objective)
